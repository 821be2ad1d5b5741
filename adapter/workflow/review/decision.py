"""Routine step 6-7: the level decision, by the reviewer (or by the adapter if configured), or a rejection.

The reviewer decides by updating the review Task: an output ``decision`` (task-parameter) whose
value is the level (mmr-level MMRpv / MMRsv), and businessStatus ``decided``; the last decision
output counts. A decision against the recommendation is allowed; the adapter records it once as
an output ``deviation`` (valueString naming both levels). With ``auto_decide`` the adapter
writes the decision itself when every criterion is met or not met.

A rejection is the reviewer setting the review Task ``rejected`` (with a statusReason): the
patient's open questionnaire is cancelled and referrer and patient get ``AVV``.
Forwarding the decided referral is ``adapter.workflow.forwarding``.
"""

from __future__ import annotations

from typing import Any

from adapter.fhir.resource import Resource
from adapter.mappings import codes
from adapter.workflow import confirmations as conf
from adapter.workflow import options, questionnaires
from adapter.workflow.core import NOTHING, Context, Event, Plan, Referral
from adapter.workflow.referral import ACTIVE, as_list, code_in, codings, dig, has_code
from adapter.workflow.review import refusal
from adapter.workflow.review.criteria import CRITERIA, MET, NOT_MET
from adapter.workflow.tasks import (
    business_status,
    cancel,
    concept,
    decision,
    is_open,
    key_of,
    parameters,
    questionnaire_task,
    recommendation,
    review_task,
    revise,
)


def determinate(review: Resource) -> bool:
    """Every criterion output on the Task says met or not met."""
    system, results = codes().system("criterion"), codes().system("criterion-result")
    found = {}
    for output in as_list(review.get("output")):
        for criterion in CRITERIA:
            if has_code(output.get("type"), system, criterion):
                found[criterion] = code_in(output.get("valueCodeableConcept"), results)
    return all(found.get(c) in (MET, NOT_MET) for c in CRITERIA)


def decided_at(review: Resource, ctx: Context) -> dict[str, Any]:
    """``executionPeriod`` with the decision's moment as its end."""
    return {**(review.get("executionPeriod") or {}), "end": ctx.now.isoformat()}


def _auto_decide(referral: Referral, review: Resource, ctx: Context) -> Plan:
    level = recommendation(review)
    if (
        not options.flag(ctx, "auto_decide")
        or level is None
        or not is_open(review)
        or business_status(review) not in ("recommended", "awaiting-assignment")
        or not determinate(review)
    ):
        return NOTHING
    output = {"type": concept("task-parameter", "decision", ctx), "valueCodeableConcept": concept("level", level, ctx)}
    write = revise(
        referral,
        review,
        "task",
        output=[*as_list(review.get("output")), output],
        businessStatus=concept("business-status", "decided", ctx),
        lastModified=ctx.now.isoformat(),
        executionPeriod=decided_at(review, ctx),
    )
    return Plan(writes=(write,), notes=(f"decided automatically: {level}",))


def _record(referral: Referral, review: Resource, level: str, ctx: Context) -> Plan:
    changes: dict[str, Any] = {}
    recommended = recommendation(review)
    if recommended and recommended != level and not parameters(review, "output", "deviation"):
        text = (
            f"Beslut {level} avviker från rekommendation {recommended}"
            if options.language(ctx) == "sv"
            else f"Decision {level} differs from the recommendation {recommended}"
        )
        changes["output"] = [
            *as_list(review.get("output")),
            {"type": concept("task-parameter", "deviation", ctx), "valueString": text},
        ]
    if is_open(review) and business_status(review) != "decided":
        changes["businessStatus"] = concept("business-status", "decided", ctx)
    if is_open(review) and not dig(review, "executionPeriod", "end"):
        changes["executionPeriod"] = decided_at(review, ctx)
    if is_open(review) and refusal.clears_refusal(review):
        changes["statusReason"] = None  # the reviewer corrected what the adapter refused: no longer true
    if not changes:
        return NOTHING
    notes = (f"decision {level} against the recommendation {recommended}: recorded",) if "output" in changes else ()
    return Plan(
        writes=(revise(referral, review, "task", lastModified=ctx.now.isoformat(), **changes),),
        notes=(*notes, f"decision recorded: {level}"),
    )


def _reject(referral: Referral, review: Resource, ctx: Context) -> Plan:
    lang = options.language(ctx)
    why = review.get("statusReason")
    reason = (
        dig(why, "text")
        or next((c.get("display") or c.get("code") for c in codings(why)), None)
        or conf.reason("no-reason", lang)
    )
    plan = conf.confirm(referral, ctx, "AVV", "review", reason=reason)
    task = questionnaire_task(referral)
    if is_open(task):
        assert task is not None
        plan += Plan(writes=(cancel(referral, task, conf.reason("review-closed", lang), ctx),))
    return plan + questionnaires.close_companions(
        referral, ctx, key_of(referral, review) or "", conf.reason("review-closed", lang)
    )


def record_decision(referral: Referral, event: Event, ctx: Context) -> Plan:
    """Record the reviewer's decision (and any deviation), decide automatically if configured, or reject."""
    review = review_task(referral)
    if review is None or referral.service_request.get("status") != ACTIVE:
        return NOTHING
    if review.get("status") == "rejected":
        return _reject(referral, review, ctx)
    level = decision(review)
    if level is None:
        return _auto_decide(referral, review, ctx)
    return _record(referral, review, level, ctx)
