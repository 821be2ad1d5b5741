"""Routine step 6-7: a reviewer's invalid input is refused visibly, never reverted in silence.

What a reviewer writes on the review Task that the routine cannot act on:

* ``unknown-level``: an output ``decision`` whose level is not one of ``mmr-level`` exactly
  (``MMRxx``, or ``mmrpv`` in the wrong case);
* ``no-decision``: business status ``decided`` without an output ``decision``;
* ``not-complete``: a decision while the referral is incomplete and its supplement request (KOM)
  unanswered (``completeness.gate``).

The Task stays with that reviewer (``owner`` untouched), at the status and business status it
had before (derived from the state: the assessment's ``recommended``, the wait it is on hold
for, or whether someone owns it), the invalid ``decision`` outputs removed, and it says why in
``statusReason.text`` and a ``note``, in the words of ``refused`` in
``mappings/confirmations.yaml``: what is wrong and what is allowed. The technical detail (the
codes found) goes to the log note and the ``decision-refused`` workflow counter, never into the
clinician's text. A valid decision afterwards clears the ``statusReason``
(``decision.record_decision``).

This runs before the other review steps of an event, so they see the Task as the routine left it.
"""

from __future__ import annotations

from typing import Any

from adapter.fhir.resource import Resource
from adapter.workflow import confirmations as conf
from adapter.workflow import options
from adapter.workflow.core import NOTHING, Context, Event, Plan, Referral
from adapter.workflow.referral import ACTIVE, as_list, codings, dig
from adapter.workflow.review.completeness import gate
from adapter.workflow.tasks import (
    base_status,
    business_status,
    concept,
    is_open,
    level_of,
    owner_is_reviewer,
    parameters,
    questionnaire_task,
    review_task,
    revise,
)

PROBLEMS = ("unknown-level", "no-decision", "not-complete")


def refused_text(problem: str, lang: str) -> str:
    return conf.template("refused", problem, lang, {})


def refused_texts() -> set[str]:
    """Every refusal text in every language: how a later valid decision recognises ours to clear."""
    return {str(t) for key in PROBLEMS for t in conf.texts()["refused"][key].values()}


def problem_of(referral: Referral, review: Resource, ctx: Context) -> tuple[str, str] | None:
    """What is wrong with the reviewer's input (a ``PROBLEMS`` key and the technical detail), or ``None``."""
    decisions = parameters(review, "output", "decision")
    bad = [o for o in decisions if level_of(o) is None]
    if bad:
        found = sorted({str(c.get("code")) for o in bad for c in codings(o.get("valueCodeableConcept"))})
        return "unknown-level", f"output decision with code(s) {found or ['(none)']}, not a level of mmr-level"
    if not decisions:
        if business_status(review) == "decided":
            return "no-decision", "businessStatus decided without an output decision"
        return None
    result = gate(referral, review, ctx.now)
    if not result.passed:
        return "not-complete", f"decision while {result.reason}: " + ", ".join(r.id for r in result.missing)
    return None


def _restored_business(referral: Referral, review: Resource) -> str:
    """The business status the review had before the reviewer's input, as the state shows it."""
    if review.get("status") == "on-hold":
        open_questionnaire = is_open(questionnaire_task(referral))
        return "awaiting-patient" if open_questionnaire else "awaiting-supplement"
    from adapter.workflow.review.recommendation import is_adapter_output

    assessed = any(is_adapter_output(o) for o in as_list(review.get("output")) if isinstance(o, dict))
    if assessed and (owner_is_reviewer(review) or review.get("status") == "in-progress"):
        return "recommended"
    return base_status(review)


def refuse_invalid(referral: Referral, event: Event, ctx: Context) -> Plan:
    """Refuse a reviewer's decision the routine cannot act on: the Task says why, at the state it had."""
    review = review_task(referral)
    if review is None or referral.service_request.get("status") != ACTIVE or not is_open(review):
        return NOTHING
    found = problem_of(referral, review, ctx)
    if found is None:
        return NOTHING
    problem, detail = found
    lang = options.language(ctx)
    text = refused_text(problem, lang)
    dropped = "decision" if problem == "not-complete" else None
    kept: list[dict[str, Any]] = []
    for o in as_list(review.get("output")):
        is_decision = isinstance(o, dict) and bool(parameters({"output": [o]}, "output", "decision"))
        if is_decision and (dropped == "decision" or level_of(o) is None):
            continue
        kept.append(o)
    business = _restored_business(referral, review)
    status = review.get("status") if review.get("status") in ("received", "in-progress", "on-hold") else "received"
    notes = [*as_list(review.get("note")), {"time": ctx.now.isoformat(), "text": text}]
    period = {k: v for k, v in (review.get("executionPeriod") or {}).items() if k != "end"}
    write = revise(
        referral,
        review,
        "task",
        status=status,
        businessStatus=concept("business-status", business, ctx),
        statusReason={"text": text},
        note=notes,
        output=kept or None,
        executionPeriod=period or None,
        lastModified=ctx.now.isoformat(),
    )
    return Plan(
        writes=(write,),
        counts=("decision-refused",),
        notes=(f"reviewer's input refused ({problem}): {detail}; review kept at {status} / {business}",),
    )


def clears_refusal(review: Resource) -> bool:
    """The review carries a refusal of ours in ``statusReason`` (a valid decision clears it)."""
    return dig(review, "statusReason", "text") in refused_texts()
