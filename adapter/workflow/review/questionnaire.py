"""Routine step 6, second part: ask the patient (intake questionnaire) when the referral cannot tell.

When a criterion is unknown, none is already not met (the level would be MMRsv anyway) and the
questionnaire covers it (``mappings/review.yaml`` ``questionnaire``: when-needed / always /
never), the adapter creates an SDC questionnaire Task for the patient (code
``complete-questionnaire``, owner and for the Patient, input the Questionnaire canonical, due
date in ``restriction.period.end``, partOf the review Task, focus the referral as profile
mmr-questionnaire-task asks), tells the patient (a ``questionnaire-request`` notice) and puts
the review ``on-hold`` / ``awaiting-patient``. The intake form is asked only if
``mappings/questionnaires.yaml`` names it for the review; the other forms named there are asked
in the same transaction and looked after by ``adapter.workflow.questionnaires``.

The patient app answers with a QuestionnaireResponse for our canonical, ``basedOn`` the
ServiceRequest (the Task's focus: R4 lets an answer be basedOn a CarePlan or ServiceRequest only,
and HAPI refuses a Task there), or sets it as the Task's output; an answer basedOn the Task, which
servers that do not check reference types let through, is taken too. It is linked as the Task's
output, the Task completes and the review resumes. An answer that does not answer the form
(``adapter.workflow.answers``) goes back to the patient: the Task stays open and says in
``statusReason`` which questions to answer again; reminders go on and the review waits. Without an
answer: reminders every N working days, at most M; past the due date the Task fails ("no answer")
and the review goes on with the criteria unknown, for the reviewer to judge.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from adapter.fhir.resource import Resource
from adapter.mappings import codes
from adapter.workflow import answers, options, questionnaires
from adapter.workflow import confirmations as conf
from adapter.workflow.calendar import add_working_days, local, parse_day_end, working_day_deadline
from adapter.workflow.core import NOTHING, Context, Event, Plan, Referral, Timer, create
from adapter.workflow.referral import clinic_reference, patient_reference, performer_clinic
from adapter.workflow.review import completeness
from adapter.workflow.review.criteria import Assessment, answerable, evaluate, latest_response, newest_response
from adapter.workflow.review.deadline import deadline_of
from adapter.workflow.review.sources import questionnaire_canonical
from adapter.workflow.tasks import (
    at_stage,
    concept,
    find_own,
    is_open,
    key_of,
    on_hold,
    open_review,
    questionnaire_key,
    questionnaire_task,
    reference_to,
    resumed,
    revise,
)

REMINDER_TIMER = "questionnaire-reminder"


def wanted(assessment: Assessment, ctx: Context) -> bool:
    """Whether asking the patient could change the recommendation (or the options say always/never)."""
    mode = str(options.option(ctx, "questionnaire"))
    if mode == "never":
        return False
    if mode == "always":
        return True
    return assessment.level is None and any(answerable(c) for c in assessment.unknown)


def ready(referral: Referral, ctx: Context) -> Resource | None:
    """The review Task if the review is past completeness and not waiting for the referrer."""
    review = open_review(referral)
    if review is None or at_stage(review, "on-hold", "awaiting-supplement"):
        return None
    return review if completeness.gate(referral, review, ctx.now).passed else None


def _task_body(referral: Referral, review: Resource, canonical: str, due: datetime, ctx: Context) -> dict[str, Any]:
    clinic = performer_clinic(referral)
    patient = patient_reference(referral)
    body = {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "code": {"coding": [codes().sdc_task_code]},
        "businessStatus": concept("business-status", "awaiting-patient"),
        "focus": {"reference": referral.reference},
        "partOf": [reference_to(referral, review)],
        "for": patient,
        "owner": patient,
        "requester": clinic_reference(clinic) if clinic else None,
        "authoredOn": ctx.now.isoformat(),
        "lastModified": ctx.now.isoformat(),
        "restriction": {"period": {"end": due.isoformat()}},
        "input": [{"type": questionnaires.sdc_type("questionnaire"), "valueCanonical": canonical}],
    }
    return {k: v for k, v in body.items() if v is not None}


def _ask(referral: Referral, review: Resource, ctx: Context) -> Plan:
    if patient_reference(referral) is None:
        return Plan(notes=("questionnaire wanted but the referral names no usable patient: left to the reviewer",))
    due = working_day_deadline(
        ctx.now, options.number(ctx, "questionnaire_due_days"), parse_day_end(options.option(ctx, "review_day_end"))
    )
    forms = questionnaires.configured(ctx, "review")
    criteria_url = questionnaires.url_of(questionnaire_canonical())
    mine = next((c for c in forms if questionnaires.url_of(c) == criteria_url), None)
    clinic = performer_clinic(referral)
    beside = questionnaires.ask(
        referral,
        ctx,
        "review",
        tuple(c for c in forms if c != mine),
        reference_to(referral, review),
        clinic_reference(clinic) if clinic else None,
        due,
    )
    if mine is None:  # the level criteria's form is not asked for: the review does not wait
        return beside + (_notice(referral, ctx, beside.writes[0].full_url, due) if beside.writes else NOTHING)
    task = create(
        _task_body(referral, review, mine, due, ctx), codes().identifier_system("task"), questionnaire_key(referral)
    )
    hold = revise(referral, review, "task", **on_hold(review, "awaiting-patient", ctx))
    return (
        Plan(
            writes=(task, hold),
            timers=(Timer(REMINDER_TIMER, referral.id, _first_timer(ctx, due)),),
            notes=("questionnaire requested from the patient",),
        )
        + beside
        + _notice(referral, ctx, task.full_url, due)
    )


def _notice(referral: Referral, ctx: Context, about: str, due: datetime) -> Plan:
    return conf.notify(
        referral,
        ctx,
        "questionnaire-request",
        "patient",
        "intake",
        extra={"about": [{"reference": referral.reference}, {"reference": about}]},
        due=local(due).date().isoformat(),
    )


def _first_timer(ctx: Context, due: datetime) -> datetime:
    if options.number(ctx, "questionnaire_reminders") == 0:
        return due
    return min(add_working_days(ctx.now, options.number(ctx, "questionnaire_reminder_days")), due)


def _link(referral: Referral, review: Resource, task: Resource, response: Resource, ctx: Context) -> Plan:
    """The answer completes the questionnaire Task and the review resumes."""
    return Plan(
        writes=(questionnaires.answered(referral, task, response, ctx),), notes=("questionnaire answered",)
    ) + _resume(referral, review, ctx)


def _resume(referral: Referral, review: Resource, ctx: Context) -> Plan:
    if not at_stage(review, "on-hold", "awaiting-patient"):
        return NOTHING
    return Plan(
        writes=(revise(referral, review, "task", **resumed(review, ctx)),),
        notes=("review resumes after the questionnaire",),
    )


def manage_questionnaire(referral: Referral, event: Event, ctx: Context) -> Plan:
    """Ask the patient when needed; link the answer and resume the review when it comes."""
    review = ready(referral, ctx)
    if review is None:
        return NOTHING
    task = questionnaire_task(referral)
    response = latest_response(referral)
    if task is None:
        if response is not None or not wanted(evaluate(referral, ctx.now), ctx):
            return NOTHING
        return _ask(referral, review, ctx)
    if is_open(task) and response is not None and response.get("id"):
        return _link(referral, review, task, response, ctx)
    if is_open(task):
        return _refuse(referral, task, ctx)
    return _resume(referral, review, ctx)


def chase_patient(referral: Referral, event: Event, ctx: Context) -> Plan:
    """Remind the patient; past the due date, go on without the answers."""
    review, task = ready(referral, ctx), questionnaire_task(referral)
    if review is None or task is None or not is_open(task):
        return NOTHING
    response = latest_response(referral)
    if response is not None and response.get("id"):
        return _link(referral, review, task, response, ctx)
    return _refuse(referral, task, ctx) + _remind_or_give_up(referral, review, task, ctx)


def _refuse(referral: Referral, task: Resource, ctx: Context) -> Plan:
    """Answers that do not count go back to the patient (``adapter.workflow.answers``); the Task waits on."""
    newest = newest_response(referral)
    if newest is None or not newest.get("id"):
        return NOTHING
    return answers.refuse(referral, task, newest, ctx)


def _remind_or_give_up(referral: Referral, review: Resource, task: Resource, ctx: Context) -> Plan:
    due = deadline_of(task) or ctx.now
    if ctx.now >= due:
        failed = revise(
            referral,
            task,
            "task",
            status="failed",
            lastModified=ctx.now.isoformat(),
            businessStatus=concept("business-status", "not-answered", ctx),
            statusReason={"text": conf.reason("no-answer", options.language(ctx))},
        )
        return Plan(writes=(failed,), notes=("questionnaire not answered by its due date: review goes on",)) + _resume(
            referral, review, ctx
        )
    most = options.number(ctx, "questionnaire_reminders")
    sent = [r for m in range(1, most + 1) if (r := find_own(referral, "communication", _reminder_id(referral, m)))]
    last = sent[-1] if sent else find_own(referral, "communication", _request_id(referral))
    next_at = _after(last, ctx) if len(sent) < most and last else None
    if next_at is None:
        return Plan(timers=(Timer(REMINDER_TIMER, referral.id, due),))
    if ctx.now < next_at:
        return Plan(timers=(Timer(REMINDER_TIMER, referral.id, min(next_at, due)),))
    about = [{"reference": referral.reference}, {"reference": key_of(referral, task) or ""}]
    plan = conf.notify(
        referral,
        ctx,
        "questionnaire-reminder",
        "patient",
        str(len(sent) + 1),
        extra={"about": about},
        due=local(due).date().isoformat(),
    )
    following = add_working_days(ctx.now, options.number(ctx, "questionnaire_reminder_days"))
    return plan + Plan(
        timers=(Timer(REMINDER_TIMER, referral.id, min(following, due) if len(sent) + 1 < most else due),)
    )


def _request_id(referral: Referral) -> str:
    return conf.message_id(referral, "questionnaire-request", "patient", "intake")


def _reminder_id(referral: Referral, m: int) -> str:
    return conf.message_id(referral, "questionnaire-reminder", "patient", str(m))


def _after(message: Resource, ctx: Context) -> datetime | None:
    try:
        sent = datetime.fromisoformat(str(message.get("sent")))
    except ValueError:
        return None
    return add_working_days(sent, options.number(ctx, "questionnaire_reminder_days"))
