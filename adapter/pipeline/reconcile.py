"""Reconciliation: find what changed since the last checkpoint and feed it through the normal path.

Notifications get lost (HAPI gives up after about a minute of failed deliveries, and forgets
what it had queued when it restarts). A periodic ``_lastUpdated`` search per subscribed type is
the only safe complement; processed-event keys make what it re-finds a no-op.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from urllib.parse import parse_qsl

from adapter.fhir.client import FhirClient, FhirError
from adapter.logs import log
from adapter.mappings import codes, load
from adapter.pipeline.envelope import Envelope
from adapter.pipeline.state import State


def subscription_criteria() -> list[str]:
    """The classic criteria of ``mappings/subscriptions.yaml``, with the canonical base filled in."""
    return [codes().fill(s["criteria"]) for s in load("subscriptions")["subscriptions"]]


def reconcile(
    fhir: FhirClient,
    state: State,
    enqueue: Callable[[Envelope], None],
    *,
    now: datetime,
    lookback: timedelta,
    criteria: list[str] | None = None,
) -> int:
    """Search each subscription's criteria for changes since its checkpoint; queue what is found.

    The checkpoint is the server's own ``meta.lastUpdated`` of the newest resource seen, so the
    adapter's clock never matters; the search uses ``ge`` so nothing at the boundary is skipped.
    """
    found = 0
    failures: list[FhirError] = []
    for crit in criteria or subscription_criteria():
        try:
            found += _reconcile_one(fhir, state, enqueue, crit, now - lookback)
        except FhirError as exc:  # one type failing must not hide the others' changes
            log.warning("reconciliation search failed", criteria=crit, reason=exc.summary)
            failures.append(exc)
    if failures:
        raise failures[0]
    return found


def _reconcile_one(
    fhir: FhirClient, state: State, enqueue: Callable[[Envelope], None], crit: str, earliest: datetime
) -> int:
    """Queue what matches one criteria since its checkpoint; then move the checkpoint."""
    found = 0
    rtype, _, query = crit.partition("?")
    name = f"reconcile:{crit}"
    since = state.reconciliation.checkpoint(name) or earliest.isoformat()
    params = [
        *parse_qsl(query, keep_blank_values=True),
        ("_lastUpdated", f"ge{since}"),
        ("_sort", "_lastUpdated"),
        ("_count", "100"),
    ]
    newest = datetime.fromisoformat(since)
    for bundle in fhir.pages(rtype, params):
        for entry in bundle.get("entry") or ():
            res = entry.get("resource") or {}
            if res.get("resourceType") != rtype or (entry.get("search") or {}).get("mode") == "include":
                continue
            meta = res.get("meta") or {}
            enqueue(Envelope("changed", "reconcile", rtype, res["id"], meta.get("versionId"), res))
            found += 1
            if meta.get("lastUpdated"):
                newest = max(newest, datetime.fromisoformat(meta["lastUpdated"]))
    state.reconciliation.set_checkpoint(name, newest.isoformat())
    return found
