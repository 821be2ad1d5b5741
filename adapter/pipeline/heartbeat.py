"""The dead-man's switch: a change the adapter makes itself must come back as a notification.

A FHIR server can stop delivering without saying so: HAPI never sets ``Subscription.status =
error`` after failed deliveries, drops a notification after 60 s of retries, and leaves a
Subscription ``requested`` for ever when rest-hook delivery is off. So the adapter writes its own
heartbeat (``Basic/mmr-adapter-heartbeat``) on a schedule, subscribes to it like to everything
else, and records when a heartbeat it wrote was notified back (the time the server gives that
version, read from the server: the notification is only a hint). ``mmr_heartbeat_age_seconds``
is how long ago the newest delivered heartbeat was written; it grows when notifications stop.
``setup`` uses the same probe to prove delivery end to end before it reports success.
"""

from __future__ import annotations

from datetime import UTC, datetime

from adapter.fhir.client import FhirClient
from adapter.fhir.resource import Resource
from adapter.mappings import codes
from adapter.pipeline.state import State

HEARTBEAT_ID = "mmr-adapter-heartbeat"


def criteria() -> str:
    """The classic Subscription criteria that notify the heartbeat back."""
    return f"Basic?identifier={codes().identifier_system('heartbeat')}|"


def is_heartbeat(resource_type: str | None, resource_id: str | None) -> bool:
    return resource_type == "Basic" and resource_id == HEARTBEAT_ID


def _written_at(resource: Resource) -> float | None:
    stamp = (resource.get("meta") or {}).get("lastUpdated")
    try:
        return datetime.fromisoformat(str(stamp)).timestamp() if stamp else None
    except ValueError:
        return None


def write(fhir: FhirClient, state: State, now: datetime | None = None) -> float:
    """Write the next heartbeat; returns when the server says it was written (Unix time)."""
    moment = (now or datetime.now(UTC)).isoformat()
    body = {
        "resourceType": "Basic",
        "id": HEARTBEAT_ID,
        "identifier": [{"system": codes().identifier_system("heartbeat"), "value": "mmr-adapter"}],
        "code": {"text": "MMR adapter heartbeat: proves that notifications arrive"},
        # A changed element: a server may keep no new version of an unchanged resource.
        "extension": [{"url": f"{codes().base}/StructureDefinition/mmr-heartbeat-at", "valueDateTime": moment}],
    }
    written = _written_at(fhir.update(body)) or datetime.now(UTC).timestamp()
    state.heartbeat.written(written)
    return written


def delivered(fhir: FhirClient, state: State) -> float | None:
    """A heartbeat was notified: record the written time of the version the server holds now."""
    at = _written_at(fhir.read("Basic", HEARTBEAT_ID))
    if at is not None:
        state.heartbeat.delivered(at)
    return at
