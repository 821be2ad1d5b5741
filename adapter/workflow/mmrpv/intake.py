"""[9] Arrival at the MMRpv unit, and the intake Task as the unit's view of the whole stay.

Forwarding creates the ``mmrpv-intake`` Task (``requested`` / ``forwarded``, owner the MMRpv unit). The unit
registers its arrival automatically, as the clinic does: the Task goes to ``received``, in the
same transaction as the care commitment and the first booking round. From then on the intake
Task says where the referral stands at the unit, derived from the state each time
(level-triggered, written only when it changes; this step runs after the other MMRpv steps, so
one event leaves it true and a replay plans nothing):

=============================  =================================================
``received`` / registered       arrived, no care commitment (yet)
``received`` / awaiting-booking   care commitment made, no booking stands
``in-progress`` / booked        booked, the programme has not started
``in-progress`` / in-programme  the booked start has passed
``in-progress`` / awaiting-discharge-summary   programme completed, no summary yet
``completed`` / discharged      the summary went to the referrer
``cancelled`` / programme-interrupted   the programme was revoked
=============================  =================================================

An intake Task someone else closed (cancelled, rejected, failed) is left as it is.
"""

from __future__ import annotations

from typing import Any

from adapter.workflow.core import NOTHING, Context, Event, Plan, Referral, Timer
from adapter.workflow.mmrpv import discharge, messages
from adapter.workflow.mmrpv.common import (
    CLOSED,
    DISCHARGE_REMINDER,
    PROGRAMME_START,
    TASK,
    active,
    booking,
    care_commitment,
    data,
    intake_task,
    programme,
    text,
)
from adapter.workflow.tasks import at_stage, parameters, revise, stage


def _stage(referral: Referral, intake: dict[str, Any], ctx: Context) -> tuple[str, str, Plan]:
    """(status, businessStatus, the timer that checks on a waiting stage) the intake Task should be at now."""
    plan_ = programme(referral)
    if plan_ is not None and plan_.get("status") == "revoked":
        return "cancelled", "programme-interrupted", NOTHING
    if parameters(intake, "output", "discharge-summary"):
        return "completed", "discharged", NOTHING
    if plan_ is not None and plan_.get("status") == "completed":
        first = messages.first_reminder(discharge.reminders(plan_, ctx))
        timers = (Timer(DISCHARGE_REMINDER, referral.id, first),) if first else ()
        return "in-progress", "awaiting-discharge-summary", Plan(timers=timers)
    if found := booking(referral):
        if ctx.now < found.start:
            return "in-progress", "booked", Plan(timers=(Timer(PROGRAMME_START, referral.id, found.start),))
        return "in-progress", "in-programme", NOTHING
    if care_commitment(referral) is not None:
        return "received", "awaiting-booking", NOTHING
    return "received", "registered", NOTHING


def track_intake(referral: Referral, event: Event, ctx: Context) -> Plan:
    """Register the arrival, then keep the intake Task's status and business status true to the state."""
    intake = intake_task(referral)
    if intake is None or intake.get("status") in CLOSED or not active(referral):
        return NOTHING
    status, business, timers = _stage(referral, intake, ctx)
    if at_stage(intake, status, business):
        # The stage's timer again (derived state: a lost one comes back). A moment already past is
        # the reminder chase's to handle, on its own timer.
        return Plan(timers=tuple(t for t in timers.timers if t.due > ctx.now))
    changes = stage(status, business, ctx)
    if business == "programme-interrupted":
        changes["statusReason"] = {"text": text(data()["reasons"]["programme-interrupted"], ctx)}
    note = "arrival registered at the MMRpv unit" if business == "registered" else f"intake: {business}"
    return Plan(writes=(revise(referral, intake, TASK, **changes),), notes=(note,)) + timers
