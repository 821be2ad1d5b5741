"""Routine step 6, last part: the recommended level and its evidence, on the review Task.

Once the referral is complete (or its supplement answered) and nobody outside the clinic is
being waited for, the four criteria are evaluated (``criteria``) and written as ``Task.output``:
one output per criterion (type = the criterion, value = met / not-met / unknown with the
evidence as text), and a ``recommendation`` output with the level when the criteria determine
one (all met: MMRpv; any not met: MMRsv). The Task's business status becomes ``recommended`` (its
status stays: only a reviewer makes a review ``in-progress``), except while nobody owns it: a
clinic without a reviewer pool keeps ``awaiting-assignment`` (its worklist filters on that) with
the assessment already in the outputs, and ``recommended`` follows once the clinic sets an owner;
when
no level follows, ``recommended`` still means "the adapter's assessment is ready", and the
missing recommendation output tells the reviewer the judgement is theirs.

Outputs the adapter does not own (the reviewer's decision, a site) are kept as they are. Until a
decision is recorded, a new version of the referral or new answers re-evaluate the criteria.
"""

from __future__ import annotations

from typing import Any

from adapter.mappings import codes
from adapter.workflow import options
from adapter.workflow.core import NOTHING, Context, Event, Plan, Referral
from adapter.workflow.referral import as_list, has_code
from adapter.workflow.review.criteria import Assessment, evaluate
from adapter.workflow.review.questionnaire import REMINDER_TIMER, ready
from adapter.workflow.tasks import (
    REVIEW_EVENTS,
    base_status,
    business_status,
    is_open,
    owner_is_reviewer,
    questionnaire_task,
    revise,
    stage,
    working_status,
)

# Events after which a review may have become ready for its recommendation.
RECOMMEND_EVENTS = (*REVIEW_EVENTS, f"timer:{REMINDER_TIMER}")


def outputs(assessment: Assessment, lang: str) -> list[dict[str, Any]]:
    """The adapter's outputs: the criteria in routine order, then the recommendation if any."""
    c = codes()
    out = [
        {
            "type": c.concept("criterion", f.criterion, lang),
            "valueCodeableConcept": {**c.concept("criterion-result", f.result, lang), "text": f.text(lang)},
        }
        for f in assessment.findings
    ]
    if assessment.level:
        out.append(
            {
                "type": c.concept("task-parameter", "recommendation", lang),
                "valueCodeableConcept": c.concept("level", assessment.level, lang),
            }
        )
    return out


def is_adapter_output(output: dict[str, Any]) -> bool:
    c = codes()
    return has_code(output.get("type"), c.system("criterion")) or has_code(
        output.get("type"), c.system("task-parameter"), "recommendation"
    )


def recommend_level(referral: Referral, event: Event, ctx: Context) -> Plan:
    """Write (or refresh) the criteria and the recommended level on the review Task."""
    review = ready(referral, ctx)
    if review is None or review.get("status") == "on-hold" or is_open(questionnaire_task(referral)):
        return NOTHING
    lang = options.language(ctx)
    assessment = evaluate(referral, ctx.now, lang)
    mine = outputs(assessment, lang)
    others = [o for o in as_list(review.get("output")) if not is_adapter_output(o)]
    current = [o for o in as_list(review.get("output")) if is_adapter_output(o)]
    business = (
        "recommended" if owner_is_reviewer(review) or review.get("status") == "in-progress" else base_status(review)
    )
    if current == mine and business_status(review) == business:
        return Plan(notes=assessment.notes)
    write = revise(referral, review, "task", output=others + mine, **stage(working_status(review), business, ctx))
    level = assessment.level or "none (reviewer judges: " + ", ".join(assessment.unknown) + " unknown)"
    return Plan(writes=(write,), notes=(*assessment.notes, f"recommendation: {level}"))
