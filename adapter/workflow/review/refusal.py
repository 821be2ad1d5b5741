"""Routine step 6-7: a reviewer's invalid input is refused visibly, never reverted in silence.

What a reviewer writes on the review Task that the routine cannot act on:

* ``unknown-level``: an output ``decision`` whose level is not one of ``mmr-level`` exactly
  (``MMRxx``, or ``mmrpv`` in the wrong case);
* ``no-decision``: business status ``decided`` without an output ``decision``;
* ``not-complete``: a decision while the referral is incomplete and its supplement request (KOM)
  unanswered (``completeness.gate``).
* ``not-in-pool``: ``owner`` set to someone who may not hold the review: at a clinic with a
  reviewer pool, anyone but the clinic or a reviewer of its pool (``mappings/organisations.yaml``);
  at a clinic without one (it assigns by hand, to staff the directory does not list), a unit or
  reviewer of the directory that is not this clinic (another clinic's reviewer, the MMRpv unit).

The Task stays with that reviewer (``owner`` untouched), at the status and business status it
had before (derived from the state: the assessment's ``recommended``, the wait it is on hold
for, or whether someone owns it), the invalid ``decision`` outputs removed, and it says why in
``statusReason.text`` and a ``note``, in the words of ``refused`` in
``mappings/confirmations.yaml``: what is wrong and what is allowed. The technical detail (the
codes found) goes to the log note and the ``decision-refused`` workflow counter, never into the
clinician's text. A valid decision afterwards clears the ``statusReason``
(``decision.record_decision``).

A reassignment outside the pool is the one refusal that moves the Task: it goes back to the
clinic (``owner`` the clinic's Organization, ``received`` / ``awaiting-assignment``, or the wait it
is on hold for), never to a guessed "last valid owner". The core sees the Task as it is now, not
its history, and the reviewer who handed it on is not named anywhere in it; a reviewer picked
again by the pool's hash need not be the one who had it. The clinic is always a valid owner, its
worklist is where an unassigned review is found, and it is the party who can assign it again: so
the pool's automatic assignment leaves such a Task to the clinic (``arrival.assign_reviewer``),
and the refusal's ``statusReason`` is cleared once a reviewer of the pool owns it.

This runs before the other review steps of an event, so they see the Task as the routine left it.
"""

from __future__ import annotations

from typing import Any

from adapter.fhir.resource import Resource
from adapter.mappings import HSA_SYSTEM, Clinic, directory
from adapter.workflow import confirmations as conf
from adapter.workflow import options, task_states
from adapter.workflow.core import NOTHING, Context, Event, Plan, Referral
from adapter.workflow.referral import ACTIVE, as_list, clinic_reference, codings, dig, performer_clinic
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

PROBLEMS = ("unknown-level", "no-decision", "not-complete", "not-in-pool")
REASSIGNED = "not-in-pool"
NO_OWNER = "no-owner"  # someone removed the owner: ``responsibility.restore_owner`` gives it back here
BACK_TO_CLINIC = (REASSIGNED, NO_OWNER)  # the refusals after which the clinic assigns again by hand


def refused_text(problem: str, lang: str) -> str:
    return conf.template("refused", problem, lang, {})


def refused_texts() -> set[str]:
    """Every refusal text in every language: how a later valid decision recognises ours to clear."""
    return conf.every_language("refused", (*PROBLEMS, NO_OWNER))


def owner_ids(referral: Referral, owner: Any) -> set[str]:
    """The HSA-ids an ``owner`` Reference names: its identifier, its literal id, its target's identifiers."""
    if not isinstance(owner, dict):
        return set()
    found: set[str] = set()
    ident = owner.get("identifier")
    if isinstance(ident, dict) and ident.get("system") == HSA_SYSTEM and isinstance(ident.get("value"), str):
        found.add(ident["value"])
    literal = owner.get("reference")
    if isinstance(literal, str) and "/" in literal and not literal.startswith(("#", "urn:")):
        found.add(literal.rsplit("/", 1)[1])
        for i in as_list((referral.get(literal) or {}).get("identifier")):
            if isinstance(i, dict) and i.get("system") == HSA_SYSTEM and isinstance(i.get("value"), str):
                found.add(i["value"])
    return found


def owner_problem(referral: Referral, review: Resource, clinic: Clinic) -> str | None:
    """Why the review's ``owner`` may not hold it (the technical detail, HSA-ids only), or ``None``."""
    owner = review.get("owner")
    if not isinstance(owner, dict):
        return None  # no owner at all: ``responsibility.restore_owner`` gives it back to the clinic
    ids = owner_ids(referral, owner)
    allowed = {clinic.hsa_id, *(r.hsa_id for r in clinic.reviewers)}
    if ids & allowed:
        return None
    shown = sorted(ids) or ["(no HSA-id)"]
    if clinic.reviewers:
        return f"owner {shown} is neither {clinic.key} nor a reviewer of its pool"
    others = sorted(i for i in ids if directory().known(i))
    return f"owner {others} is a unit of the directory other than {clinic.key}" if others else None


def reassignment_refused(review: Resource) -> bool:
    """The review went back to the clinic (a refused reassignment, a removed owner): the clinic
    assigns it again, by hand."""
    return dig(review, "statusReason", "text") in conf.every_language("refused", BACK_TO_CLINIC)


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
    clinic = performer_clinic(referral)
    wrong_owner = owner_problem(referral, review, clinic) if clinic is not None else None
    if clinic is not None and wrong_owner is not None:
        return back_to_clinic(referral, review, clinic, wrong_owner, ctx)
    if reassignment_refused(review) and owner_is_reviewer(review):
        return Plan(  # a reviewer of the pool holds it now: the refusal is no longer true
            writes=(revise(referral, review, "task", statusReason=None, lastModified=ctx.now.isoformat()),),
            notes=("review reassigned within the pool: refusal cleared",),
        )
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


def back_to_clinic(
    referral: Referral,
    review: Resource,
    clinic: Clinic,
    detail: str,
    ctx: Context,
    problem: str = REASSIGNED,
    count: str = "reassignment-refused",
) -> Plan:
    """A reassignment outside the pool, or a removed owner (``problem`` :data:`NO_OWNER`): the review
    goes back to the clinic, saying why (see the module)."""
    text = refused_text(problem, options.language(ctx))
    # It keeps waiting for the patient or the referrer: a hold of the state table's; a Task someone
    # filled with another business status starts again from the clinic's worklist.
    held = business_status(review) if review.get("status") == "on-hold" else None
    table = task_states.table_of(review)
    waiting = held is not None and table is not None and table.row("on-hold", held) is not None
    status = "on-hold" if waiting else "received"
    business = held if waiting else "awaiting-assignment"
    write = revise(
        referral,
        review,
        "task",
        owner=clinic_reference(clinic),
        status=status,
        businessStatus=concept("business-status", str(business), ctx),
        statusReason={"text": text},
        note=[*as_list(review.get("note")), {"time": ctx.now.isoformat(), "text": text}],
        lastModified=ctx.now.isoformat(),
    )
    return Plan(
        writes=(write,),
        counts=(count,),
        notes=(
            f"reviewer's input refused ({problem}): {detail}; review back to {clinic.key} at {status} / {business}",
        ),
    )


def clears_refusal(review: Resource) -> bool:
    """The review carries a refusal of ours in ``statusReason`` (a valid decision clears it)."""
    return dig(review, "statusReason", "text") in refused_texts()
