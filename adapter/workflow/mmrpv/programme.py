"""[13] The MMRpv programme: a CarePlan made from a template once the patient is booked.

Created once (``<key>-programme``), when a booking stands: status ``active``, intent ``plan``,
category ``mmr``, subject the patient, author the MMRpv unit, the booked site as a supporting
reference to the Appointment, ``period`` from the booked start to the day of its last activity, a
first activity that references the ServiceRequest (the programme carries out the referral; R4's
``CarePlan.basedOn`` may only point at a CarePlan, and HAPI refuses anything else), and one
activity per profession of the template (``programmes`` in mappings/mmrpv.yaml): who, what,
which weeks, how many sessions, group or individual.

Until the programme starts it follows the booking: a moved Appointment moves the period, the
activities' dates, the site and the supporting Appointment with it; a cancelled one leaves the
CarePlan waiting for the next booking, which moves it. From the start (the booked day has come, or
the unit has recorded anything: an activity not ``not-started``, a note, a status other than
``active``) the CarePlan is the unit's: it records participation (activity statuses, progress
notes) and ends the programme by setting it ``completed`` (with ``period.end``) or ``revoked``
(interrupted). The adapter then never rewrites it; it only reacts to its status.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from adapter.fhir.resource import Resource
from adapter.mappings import codes
from adapter.workflow import questionnaires
from adapter.workflow.calendar import local, parse_moment
from adapter.workflow.core import NOTHING, Context, Event, Plan, Referral, create, update
from adapter.workflow.mmrpv.common import (
    CAREPLAN,
    Booking,
    booking,
    care_commitment,
    data,
    intake_open,
    intake_task,
    key,
    live,
    programme,
    text,
    unit_ref,
)
from adapter.workflow.options import option
from adapter.workflow.referral import patient_reference
from adapter.workflow.tasks import concept


def _activity(entry: dict[str, Any], start: datetime, ctx: Context) -> dict[str, Any]:
    first, last = entry["weeks"]
    begins = start + timedelta(weeks=int(first) - 1)
    ends = start + timedelta(weeks=int(last)) - timedelta(days=1)
    kind = (
        {"sv": "gruppsessioner", "en": "group sessions"}
        if entry.get("group")
        else {"sv": "individuella besök", "en": "individual sessions"}
    )
    return {
        "detail": {
            "status": "not-started",
            "code": {"text": text(entry["profession"], ctx)},
            "description": f"{text(entry['title'], ctx)} ({entry['sessions']} {text(kind, ctx)})",
            "scheduledTiming": {
                "repeat": {
                    "count": int(entry["sessions"]),
                    "boundsPeriod": {"start": begins.date().isoformat(), "end": ends.date().isoformat()},
                }
            },
        }
    }


def _body(referral: Referral, found: Booking, ctx: Context) -> dict[str, Any]:
    template = data()["programmes"][str(option(ctx, "mmrpv_programme"))]
    start = local(found.start)
    care = care_commitment(referral)
    activities = [_activity(a, start, ctx) for a in template["activities"]]
    last_day = max(a["detail"]["scheduledTiming"]["repeat"]["boundsPeriod"]["end"] for a in activities)
    body: dict[str, Any] = {
        "resourceType": "CarePlan",
        "status": "active",
        "intent": "plan",
        "category": [concept("service", "mmr", ctx)],
        "title": f"MMRpv, {found.site.ort}",
        "subject": patient_reference(referral),
        "author": unit_ref(),
        "period": {"start": start.isoformat(), "end": last_day},
        "supportingInfo": [{"reference": found.reference}],
        "activity": [{"reference": {"reference": referral.reference}}, *activities],
        "created": ctx.now.isoformat(),
    }
    if care is not None:
        body["supportingInfo"].append({"reference": care})
    return {k: v for k, v in body.items() if v is not None}


FOLLOWS_BOOKING = ("title", "period", "activity")  # and the supporting Appointment


def _not_started(plan: Resource, ctx: Context) -> bool:
    """Nothing of the programme has happened yet: before its first day, and the unit has recorded nothing."""
    start = parse_moment((plan.get("period") or {}).get("start"))
    details = [
        a["detail"] for a in plan.get("activity") or () if isinstance(a, dict) and isinstance(a.get("detail"), dict)
    ]
    return (
        plan.get("status") == "active"
        and start is not None
        and local(ctx.now) < start
        and not plan.get("note")
        and all(d.get("status") == "not-started" for d in details)
    )


def plan_programme(referral: Referral, event: Event, ctx: Context) -> Plan:
    """Create the programme CarePlan once a booking stands, move it with the booking until it starts,
    and leave it to the unit after that."""
    found = booking(referral)
    if found is None or not live(referral) or not intake_open(intake_task(referral)):
        return NOTHING  # no booking stands (a cancelled one): an existing programme waits for the next
    if patient_reference(referral) is None:
        return Plan(notes=("programme not created: the referral names no usable patient",))
    existing = programme(referral)
    if existing is None:
        write = create(_body(referral, found, ctx), codes().identifier_system(CAREPLAN), f"{key(referral)}-programme")
        return Plan(writes=(write,), notes=(f"programme planned at {found.site.key}",))
    if not _not_started(existing, ctx):
        return NOTHING  # the unit's now
    wanted = _body(referral, found, ctx)
    booked = {"reference": found.reference}
    if (existing.get("period") or {}).get("start") == wanted["period"]["start"] and booked in (
        existing.get("supportingInfo") or []
    ):
        return NOTHING
    kept = [
        i
        for i in existing.get("supportingInfo") or ()
        if isinstance(i, dict) and not str(i.get("reference", "")).startswith("Appointment/")
    ]
    care = [i for i in wanted["supportingInfo"][1:] if i not in kept]
    changes = {**{k: wanted[k] for k in FOLLOWS_BOOKING}, "supportingInfo": [booked, *kept, *care]}
    return Plan(
        writes=(update(existing, **changes),),
        notes=(f"programme moved with the booking: {found.site.key} from {wanted['period']['start']}",),
    )


def ask_questionnaires(referral: Referral, event: Event, ctx: Context) -> Plan:
    """The forms of the first visit once the booked start has passed, and those of after the programme
    once it is completed (``mappings/questionnaires.yaml``), for the patient, partOf the intake Task."""
    intake, current, found = intake_task(referral), programme(referral), booking(referral)
    if not live(referral) or intake is None or not intake.get("id"):
        return NOTHING
    part_of = {"reference": f"Task/{intake['id']}"}
    plan = NOTHING
    if found is not None and ctx.now >= found.start and (current is None or current.get("status") != "revoked"):
        plan += questionnaires.ask(
            referral, ctx, "first-visit", questionnaires.configured(ctx, "first-visit"), part_of, unit_ref()
        )
    if current is not None and current.get("status") == "completed":
        plan += questionnaires.ask(
            referral, ctx, "after-programme", questionnaires.configured(ctx, "after-programme"), part_of, unit_ref()
        )
    return plan
