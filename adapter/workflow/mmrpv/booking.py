"""[11-12] Booking at Helsingborg, Malmö or Kristianstad, and the new confirmation (BEK).

Booking is work for the administrative function: a ``booking`` Task (``<key>-booking-mmrpv-<n>``,
owner the function, requester the unit, partOf the intake Task, ``restriction.period.end`` the end
(``mmrpv_day_end``) of the N-th working day on) with the suggested site as input ``mmrpv-site``.
The unit books by writing an Appointment: status booked, participants the Patient and
``Location/<site HSA-id>``, basedOn the ServiceRequest. The earliest such Appointment is *the*
booking (later ones may be programme sessions); it completes the open booking Task (output
``appointment``).

No booking, no open round (the Appointment was cancelled, a no-show, deleted): a new round, since a
completed Task does not re-open in FHIR. A moved Appointment (same one, new start) is still a
booking: nothing to re-open, but it is confirmed anew, because the BEK identifier carries the
Appointment id and its start; a duplicate notification finds the BEK and sends none.

Unbooked past the deadline: a reminder to the function (``booking-reminder``) at the deadline, then
every N working days, at most M (``mmrpv_booking_working_days``, ``mmrpv_booking_reminders``).
"""

from __future__ import annotations

from typing import Any

from adapter.fhir.resource import Resource
from adapter.mappings import codes, directory
from adapter.workflow import confirmations as conf
from adapter.workflow.calendar import add_working_days, local, parse_day_end, parse_moment, working_day_deadline
from adapter.workflow.core import NOTHING, Context, Event, Plan, Referral, Timer, create
from adapter.workflow.mmrpv import messages
from adapter.workflow.mmrpv.common import (
    BOOKING_REMINDER,
    TASK,
    active,
    admin_ref,
    booking,
    booking_key,
    booking_problem,
    booking_tasks,
    care_commitment,
    care_ended,
    fired,
    intake_open,
    intake_task,
    live,
    open_booking_task,
    programme,
    site_ref,
    stamp,
    unit_ref,
)
from adapter.workflow.mmrpv.site import Suggestion, suggest_site
from adapter.workflow.options import language, number, option
from adapter.workflow.referral import as_list, dig, subject_reference
from adapter.workflow.tasks import concept, key_of, parameters, revise

PROGRAMME_OVER = frozenset({"completed", "revoked", "entered-in-error"})
REFUSALS = ("booking-not-a-site", "booking-no-patient", "booking-no-start")


def _task_body(referral: Referral, intake: Resource, suggestion: Suggestion, ctx: Context) -> dict[str, Any]:
    due = working_day_deadline(
        ctx.now, number(ctx, "mmrpv_booking_working_days"), parse_day_end(option(ctx, "mmrpv_day_end"))
    )
    body = {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "code": concept("task-type", "booking", ctx),
        "businessStatus": concept("business-status", "awaiting-booking", ctx),
        "focus": {"reference": referral.reference},
        "partOf": [{"reference": key_of(referral, intake) or ""}],
        "for": subject_reference(referral),
        "requester": unit_ref(),
        "owner": admin_ref(),
        "authoredOn": ctx.now.isoformat(),
        "lastModified": ctx.now.isoformat(),
        "restriction": {"period": {"end": due.isoformat()}},
        "input": [{"type": concept("task-parameter", "mmrpv-site", ctx), "valueReference": site_ref(suggestion.site)}],
    }
    return {k: v for k, v in body.items() if v is not None}


def open_booking(referral: Referral, event: Event, ctx: Context) -> Plan:
    """Put a booking round on the administrative function's list while nothing is booked."""
    intake = intake_task(referral)
    if not active(referral) or not intake_open(intake) or care_commitment(referral) is None or care_ended(referral):
        return NOTHING
    assert intake is not None
    current = programme(referral)
    if (current and current.get("status") in PROGRAMME_OVER) or booking(referral) or open_booking_task(referral):
        return NOTHING
    round_ = len(booking_tasks(referral)) + 1
    suggestion = suggest_site(referral, intake)
    body = _task_body(referral, intake, suggestion, ctx)
    write = create(body, codes().identifier_system(TASK), booking_key(referral, round_))
    due = parse_moment(body["restriction"]["period"]["end"]) or ctx.now
    return Plan(
        writes=(write,),
        timers=(Timer(BOOKING_REMINDER, referral.id, due),),
        notes=(
            f"booking round {round_} for the administrative function, suggesting "
            f"{suggestion.site.key} (by {suggestion.basis})",
        ),
    )


def complete_booking(referral: Referral, event: Event, ctx: Context) -> Plan:
    """The booked Appointment completes the open booking round."""
    found, task = booking(referral), open_booking_task(referral)
    if found is None or task is None:
        return NOTHING
    output = {"type": concept("task-parameter", "appointment", ctx), "valueReference": {"reference": found.reference}}
    write = revise(
        referral,
        task,
        TASK,
        status="completed",
        businessStatus=concept("business-status", "booked", ctx),
        output=[*(task.get("output") or ()), output],
        lastModified=ctx.now.isoformat(),
        # a reason of ours for an Appointment it could not read no longer holds
        **({"statusReason": None} if dig(task, "statusReason", "text") in _ours() else {}),
    )
    return Plan(writes=(write,), notes=(f"booked at {found.site.key}",))


def _sites() -> dict[str, str]:
    return {"sites": ", ".join(s.name for s in directory().sites)}


def _ours() -> set[str]:
    return conf.every_language("refused", REFUSALS, _sites())


def refuse_booking(referral: Referral, event: Event, ctx: Context) -> Plan:
    """The unit's Appointment for the referral that the routine cannot read as a booking (no site of
    the unit, the patient left out, no start) is answered on the open booking Task, in the words of
    ``refused.booking-*`` for the administrative function: the Task stays open and theirs, its
    reminders go on, and the corrected Appointment completes it (:func:`complete_booking` drops the
    reason), and one cancelled instead takes the reason away. Never a value from the Appointment;
    once per wording."""
    task = open_booking_task(referral)
    if task is None or booking(referral) is not None or not active(referral):
        return NOTHING
    problems = sorted({p for a in referral.all("Appointment") if (p := booking_problem(referral, a))})
    said = dig(task, "statusReason", "text")
    if not problems:  # the unreadable Appointment was cancelled or deleted: our reason no longer holds
        if said not in _ours():
            return NOTHING
        write = revise(referral, task, TASK, statusReason=None, lastModified=ctx.now.isoformat())
        return Plan(writes=(write,), notes=("unreadable booking gone: reason cleared",))
    text = conf.template("refused", problems[0], language(ctx), _sites())
    if said == text:
        return NOTHING
    note = {"time": ctx.now.isoformat(), "text": text}
    write = revise(
        referral,
        task,
        TASK,
        statusReason={"text": text},
        note=[*as_list(task.get("note")), note],
        lastModified=ctx.now.isoformat(),
    )
    return Plan(writes=(write,), counts=("booking-refused",), notes=(f"booking not readable ({problems[0]})",))


def confirm_booking(referral: Referral, event: Event, ctx: Context) -> Plan:
    """[12] BEK with time and place to referrer and patient, once per Appointment and start."""
    found = booking(referral)
    current = programme(referral)
    if found is None or not live(referral) or (current and current.get("status") in PROGRAMME_OVER):
        return NOTHING
    start = local(found.start)
    occasion = f"mmrpv-{found.appointment['id']}-{stamp(found.start)}"
    return messages.confirm(
        referral,
        ctx,
        "BEK",
        occasion,
        site=found.site.name,
        ort=found.site.ort,
        date=start.date().isoformat(),
        time=start.strftime("%H:%M"),
    )


def remind_booking(referral: Referral, event: Event, ctx: Context) -> Plan:
    """Remind the administrative function of a booking round still open past its deadline."""
    task = open_booking_task(referral)
    if not fired(event, BOOKING_REMINDER) or task is None or booking(referral) is not None or not active(referral):
        return NOTHING
    every = number(ctx, "mmrpv_booking_working_days")
    since = parse_moment(task.get("authoredOn")) or ctx.now
    deadline = parse_moment(dig(task, "restriction", "period", "end")) or add_working_days(since, every)
    round_ = len(booking_tasks(referral))
    reminders = messages.Reminders(
        BOOKING_REMINDER,
        "booking-reminder",
        "admin",
        f"booking-{round_}",
        every,
        number(ctx, "mmrpv_booking_reminders"),
        since,
        first=deadline,
    )
    due = local(deadline).date().isoformat()
    suggested = _suggested(task)

    def send_one(k: int) -> Plan:
        about = [{"reference": referral.reference}, {"reference": key_of(referral, task) or ""}]
        return messages.notice(
            referral,
            ctx,
            "booking-reminder",
            "admin",
            reminders.occasion(k),
            extra={"about": about},
            n=k,
            due=due,
            site=suggested,
        )

    return messages.chase(referral, ctx, reminders, send_one)


def _suggested(task: Resource) -> str:
    found = parameters(task, "input", "mmrpv-site")
    return str(((found[0].get("valueReference") or {}).get("display")) if found else "")
