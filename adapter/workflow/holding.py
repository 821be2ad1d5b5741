"""Recognise, then route or answer: an MMR referral that cannot be routed is held, never dropped.

An MMR referral (category or code, ``referral.is_mmr_referral``) names its specialist clinic as
``performer``. When it names none, an unknown unit, several clinics, or a unit of the directory
that is no specialist clinic (``referral.routing_problem``), nobody in the directory can own its
next step: the region's referral coordinator (``mappings/organisations.yaml``) does. The adapter
writes one ``referral-routing`` Task (identifier ``<referral key>-referral-routing``) owned by
the coordinator, ``on-hold`` / ``awaiting-correction``, with ``statusReason.text`` saying why in
the words of ``held`` in ``mappings/confirmations.yaml`` (never a value from the referral), and a
``referral-held`` notice to the referrer saying the same and where the referral can go. The event
is counted as its own outcome (``held``) and logged at WARNING (the :data:`core.HELD` note), with
the reason's key only.

When a new version names one clinic, the review starts there (``arrival``) and this Task is
completed ``routed`` in the same transaction; a revoked or otherwise ended referral closes it.
When the coordinator closes the held Task by hand, the referrer is told the referral was closed
without reaching a clinic (a ``referral-closed`` notice), never left to wonder.

A referral already under review is the clinic's: a new version that names no clinic of the routine,
or another clinic of it, does not move it (the review goes on at the clinic it was registered at,
``referral.reviewing_clinic``), and the referrer is told the change was not applied (a
``performer-unchanged`` notice, once per version), with how to move it instead: ask the clinic, or
revoke and send a new referral. Moving it would leave the first clinic's work (its supplement
request, the patient's questionnaire, the reviewer's assessment) with a clinic that never asked
for it, and the referrer cannot know how far the review has come; the clinic can.
Once the review is over (decided, forwarded to the MMRpv unit, rejected) such a version moves
nothing either, and the referrer gets the same notice in words for a referral already reviewed.
"""

from __future__ import annotations

from typing import Any

from adapter.mappings import codes, directory
from adapter.workflow import confirmations as conf
from adapter.workflow.core import HELD, NOTHING, Context, Event, Plan, Referral, create, note
from adapter.workflow.options import language
from adapter.workflow.referral import (
    ACTIVE,
    REVOKED,
    is_mmr_referral,
    named_clinics,
    performer_clinic,
    referral_key,
    referrer_reference,
    reviewing_clinic,
    routing_problem,
    subject_reference,
    unit_reference,
)
from adapter.workflow.tasks import cancel, concept, find_own, is_open, review_task, revise

NOTICE = "referral-held"
CLOSED_NOTICE = "referral-closed"  # the coordinator closed the held referral by hand
UNCHANGED_NOTICE = "performer-unchanged"  # a referral under review stays at its clinic
CLOSED_BY_HAND = frozenset({"cancelled", "failed", "rejected"})
PROBLEMS = ("missing", "unknown", "ambiguous", "not-a-clinic")
MOVED = "another-clinic"  # a referral under review names another clinic of the routine: not moved
REVIEWED = "reviewed"  # ... and once the review is over (decided, forwarded, rejected)
AFTER_REVIEW = "after-review"  # the performer-unchanged notice's words once the review is over
ENDED = frozenset({REVOKED, "completed", "entered-in-error"})


def held_key(referral: Referral) -> str:
    return f"{referral_key(referral.service_request)}-referral-routing"


def held_task(referral: Referral) -> dict[str, Any] | None:
    return find_own(referral, "task", held_key(referral))


def why(problem: str, lang: str, **values: Any) -> str:
    """The ``held`` text of ``mappings/confirmations.yaml`` for a routing problem (or ``routed``)."""
    return conf.template("held", problem, lang, values)


def hold_unroutable(referral: Referral, event: Event, ctx: Context) -> Plan:
    """Hold an MMR referral nobody in the directory can own, tell the referrer; release it when corrected."""
    sr = referral.service_request
    if not is_mmr_referral(sr):
        return NOTHING
    held = held_task(referral)
    problem = routing_problem(referral)
    lang = language(ctx)
    if sr.get("status") in ENDED:
        if not is_open(held):
            return NOTHING
        assert held is not None
        if sr.get("status") == REVOKED:
            return Plan(writes=(cancel(referral, held, conf.reason("revoked", lang), ctx, "revoked"),))
        return Plan(writes=(cancel(referral, held, conf.reason("referral-ended", lang), ctx),))
    if sr.get("status") != ACTIVE:
        return NOTHING  # a draft or a referral the referrer paused: held as it is until it is active
    if problem is None:
        if _names_another_clinic(referral):
            return _refuse_new_performer(referral, MOVED, ctx)
        if not is_open(held):
            return NOTHING
        assert held is not None
        clinic = performer_clinic(referral)
        routed = revise(
            referral,
            held,
            "task",
            status="completed",
            businessStatus=concept("business-status", "routed", ctx),
            statusReason={"text": why("routed", lang, clinic=clinic.name if clinic else "")},
            lastModified=ctx.now.isoformat(),
        )
        return Plan(writes=(routed,), notes=("held referral corrected: routed",))
    if review_task(referral) is not None:
        return _refuse_new_performer(referral, problem, ctx)
    text = why(problem, lang)
    coordinator = directory().coordinator
    if held is not None and not is_open(held):
        return _closed_by_hand(referral, held, ctx)
    plan = conf.notify(
        referral,
        ctx,
        NOTICE,
        "referrer",
        problem,
        extra={"sender": unit_reference(coordinator, "Organization")},
        coordinator=coordinator.name,
        reason=text,
        clinics=", ".join(c.name for c in directory().clinics),
    )
    if held is None:
        body: dict[str, Any] = {
            "resourceType": "Task",
            "status": "on-hold",
            "intent": "order",
            "code": concept("task-type", "referral-routing"),
            "businessStatus": concept("business-status", "awaiting-correction"),
            "statusReason": {"text": text},
            "focus": {"reference": referral.reference},
            "for": subject_reference(referral),
            "requester": referrer_reference(referral),
            "owner": unit_reference(coordinator, "Organization"),
            "authoredOn": ctx.now.isoformat(),
            "lastModified": ctx.now.isoformat(),
        }
        write = create(
            {k: v for k, v in body.items() if v is not None}, codes().identifier_system("task"), held_key(referral)
        )
    elif (held.get("statusReason") or {}).get("text") != text:
        write = revise(referral, held, "task", statusReason={"text": text}, lastModified=ctx.now.isoformat())
    else:
        return plan
    return (
        Plan(writes=(write,), counts=("referral-held",), notes=(f"referral cannot be routed ({problem}){HELD}",)) + plan
    )


def _closed_by_hand(referral: Referral, held: dict[str, Any], ctx: Context) -> Plan:
    """The coordinator closed the held referral by hand: the referrer learns it never reached a clinic
    (once), with the coordinator's reason when they gave one (never our own held text)."""
    if held.get("status") not in CLOSED_BY_HAND:
        return NOTHING
    lang = language(ctx)
    given = (held.get("statusReason") or {}).get("text")
    ours = conf.every_language("held", PROBLEMS)
    reason = given if isinstance(given, str) and given.strip() and given not in ours else conf.reason("no-reason", lang)
    coordinator = directory().coordinator
    return conf.notify(
        referral,
        ctx,
        CLOSED_NOTICE,
        "referrer",
        "coordinator",
        extra={"sender": unit_reference(coordinator, "Organization")},
        coordinator=coordinator.name,
        reason=reason.rstrip("."),
    ) + note("held referral closed by the coordinator: referrer told")


def _names_another_clinic(referral: Referral) -> bool:
    """The referral's current version names one clinic of the routine, not the one reviewing it."""
    named, reviewing = named_clinics(referral), reviewing_clinic(referral)
    return len(named) == 1 and reviewing is not None and named[0] != reviewing


def _refuse_new_performer(referral: Referral, problem: str, ctx: Context) -> Plan:
    """A referral under review got a version naming another clinic, or none of the routine: the review
    stays at the clinic that has it (taking it away mid-review would leave the patient's review with nobody who
    knows it, and the clinic may already have asked the patient), and the referrer is told, once per
    version, that the change was not applied and how to move the referral instead. Once the review is
    over (decided, forwarded, rejected) the same: what followed from the decision stands, and the
    referrer learns whom to ask, in words for a referral already reviewed."""
    review = review_task(referral)
    if review is None or reviewing_clinic(referral) is None:
        return NOTHING
    over = not is_open(review)
    reason = REVIEWED if over and problem == MOVED else problem
    version = str((referral.service_request.get("meta") or {}).get("versionId") or "1")
    plan = conf.notify(
        referral,
        ctx,
        UNCHANGED_NOTICE,
        "referrer",
        f"v{version}",
        variant=AFTER_REVIEW if over else None,
        reason=why(reason, language(ctx)).rstrip("."),
    )
    if not plan.writes:
        return NOTHING
    return plan + Plan(
        counts=("performer-unchanged",),
        notes=(f"new version names another clinic or none of the routine ({problem}): review stays at its clinic",),
    )
