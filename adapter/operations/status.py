"""``mmr-adapter status``: one referral's journey, step by step, read from the FHIR server.

What happened (arrival, review, supplement requests, questionnaires, decision, forwarding,
confirmations, booking, programme, discharge, follow-up), who holds it now, when, and what is
due by when. The formatting is pure (:func:`journey`); only :func:`load_referral` does I/O.

One time base: the workflow's own clock, the one the adapter reads when it acts (the test clock in
a test run) and gives its deadlines in. The adapter's resources record it (Task ``lastModified``,
Communication ``sent``, CommunicationRequest ``authoredOn``, CarePlan ``created``, the care
commitment's period). The participants' resources (the referral, the booking, the discharge
summary) carry their writers' clocks, which under the test clock are another time base: a discharge
summary dated by the wall clock sorted above the review that preceded it. So they are placed by
the one clock that stamps every write, the server's ``meta.lastUpdated``, carried over to the
workflow's clock through the adapter's own messages, each of which records both (``sent`` and the
server's stamp): the message written next after it, else the last one before. Without a test clock
the two clocks agree and this changes nothing. Lines are ordered by the moment and shown in
Stockholm time, as are the due dates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from adapter.fhir.client import FhirClient
from adapter.fhir.resource import Resource, ref
from adapter.mappings import codes
from adapter.workflow.calendar import parse_moment
from adapter.workflow.load import referral_query
from adapter.workflow.mmrpv.loading import journey_queries

EARLIEST = datetime.min.replace(tzinfo=UTC)  # where a step's moment cannot be read


@dataclass(frozen=True)
class Step:
    when: str
    what: str
    who: str = ""
    due: str = ""


def _display(coded: dict[str, Any] | None) -> str:
    if not coded:
        return ""
    coding = (coded.get("coding") or [{}])[0]
    return coded.get("text") or coding.get("display") or coding.get("code") or ""


def _who(reference: dict[str, Any] | None) -> str:
    if not reference:
        return ""
    return (
        reference.get("display") or (reference.get("identifier") or {}).get("value") or reference.get("reference") or ""
    )


def _code(resource: Resource) -> str:
    return ((resource.get("code") or {}).get("coding") or [{}])[0].get("code", "")


def find_referral(fhir: FhirClient, key: str) -> Resource | None:
    """A referral by its business identifier value (any system), ``system|value`` or server id."""
    for params in ({"identifier": key}, {"_id": key}):
        found = [r for r in fhir.search("ServiceRequest", params) if r.get("resourceType") == "ServiceRequest"]
        if found:
            return found[0]
    return None


JOURNEY_TYPES = frozenset(
    {
        "ServiceRequest",
        "Task",
        "Communication",
        "Appointment",
        "CarePlan",
        "EpisodeOfCare",
        "DocumentReference",
        "CommunicationRequest",
    }
)


def load_referral(fhir: FhirClient, referral_id: str) -> list[Resource]:
    """What the worker loads of the referral's journey: its search with includes, then the MMRpv batch."""
    found = _by_key(fhir.get(referral_query(referral_id)))
    service_request = found.get(f"ServiceRequest/{referral_id}")
    more = journey_queries(service_request) if service_request else []
    for reply in fhir.batch_get(more) if more else ():
        found.update(_by_key(reply))
    return [r for r in found.values() if r.get("resourceType") in JOURNEY_TYPES]


def _by_key(bundle: Resource) -> dict[str, Resource]:
    return {ref(r): r for e in bundle.get("entry") or () if (r := e.get("resource")) and r.get("id")}


def _participation(careplan: Resource) -> str:
    """The activities by the status the unit recorded, e.g. `` (5 activities: 2 completed, 3 in-progress)``."""
    statuses = [
        (a["detail"].get("status") or "unknown")
        for a in careplan.get("activity") or ()
        if isinstance(a, dict) and isinstance(a.get("detail"), dict)
    ]
    if not statuses:
        return ""
    counts = ", ".join(f"{statuses.count(s)} {s}" for s in sorted(set(statuses)))
    return f" ({len(statuses)} activities: {counts})"


Anchor = tuple[datetime, datetime]  # (the server's stamp, the workflow's moment) of one of our messages


def anchors(resources: list[Resource]) -> list[Anchor]:
    """The adapter's messages as pairs of clocks, by the server's stamp."""
    system = codes().identifier_system("communication")
    pairs = []
    for r in resources:
        if r.get("resourceType") != "Communication" or not any(
            isinstance(i, dict) and i.get("system") == system for i in r.get("identifier") or ()
        ):
            continue
        stamp, sent = parse_moment((r.get("meta") or {}).get("lastUpdated")), parse_moment(r.get("sent"))
        if stamp and sent:
            pairs.append((stamp, sent))
    return sorted(pairs)


def on_workflow_clock(stamp: str, pairs: list[Anchor]) -> str:
    """A server stamp as the workflow's moment: from the adapter's message written next after it
    (the adapter's answer, written at the clock the participant lived in), else the last before."""
    moment = parse_moment(stamp)
    if moment is None or not pairs:
        return stamp
    server, workflow = next(((s, w) for s, w in pairs if s >= moment), pairs[-1])
    return (workflow + (moment - server)).isoformat()


def journey(resources: list[Resource]) -> list[Step]:
    """Every step so far, oldest first, on the workflow's clock."""
    steps: list[Step] = []
    pairs = anchors(resources)
    for r in resources:
        rtype = r.get("resourceType")
        when = (r.get("meta") or {}).get("lastUpdated", "")
        if rtype in ("ServiceRequest", "Appointment", "DocumentReference"):  # the participants' writes
            when = on_workflow_clock(when, pairs) if pairs else ""
        if rtype == "ServiceRequest":
            ident = (r.get("identifier") or [{}])[0].get("value", r.get("id"))
            steps.append(
                Step(
                    when or r.get("authoredOn") or (r.get("meta") or {}).get("lastUpdated", ""),
                    f"referral {ident} ({r.get('status')})",
                    _who(r.get("requester")),
                )
            )
        elif rtype == "Task":
            status = r.get("status", "")
            business = _display(r.get("businessStatus"))
            period = (r.get("restriction") or {}).get("period") or {}
            due = period.get("start", "") if status == "draft" else period.get("end", "")  # held until start
            what = f"Task {_code(r) or '?'}: {status}" + (f" / {business}" if business else "")
            steps.append(
                Step(
                    r.get("lastModified") or r.get("authoredOn") or when,
                    what,
                    _who(r.get("owner")),
                    due if status not in ("completed", "cancelled", "rejected", "failed") else "",
                )
            )
        elif rtype == "Communication":
            category = _display((r.get("category") or [None])[0])
            recipient = _who((r.get("recipient") or [None])[0])
            steps.append(Step(r.get("sent") or when, f"message {category}".strip(), recipient))
        elif rtype == "Appointment":
            steps.append(
                Step(
                    when or r.get("created") or (r.get("meta") or {}).get("lastUpdated", ""),
                    f"appointment {r.get('status')} {r.get('start', '')}".strip(),
                    ", ".join(
                        _who(p.get("actor"))
                        for p in r.get("participant") or ()
                        if (p.get("actor") or {}).get("reference", "").startswith("Location")
                    ),
                )
            )
        elif rtype == "CarePlan":
            period = r.get("period") or {}
            steps.append(
                Step(
                    r.get("created") or when,
                    f"programme {r.get('status')} {period.get('start', '')}–{period.get('end', '')}{_participation(r)}",
                )
            )
        elif rtype == "EpisodeOfCare":
            period = r.get("period") or {}
            steps.append(
                Step(
                    period.get("end") or period.get("start") or when,
                    f"care commitment {r.get('status')}",
                    _who(r.get("managingOrganization")),
                )
            )
        elif rtype == "DocumentReference":
            steps.append(
                Step(
                    when or r.get("date") or (r.get("meta") or {}).get("lastUpdated", ""),
                    f"discharge summary {r.get('status')}",
                    ", ".join(_who(a) for a in r.get("author") or ()),
                )
            )
        elif rtype == "CommunicationRequest":
            category = _display((r.get("category") or [None])[0])
            steps.append(
                Step(
                    r.get("authoredOn") or when,
                    f"offer {category} ({r.get('status')})".strip(),
                    _who((r.get("recipient") or [None])[0]),
                )
            )
    return sorted(steps, key=lambda s: parse_moment(s.when) or EARLIEST)


def local_text(moment: str) -> str:
    """A moment in Stockholm time, ``YYYY-MM-DD HH:MM``; what cannot be read, as written."""
    parsed = parse_moment(moment)
    return parsed.strftime("%Y-%m-%d %H:%M") if parsed else moment[:16]


def journey_lines(fhir: FhirClient, referral_id: str) -> list[str]:
    lines = []
    for s in journey(load_referral(fhir, referral_id)):
        line = f"{local_text(s.when):16}  {s.what}"
        if s.who:
            line += f"  [{s.who}]"
        if s.due:
            line += f"  due {local_text(s.due)}"
        lines.append(line)
    return lines
