"""[13] The MMRpv programme: a CarePlan made from a template once the patient is booked.

Created once (``<key>-programme``), when a booking stands: status ``active``, intent ``plan``,
category ``mmr``, subject the patient, author the MMRpv unit, the booked site as a supporting
reference to the Appointment, ``period`` from the booked start over the template's weeks, a first
activity that references the ServiceRequest (the programme carries out the referral; R4's
``CarePlan.basedOn`` may only point at a CarePlan, and HAPI refuses anything else), and one
activity per profession of the template (``programmes`` in mappings/mmrpv.yaml): who, what,
which weeks, how many sessions, group or individual.

After that the CarePlan is the unit's: it records participation (activity statuses, progress
notes) and ends the programme by setting it ``completed`` (with ``period.end``) or ``revoked``
(interrupted). The adapter never rewrites it; it only reacts to its status.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from adapter.mappings import codes
from adapter.workflow.calendar import local
from adapter.workflow.core import NOTHING, Context, Event, Plan, Referral, create
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
from adapter.workflow.review.options import option
from adapter.workflow.review.referral import patient_reference
from adapter.workflow.review.state import concept


def _activity(entry: dict[str, Any], start: datetime, ctx: Context) -> dict[str, Any]:
    first, last = entry["weeks"]
    begins = start + timedelta(weeks=int(first) - 1)
    ends = start + timedelta(weeks=int(last)) - timedelta(days=1)
    kind = {"sv": "gruppsessioner", "en": "group sessions"} if entry.get("group") else \
        {"sv": "individuella besök", "en": "individual sessions"}
    return {"detail": {
        "status": "not-started",
        "code": {"text": text(entry["profession"], ctx)},
        "description": f"{text(entry['title'], ctx)} ({entry['sessions']} {text(kind, ctx)})",
        "scheduledTiming": {"repeat": {"count": int(entry["sessions"]),
                                       "boundsPeriod": {"start": begins.date().isoformat(),
                                                        "end": ends.date().isoformat()}}},
    }}


def _body(referral: Referral, found: Booking, ctx: Context) -> dict[str, Any]:
    template = data()["programmes"][str(option(ctx, "mmrpv_programme"))]
    start = local(found.start)
    care = care_commitment(referral)
    body = {
        "resourceType": "CarePlan",
        "status": "active",
        "intent": "plan",
        "category": [concept("service", "mmr", ctx)],
        "title": f"MMRpv, {found.site.ort}",
        "subject": patient_reference(referral),
        "author": unit_ref(),
        "period": {"start": start.isoformat(),
                   "end": (start + timedelta(weeks=int(template["weeks"]))).date().isoformat()},
        "supportingInfo": [{"reference": found.reference}],
        "activity": [{"reference": {"reference": referral.reference}},
                     *(_activity(a, start, ctx) for a in template["activities"])],
        "created": ctx.now.isoformat(),
    }
    if care is not None:
        body["supportingInfo"].append({"reference": care})
    return {k: v for k, v in body.items() if v is not None}


def plan_programme(referral: Referral, event: Event, ctx: Context) -> Plan:
    """Create the programme CarePlan once a booking stands; leave it to the unit after that."""
    found = booking(referral)
    if found is None or not live(referral) or not intake_open(intake_task(referral)) or programme(referral):
        return NOTHING
    if patient_reference(referral) is None:
        return Plan(notes=("programme not created: the referral names no usable patient",))
    write = create(_body(referral, found, ctx), codes().identifier_system(CAREPLAN), f"{key(referral)}-programme")
    return Plan(writes=(write,), notes=(f"programme planned at {found.site.key}",))

