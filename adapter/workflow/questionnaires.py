"""The patient's questionnaires per moment of the routine, by canonical (``mappings/questionnaires.yaml``).

The routine asks for the national register's (NRS) forms at the review, at the first visit at the
MMRpv unit, after the programme and 12 months later. They are licensed, so the adapter knows them
only by canonical: for each canonical configured for a moment it writes one SDC questionnaire
Task (owner and for the patient, focus the referral, input the canonical, partOf the Task of that
stage, due ``questionnaire_due_days`` working days on) and links the answer when it comes.

Two forms have steps of their own and are left to them here: the intake form whose answers the
level criteria read (``review.questionnaire``) and the follow-up Task's own form
(``mmrpv.follow_up``). Every other configured form is a *companion*: asked beside them or at its
moment, completed (``answered``) by a QuestionnaireResponse for its canonical ``basedOn`` the
referral or the Task (or set as the Task's output), failed (``not-answered``) past its due date
(a ``questionnaire-due`` timer), closed with the stage that asked for it. No companion holds up
the review or the care.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from adapter.fhir.resource import Resource
from adapter.mappings import codes
from adapter.workflow import options
from adapter.workflow.answers import counts
from adapter.workflow.calendar import parse_day_end, parse_moment, working_day_deadline
from adapter.workflow.core import NOTHING, Context, Event, Plan, Referral, Timer, Write, create
from adapter.workflow.referral import as_list, dig, patient_reference, points_to, referral_key
from adapter.workflow.review.sources import questionnaire_canonical
from adapter.workflow.tasks import OPEN, cancel, concept, find_own, own_value, revise

MOMENTS = ("review", "first-visit", "after-programme", "follow-up")
DUE_TIMER = "questionnaire-due"


def sdc_type(code: str) -> dict[str, Any]:
    """A questionnaire Task's input or output type, in SDC's code system (codes.yaml ``sdc_task_code``)."""
    return {"coding": [{"system": codes().sdc_task_code["system"], "code": code}]}


def answered(referral: Referral, task: Resource, answer: Resource, ctx: Context) -> Write:
    """The questionnaire Task completed by the patient's answer, linked as its output; a reason given
    for answers that did not count (``answers.refuse``) goes."""
    output = {
        "type": sdc_type("questionnaire-response"),
        "valueReference": {"reference": f"QuestionnaireResponse/{answer['id']}"},
    }
    return revise(
        referral,
        task,
        "task",
        status="completed",
        output=[*as_list(task.get("output")), output],
        businessStatus=concept("business-status", "answered", ctx),
        statusReason=None,
        lastModified=ctx.now.isoformat(),
    )


def configured(ctx: Context, moment: str) -> tuple[str, ...]:
    """The canonicals configured for a moment (option ``questionnaires``, default the mapping file)."""
    moments = options.option(ctx, "questionnaires") or {}
    return tuple(str(c) for c in as_list(moments.get(moment) if isinstance(moments, dict) else None) if c)


def url_of(canonical: Any) -> str:
    return str(canonical or "").split("|")[0]


def slug(canonical: str) -> str:
    """The last part of a canonical's url, for identifiers: ``.../Questionnaire/mmr-intake|1`` gives ``mmr-intake``."""
    last = url_of(canonical).rstrip("/").rsplit("/", 1)[-1].lower()
    return "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in last) or "questionnaire"


def task_value(referral: Referral, moment: str, canonical: str) -> str:
    suffix = f"complete-questionnaire-{slug(canonical)}"
    return f"{referral_key(referral.service_request)}-{suffix}" + ("" if moment == "review" else f"-{moment}")


def canonical_of(task: Resource) -> str | None:
    return next(
        (
            str(p.get("valueCanonical"))
            for p in as_list(task.get("input"))
            if isinstance(p, dict) and p.get("valueCanonical")
        ),
        None,
    )


def _body(
    referral: Referral,
    canonical: str,
    part_of: dict[str, str],
    requester: dict[str, Any] | None,
    due: datetime,
    ctx: Context,
) -> dict[str, Any]:
    patient = patient_reference(referral)
    body = {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "code": {"coding": [codes().sdc_task_code]},
        "businessStatus": concept("business-status", "awaiting-patient", ctx),
        "focus": {"reference": referral.reference},
        "partOf": [part_of],
        "for": patient,
        "owner": patient,
        "requester": requester,
        "authoredOn": ctx.now.isoformat(),
        "lastModified": ctx.now.isoformat(),
        "restriction": {"period": {"end": due.isoformat()}},
        "input": [{"type": sdc_type("questionnaire"), "valueCanonical": canonical}],
    }
    return {k: v for k, v in body.items() if v is not None}


def ask(
    referral: Referral,
    ctx: Context,
    moment: str,
    canonicals: tuple[str, ...],
    part_of: dict[str, str],
    requester: dict[str, Any] | None,
    due: datetime | None = None,
) -> Plan:
    """One questionnaire Task per canonical not asked yet at this moment, and the timer of the earliest due."""
    if patient_reference(referral) is None or not canonicals:
        return NOTHING
    due = due or working_day_deadline(
        ctx.now, options.number(ctx, "questionnaire_due_days"), parse_day_end(options.option(ctx, "review_day_end"))
    )
    system = codes().identifier_system("task")
    writes = tuple(
        create(_body(referral, c, part_of, requester, due, ctx), system, value)
        for c in canonicals
        if not find_own(referral, "task", value := task_value(referral, moment, c))
    )
    if not writes:
        return NOTHING
    return Plan(
        writes=writes,
        timers=(Timer(DUE_TIMER, referral.id, due),),
        notes=(f"{len(writes)} questionnaire(s) asked at {moment}",),
    )


def companions(referral: Referral, part_of: str | None = None) -> list[Resource]:
    """Our questionnaire Tasks of this referral that no other step owns (optionally: partOf one Task)."""
    sdc = codes().sdc_task_code
    prefix = f"{referral_key(referral.service_request)}-complete-questionnaire-"
    owned = {task_value(referral, "review", questionnaire_canonical())}  # review.questionnaire's own
    found = []
    for task in referral.all("Task"):
        value = own_value(task, "task") or ""
        coded = any(c.get("code") == sdc["code"] for c in as_list(dig(task, "code", "coding")) if isinstance(c, dict))
        if (
            coded
            and value.startswith(prefix)
            and value not in owned
            and (part_of is None or points_to(task.get("partOf"), part_of))
        ):
            found.append(task)
    return found


def answer_to(referral: Referral, task: Resource, canonical: str | None = None) -> Resource | None:
    """The first completed QuestionnaireResponse of the referral's patient to the Task's canonical
    (``canonical`` if the Task names none), basedOn the referral or the Task or linked as its output;
    if none of them counts (``answers.counts``), the newest, for ``answers.refuse`` to send back."""
    url = url_of(canonical_of(task) or canonical)
    keys = [referral.reference] + ([f"Task/{task['id']}"] if task.get("id") else [])
    outputs = {dig(p, "valueReference", "reference") for p in as_list(task.get("output")) if isinstance(p, dict)}
    patient = dig(patient_reference(referral), "reference")
    found = [
        qr
        for qr in referral.all("QuestionnaireResponse")
        if qr.get("status") in ("completed", "amended")
        and url_of(qr.get("questionnaire")) == url
        and (any(points_to(qr.get("basedOn"), k) for k in keys) or f"QuestionnaireResponse/{qr.get('id')}" in outputs)
        and (not patient or not dig(qr, "subject", "reference") or points_to(qr.get("subject"), patient))
    ]
    valid = [qr for qr in found if counts(referral, qr)]
    order = lambda r: (str(r.get("authored") or ""), str(r.get("id")))  # noqa: E731
    return min(valid, key=order) if valid else max(found, key=order, default=None)


def track_companions(referral: Referral, event: Event, ctx: Context) -> Plan:
    """The step: every event and the due timer look at the companions."""
    return settle_companions(referral, ctx)


def settle_companions(referral: Referral, ctx: Context) -> Plan:
    """Link answers, fail what is past due, and keep the timer of the earliest open due date."""
    plan, open_due = NOTHING, []
    for task in companions(referral):
        if task.get("status") not in OPEN or not task.get("id"):
            continue
        due = parse_moment(dig(task, "restriction", "period", "end"))
        if (answer := answer_to(referral, task)) and answer.get("id"):
            plan += Plan(writes=(answered(referral, task, answer, ctx),), notes=("questionnaire answered",))
        elif due is not None and ctx.now >= due:
            plan += Plan(
                writes=(
                    revise(
                        referral,
                        task,
                        "task",
                        status="failed",
                        lastModified=ctx.now.isoformat(),
                        businessStatus=concept("business-status", "not-answered", ctx),
                    ),
                ),
                notes=("questionnaire not answered by its due date",),
            )
        elif due is not None:
            open_due.append(due)
    return plan + (Plan(timers=(Timer(DUE_TIMER, referral.id, min(open_due)),)) if open_due else NOTHING)


def close_companions(referral: Referral, ctx: Context, part_of: str, why: str) -> Plan:
    """The stage that asked for them is over: its open companions are closed."""
    writes = tuple(cancel(referral, t, why, ctx) for t in companions(referral, part_of) if t.get("status") in OPEN)
    return Plan(writes=writes) if writes else NOTHING
