"""[15] The digital follow-up 12 months after the programme ends.

When the programme is completed, a follow-up Task (``<key>-follow-up``) is created and *held*:
status ``draft`` (not yet for the patient to act on), code ``follow-up`` plus the SDC code
``complete-questionnaire`` so that patient apps find it, owner and for the Patient, input the
follow-up Questionnaire's canonical, ``restriction.period`` from the due moment
(``mmrpv_follow_up_months`` after the programme's end, at ``mmrpv_follow_up_time``) to the end of
the answer window (``mmrpv_follow_up_window_days`` working days later), and a timer at the due
moment.

When due (the timer, or any later event: the check is ``now >= due``, so a timer that fires early
only re-arms it), the Task becomes ``requested`` / ``awaiting-patient`` and the patient gets a
``follow-up-request``, with reminders every ``mmrpv_follow_up_reminder_days`` working days, at most
``mmrpv_follow_up_reminders``. Activation happens once: it is a level-triggered change of the
Task's status under the referral's lock, and the notice carries a deterministic identifier.

The patient's QuestionnaireResponse (our follow-up Questionnaire, basedOn the Task or the
ServiceRequest) completes the Task (``answered``) with it as output; one that does not answer the
form goes back to the patient as the intake's does (``adapter.workflow.answers``), the reminders go
on; unanswered at the end of the window the Task fails (``not-answered``). Either way the care
commitment is then finished (``episode.end_episode``).
"""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

from adapter.fhir.resource import Resource
from adapter.mappings import codes
from adapter.workflow import answers, questionnaires
from adapter.workflow.calendar import STOCKHOLM, add_working_days, local, parse_moment
from adapter.workflow.core import NOTHING, Context, Event, Plan, Referral, Timer, create
from adapter.workflow.mmrpv import messages
from adapter.workflow.mmrpv.common import (
    FOLLOW_UP_DUE,
    FOLLOW_UP_REMINDER,
    TASK,
    add_months,
    data,
    fired,
    follow_up_canonical,
    follow_up_task,
    intake_task,
    key,
    live,
    programme,
    programme_end,
    text,
    unit_ref,
)
from adapter.workflow.options import number, option
from adapter.workflow.referral import patient_reference
from adapter.workflow.tasks import concept, key_of, revise


def due_moment(ended: datetime, ctx: Context) -> datetime:
    """``mmrpv_follow_up_months`` after the programme's end, at ``mmrpv_follow_up_time`` local."""
    try:
        at = time.fromisoformat(str(option(ctx, "mmrpv_follow_up_time")))
    except ValueError:
        at = time(9, 0)
    day = add_months(local(ended), number(ctx, "mmrpv_follow_up_months")).date()
    return datetime.combine(day, at, tzinfo=STOCKHOLM)


def _body(referral: Referral, due: datetime, ctx: Context) -> dict[str, Any]:
    patient = patient_reference(referral)
    intake = intake_task(referral)
    window = add_working_days(due, number(ctx, "mmrpv_follow_up_window_days"))
    body = {
        "resourceType": "Task",
        "status": "draft",
        "intent": "order",
        "code": {"coding": [*concept("task-type", "follow-up", ctx)["coding"], codes().sdc_task_code]},
        "businessStatus": concept("business-status", "follow-up-scheduled", ctx),
        "focus": {"reference": referral.reference},
        "partOf": [{"reference": key_of(referral, intake) or ""}] if intake else None,
        "for": patient,
        "owner": patient,
        "requester": unit_ref(),
        "authoredOn": ctx.now.isoformat(),
        "lastModified": ctx.now.isoformat(),
        "restriction": {"period": {"start": due.isoformat(), "end": window.isoformat()}},
        "input": [
            {
                "type": questionnaires.sdc_type("questionnaire"),
                "valueCanonical": (questionnaires.configured(ctx, "follow-up") or (follow_up_canonical(),))[0],
            }
        ],
    }
    return {k: v for k, v in body.items() if v is not None}


def _window(task: Resource) -> tuple[datetime | None, datetime | None]:
    period = (task.get("restriction") or {}).get("period") or {}
    return parse_moment(period.get("start")), parse_moment(period.get("end"))


def schedule_follow_up(referral: Referral, event: Event, ctx: Context) -> Plan:
    """Once the programme is completed: the follow-up Task, held until it is due."""
    ended = programme(referral)
    if ended is None or ended.get("status") != "completed" or not live(referral) or follow_up_task(referral):
        return NOTHING
    if patient_reference(referral) is None:
        return Plan(notes=("follow-up not scheduled: the referral names no usable patient",))
    due = due_moment(programme_end(ended, ctx), ctx)
    write = create(_body(referral, due, ctx), codes().identifier_system(TASK), f"{key(referral)}-follow-up")
    return Plan(
        writes=(write,),
        timers=(Timer(FOLLOW_UP_DUE, referral.id, due),),
        notes=(f"follow-up scheduled for {due.date().isoformat()}",),
    )


def run_follow_up(referral: Referral, event: Event, ctx: Context) -> Plan:
    """Activate the follow-up when due, chase the patient, and close it on the answer or the window's end."""
    task = follow_up_task(referral)
    if task is None or not task.get("id") or not live(referral):
        return NOTHING
    due, until = _window(task)
    if due is None or until is None:
        return Plan(notes=("follow-up Task has no readable restriction.period: left alone",))
    status = task.get("status")
    if status == "draft":
        if ctx.now >= due:
            return _activate(referral, task, due, until, ctx)
        return Plan(timers=(Timer(FOLLOW_UP_DUE, referral.id, due),)) if fired(event, FOLLOW_UP_DUE) else NOTHING
    if status not in ("requested", "received", "accepted", "ready", "in-progress"):
        return NOTHING
    refusal = NOTHING
    if (answer := questionnaires.answer_to(referral, task, follow_up_canonical())) and answer.get("id"):
        if answers.counts(referral, answer):
            return Plan(writes=(questionnaires.answered(referral, task, answer, ctx),), notes=("follow-up answered",))
        refusal = answers.refuse(referral, task, answer, ctx)
    if ctx.now >= until:
        reason = {"text": text(data()["reasons"]["follow-up-no-answer"], ctx)}
        failed = revise(
            referral,
            task,
            TASK,
            status="failed",
            statusReason=reason,
            lastModified=ctx.now.isoformat(),
            businessStatus=concept("business-status", "not-answered", ctx),
        )
        return Plan(writes=(failed,), notes=("follow-up unanswered at the end of its window",))
    return refusal + (_chase(referral, due, until, ctx) if fired(event, FOLLOW_UP_REMINDER) else NOTHING)


def _activate(referral: Referral, task: Resource, due: datetime, until: datetime, ctx: Context) -> Plan:
    active = revise(
        referral,
        task,
        TASK,
        status="requested",
        lastModified=ctx.now.isoformat(),
        businessStatus=concept("business-status", "awaiting-patient", ctx),
    )
    about = [{"reference": referral.reference}, {"reference": f"Task/{task['id']}"}]
    notice = messages.notice(
        referral,
        ctx,
        "follow-up-request",
        "patient",
        "follow-up",
        extra={"about": about},
        until=local(until).date().isoformat(),
    )
    reminders = _reminders(due, until, ctx)
    first = messages.first_reminder(reminders)
    timers = (Timer(FOLLOW_UP_REMINDER, referral.id, first),) if first else ()
    beside = questionnaires.ask(
        referral,
        ctx,
        "follow-up",
        questionnaires.configured(ctx, "follow-up")[1:],
        {"reference": f"Task/{task['id']}"},
        unit_ref(),
        until,
    )
    return Plan(writes=(active,), timers=timers, notes=("follow-up activated",)) + notice + beside


def _reminders(due: datetime, until: datetime, ctx: Context) -> messages.Reminders:
    return messages.Reminders(
        FOLLOW_UP_REMINDER,
        "follow-up-reminder",
        "patient",
        "follow-up",
        number(ctx, "mmrpv_follow_up_reminder_days"),
        number(ctx, "mmrpv_follow_up_reminders"),
        due,
        until,
    )


def _chase(referral: Referral, due: datetime, until: datetime, ctx: Context) -> Plan:
    reminders = _reminders(due, until, ctx)
    return messages.chase(
        referral,
        ctx,
        reminders,
        lambda k: messages.notice(
            referral, ctx, "follow-up-reminder", "patient", reminders.occasion(k), until=local(until).date().isoformat()
        ),
    )
