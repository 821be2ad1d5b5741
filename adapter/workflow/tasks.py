"""The review Task and its siblings as the loaded state shows them, and how to revise them.

Every resource the adapter makes is found again by its business identifier, never by a guess:
that works for stored resources and for ones an earlier step planned in the same ``decide``
(present under their ``urn:uuid:`` key, without an id). ``revise`` changes either kind: an
update of a stored resource, or the same conditional create again, which replaces the earlier
step's write in the plan.
"""

from __future__ import annotations

from typing import Any

from adapter.fhir.resource import Resource, ref
from adapter.mappings import codes
from adapter.workflow.core import Context, Referral, Write, create, per_state, update
from adapter.workflow.options import language
from adapter.workflow.referral import ACTIVE, as_list, code_in, dig, has_code, points_to, referral_key

# Events after which the review steps look at the referral again: they are level-triggered, so
# whatever changed, each compares the state with what the routine requires.
REVIEW_EVENTS = ("ServiceRequest", "Task", "Communication", "QuestionnaireResponse")

OPEN = frozenset({"draft", "requested", "received", "accepted", "ready", "in-progress", "on-hold"})


# ---------------------------------------------------------------- finding our resources


def own_value(resource: Resource, kind: str) -> str | None:
    """Our identifier value on a resource; tolerant of a malformed ``identifier`` from elsewhere."""
    system = codes().identifier_system(kind)
    return next(
        (
            i.get("value")
            for i in as_list(resource.get("identifier"))
            if isinstance(i, dict) and i.get("system") == system
        ),
        None,
    )


def find_own(referral: Referral, kind: str, value: str) -> Resource | None:
    """The resource of ``kind`` ("task", "communication") carrying our identifier ``value``."""
    return _identified(referral).get((codes().identifier_system(kind), value))


def _identified(referral: Referral) -> dict[tuple[str, str], Resource]:
    """Each resource of the state by (system, value) of its first identifier of each system, the first
    resource winning: what :func:`own_value` sees, indexed once per state (steps ask dozens of times)."""

    def index() -> dict[tuple[str, str], Resource]:
        found: dict[tuple[str, str], Resource] = {}
        for resource in referral.resources.values():
            if not isinstance(resource, dict):
                continue
            systems: set[str] = set()
            for i in as_list(resource.get("identifier")):
                if isinstance(i, dict) and isinstance(system := i.get("system"), str) and system not in systems:
                    systems.add(system)  # (a system that is no string, from elsewhere, is none of ours)
                    if isinstance(value := i.get("value"), str):
                        found.setdefault((system, value), resource)
        return found

    return referral.derived("own identifiers", index)


def key_of(referral: Referral, resource: Resource) -> str | None:
    """``Type/id``, or the ``urn:uuid:`` key of a resource planned in this same transaction."""
    if resource.get("id"):
        return ref(resource)
    return next((k for k, r in referral.resources.items() if r is resource), None)


def reference_to(referral: Referral, resource: Resource) -> dict[str, str]:
    return {"reference": key_of(referral, resource) or ""}


def review_key(referral: Referral) -> str:
    return f"{referral_key(referral.service_request)}-referral-review"


@per_state(frozenset({"ServiceRequest", "Task"}))
def review_task(referral: Referral) -> Resource | None:
    """The referral's review Task: ours by identifier, else any ``referral-review`` Task focused on it."""
    if found := find_own(referral, "task", review_key(referral)):
        return found
    system = codes().system("task-type")
    return next(
        (
            t
            for t in referral.all("Task")
            if has_code(t.get("code"), system, "referral-review") and points_to(t.get("focus"), referral.reference)
        ),
        None,
    )


def referral_tasks(referral: Referral) -> list[Resource]:
    """Every Task of this referral: focus or basedOn the ServiceRequest, or part of its review Task."""
    review = review_task(referral)
    review_ref = key_of(referral, review) if review else None
    return [
        t
        for t in referral.all("Task")
        if points_to(t.get("focus"), referral.reference)
        or points_to(t.get("basedOn"), referral.reference)
        or (review_ref and points_to(t.get("partOf"), review_ref))
    ]


def questionnaire_key(referral: Referral) -> str:
    return f"{referral_key(referral.service_request)}-complete-questionnaire-mmr-intake"


def questionnaire_task(referral: Referral) -> Resource | None:
    return find_own(referral, "task", questionnaire_key(referral))


def open_review(referral: Referral) -> Resource | None:
    """The review Task while the review is the adapter's to drive: referral active, Task open, no decision."""
    task = review_task(referral)
    if referral.service_request.get("status") != ACTIVE or not is_open(task) or decision(task):
        return None
    return task


# ---------------------------------------------------------------- reading a Task


def is_open(task: Resource | None) -> bool:
    if not task:
        return False
    return task.get("status") in OPEN


def business_status(task: Resource) -> str | None:
    return code_in(task.get("businessStatus"), codes().system("business-status"))


def owner_is_reviewer(task: Resource) -> bool:
    return (
        str(dig(task, "owner", "reference") or "").startswith("PractitionerRole/")
        or dig(task, "owner", "type") == "PractitionerRole"
    )


def base_status(task: Resource) -> str:
    """The business status of a review in progress: whether someone has it yet."""
    return "assigned" if owner_is_reviewer(task) else "awaiting-assignment"


def working_status(task: Resource) -> str:
    """The status a review resumes at: ``in-progress`` once a reviewer took it up, else ``received``.

    Only a person makes a review ``in-progress``; the adapter records the moment it first saw that
    in ``executionPeriod.start``, so a review it puts on hold comes back where it was.
    """
    if task.get("status") == "in-progress" or dig(task, "executionPeriod", "start"):
        return "in-progress"
    return "received"


def parameters(task: Resource, element: str, code: str) -> list[dict[str, Any]]:
    """``Task.input`` or ``Task.output`` entries whose type is our task-parameter ``code``."""
    system = codes().system("task-parameter")
    return [p for p in as_list(task.get(element)) if isinstance(p, dict) and has_code(p.get("type"), system, code)]


def level_of(parameter: dict[str, Any]) -> str | None:
    code = code_in(parameter.get("valueCodeableConcept"), codes().system("level"))
    return code if code in ("MMRpv", "MMRsv") else None


def decision(task: Resource | None) -> str | None:
    """The decided level (reviewer's or ours): the last ``decision`` output with a valid level."""
    if not task:
        return None
    levels = [lv for p in parameters(task, "output", "decision") if (lv := level_of(p))]
    return levels[-1] if levels else None


def recommendation(task: Resource) -> str | None:
    return next((lv for p in parameters(task, "output", "recommendation") if (lv := level_of(p))), None)


# ---------------------------------------------------------------- changing a Task


def concept(system_key: str, code: str, ctx: Context | None = None) -> dict[str, Any]:
    """A CodeableConcept of ours, displayed in the message language."""
    return codes().concept(system_key, code, language(ctx) if ctx else "sv")


def stage(status: str, business: str, ctx: Context) -> dict[str, Any]:
    """The changes that put a Task at (status, businessStatus), stamped with the time."""
    return {
        "status": status,
        "businessStatus": codes().concept("business-status", business),
        "lastModified": ctx.now.isoformat(),
    }


def on_hold(task: Resource, business: str, ctx: Context) -> dict[str, Any]:
    """The changes that make a review wait for someone outside the clinic, keeping where it was."""
    changes = stage("on-hold", business, ctx)
    if task.get("status") == "in-progress" and not dig(task, "executionPeriod", "start"):
        changes["executionPeriod"] = {**(task.get("executionPeriod") or {}), "start": ctx.now.isoformat()}
    return changes


def resumed(task: Resource, ctx: Context) -> dict[str, Any]:
    """The changes that take a review off hold, back at the status it had."""
    return stage(working_status(task), base_status(task), ctx)


def at_stage(task: Resource, status: str, business: str) -> bool:
    return task.get("status") == status and business_status(task) == business


def revise(referral: Referral, resource: Resource, kind: str, **changes: Any) -> Write:
    """Change a stored resource (versioned update) or one planned earlier in this transaction."""
    if resource.get("id"):
        return update(resource, **changes)
    value = own_value(resource, kind)
    if value is None:
        raise ValueError("a planned resource without our identifier cannot be revised")
    body = {k: v for k, v in {**resource, **changes}.items() if v is not None}
    return create(body, codes().identifier_system(kind), value)


def cancel(referral: Referral, task: Resource, why: str, ctx: Context, business: str = "closed") -> Write:
    """Close an open Task the workflow no longer needs, saying why (``revoked``: the referrer withdrew it)."""
    return revise(
        referral,
        task,
        "task",
        status="cancelled",
        statusReason={"text": why},
        businessStatus=concept("business-status", business, ctx),
        lastModified=ctx.now.isoformat(),
    )
