"""[14] Discharge: the summary goes back to the referrer, with the offer of a digital PAL meeting.

When the programme has ended (CarePlan ``completed``) and the unit's discharge summary exists (a
current DocumentReference related to the ServiceRequest, see ``common.discharge_summary``), the
adapter, in one transaction:

* sends the referrer a ``discharge-summary`` Communication whose payload carries the text and a
  reference to the DocumentReference (``<key>-discharge-summary-referrer-programme``);
* offers the referrer a digital meeting with the patient's PAL as a CommunicationRequest
  (``<key>-pal-meeting``): status ``active``, medium videoconference, recipient the referrer,
  sender the MMRpv unit. A CommunicationRequest rather than a proposed Appointment because no
  time exists yet: the referrer answers it, and the unit books the meeting from that answer;
* links the summary from the intake Task (output ``discharge-summary``); the intake step then
  completes it (``discharged``).

A programme that has ended without a summary waits (intake Task ``awaiting-discharge-summary``)
and reminds the unit every ``mmrpv_discharge_working_days`` working days, at most
``mmrpv_discharge_reminders`` times.

An interrupted programme (CarePlan ``revoked``) tells the referrer once; the care commitment ends
(``episode``) and no follow-up is scheduled.
"""

from __future__ import annotations

from adapter.fhir.resource import Resource
from adapter.mappings import codes
from adapter.workflow.core import NOTHING, Context, Event, Plan, Referral, Write, create
from adapter.workflow.mmrpv import messages
from adapter.workflow.mmrpv.common import (
    COMMUNICATION_REQUEST,
    DISCHARGE_REMINDER,
    data,
    discharge_summary,
    fired,
    intake_task,
    key,
    live,
    programme,
    programme_end,
    unit_ref,
)
from adapter.workflow.options import number
from adapter.workflow.referral import referrer_reference, subject_reference
from adapter.workflow.tasks import concept, find_own, parameters, revise


def _pal_offer(referral: Referral, ctx: Context) -> Write | None:
    # Made in the transaction that sends the summary, so the sent summary says it exists (the shell
    # does not load CommunicationRequests); planned earlier in this decide, it is found by identifier.
    value = f"{key(referral)}-pal-meeting"
    to = referrer_reference(referral)
    if (
        to is None
        or find_own(referral, COMMUNICATION_REQUEST, value)
        or messages.sent(referral, "discharge-summary", "referrer", "programme")
    ):
        return None
    body = {
        "resourceType": "CommunicationRequest",
        "status": "active",
        "category": [concept("notification-type", "pal-meeting-offer", ctx)],
        "medium": [{"coding": [data()["meeting_medium"]]}],
        "subject": subject_reference(referral),
        "about": [{"reference": referral.reference}],
        "basedOn": [{"reference": referral.reference}],
        "payload": [
            {"contentString": messages.wording("pal-meeting-offer", "referrer", ctx, messages.values(referral))}
        ],
        "authoredOn": ctx.now.isoformat(),
        "requester": unit_ref(),
        "sender": unit_ref(),
        "recipient": [to],
    }
    return create(
        {k: v for k, v in body.items() if v is not None}, codes().identifier_system(COMMUNICATION_REQUEST), value
    )


def _link(referral: Referral, intake: Resource, summary: Resource, ctx: Context) -> Write | None:
    if parameters(intake, "output", "discharge-summary"):
        return None
    output = {
        "type": concept("task-parameter", "discharge-summary", ctx),
        "valueReference": {"reference": f"DocumentReference/{summary['id']}"},
    }
    return revise(
        referral, intake, "task", output=[*(intake.get("output") or ()), output], lastModified=ctx.now.isoformat()
    )


def send_discharge(referral: Referral, event: Event, ctx: Context) -> Plan:
    """Send the summary and the PAL offer once the programme is over; otherwise wait and remind."""
    plan_, intake = programme(referral), intake_task(referral)
    if plan_ is None or plan_.get("status") != "completed" or intake is None or not live(referral):
        return NOTHING
    summary = discharge_summary(referral)
    if summary is None:
        return _chase(referral, plan_, ctx) if fired(event, DISCHARGE_REMINDER) else NOTHING
    sent = messages.notice(
        referral,
        ctx,
        "discharge-summary",
        "referrer",
        "programme",
        extra={
            "payload": [
                {"contentString": messages.wording("discharge-summary", "referrer", ctx, messages.values(referral))},
                {"contentReference": {"reference": f"DocumentReference/{summary['id']}"}},
            ]
        },
    )
    offer, link = _pal_offer(referral, ctx), _link(referral, intake, summary, ctx)
    writes = tuple(w for w in (offer, link) if w is not None)
    return sent + Plan(writes=writes, notes=("PAL meeting offered",) if offer else ())


def reminders(plan_: Resource, ctx: Context) -> messages.Reminders:
    """Reminders to the unit of a missing summary, counted from the programme's end."""
    return messages.Reminders(
        DISCHARGE_REMINDER,
        "discharge-reminder",
        "unit",
        "discharge",
        number(ctx, "mmrpv_discharge_working_days"),
        number(ctx, "mmrpv_discharge_reminders"),
        programme_end(plan_, ctx),
    )


def _chase(referral: Referral, plan_: Resource, ctx: Context) -> Plan:
    r = reminders(plan_, ctx)
    return messages.chase(
        referral,
        ctx,
        r,
        lambda k: messages.notice(
            referral, ctx, "discharge-reminder", "unit", r.occasion(k), n=k, date=r.since.date().isoformat()
        ),
    )


def tell_interruption(referral: Referral, event: Event, ctx: Context) -> Plan:
    """An interrupted programme: the referrer hears of it once."""
    plan_ = programme(referral)
    if plan_ is None or plan_.get("status") != "revoked" or not live(referral):
        return NOTHING
    return messages.notice(referral, ctx, "programme-interrupted", "referrer", "programme")
