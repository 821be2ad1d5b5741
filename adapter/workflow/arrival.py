"""Routine steps 3-4: a referral reaching a specialist clinic is registered and assigned.

Which referrals: a ServiceRequest for multimodal pain rehabilitation (category SNOMED 3457005
and/or code ``mmr``), ``active``, whose performer is one of the directory's specialist clinics.
Anything else is ignored with a note ending ``: ignored`` (the shell logs those at debug level).

Registration creates the review Task once (identifier ``<referral key>-referral-review``):
``received`` / ``registered``, focus the ServiceRequest, for the patient, requester the referrer,
owner the clinic, the clinic again as input ``reviewing-clinic`` (the review stays there, whatever
a later version of the referral names: ``referral.recorded_clinic``), ``authoredOn`` and
``restriction.period.start`` = the arrival (the adapter's clock when it processes the
notification), ``restriction.period.end`` = the review deadline, and a timer at that deadline.
Assignment, completeness and the assessment follow in the same transaction, so the Task's first
version is already at the row they lead to: ``assigned`` or ``awaiting-assignment``, waiting
``on-hold``, or ``recommended`` (``mappings/task-states.yaml``).

Assignment gives the Task to a reviewer PractitionerRole of the clinic's pool
(``Context.options["assignment"]``): ``round-robin`` picks by a stable hash of the referral key
(pure: no counter to keep, the same referral always gets the same reviewer, the pool is used
evenly); ``least-open`` picks the reviewer with the fewest open review Tasks among those the
shell loaded (ties and an empty workload fall back to the hash). Without a pool the clinic
keeps it: ``awaiting-assignment``; so does a review the clinic got back because someone handed it
to a person outside the pool (``review.refusal``). Someone setting the owner by hand makes it ``assigned``.

Only a reviewer makes the review ``in-progress``; the first time the adapter sees it so, it
records the moment in ``executionPeriod.start``.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

from adapter.mappings import Clinic, Unit, codes
from adapter.workflow import options
from adapter.workflow.core import IGNORED, NOTHING, Context, Event, Plan, Referral, Timer, create, note
from adapter.workflow.referral import (
    ACTIVE,
    clinic_reference,
    dig,
    has_code,
    is_mmr_referral,
    performer_clinic,
    points_to,
    referral_key,
    referrer_reference,
    subject_reference,
    unit_reference,
)
from adapter.workflow.review.deadline import OVERDUE_TIMER, review_deadline
from adapter.workflow.review.refusal import reassignment_refused
from adapter.workflow.tasks import (
    business_status,
    concept,
    is_open,
    owner_is_reviewer,
    review_key,
    review_task,
    revise,
)

__all__ = ["clinic_reference", "is_mmr_referral", "performer_clinic", "referral_key"]  # kept for importers


def register_arrival(referral: Referral, event: Event, ctx: Context) -> Plan:
    """[3] Create the review Task of an MMR referral addressed to one of our clinics, once."""
    sr = referral.service_request
    if not is_mmr_referral(sr):
        return note(f"not an MMR referral{IGNORED}")
    if sr.get("status") != ACTIVE:
        return NOTHING
    clinic = performer_clinic(referral)
    if clinic is None:  # held by the referral coordinator (``holding``): an MMR referral is never ignored
        return note("performer is not one specialist clinic of the directory: no review")
    if review_task(referral) is not None:
        return NOTHING
    deadline = review_deadline(ctx.now, ctx)
    task: dict[str, Any] = {
        "resourceType": "Task",
        "status": "received",
        "intent": "order",
        "code": concept("task-type", "referral-review"),
        "businessStatus": concept("business-status", "registered"),
        "focus": {"reference": referral.reference},
        "for": subject_reference(referral),
        "requester": referrer_reference(referral),
        "owner": clinic_reference(clinic),
        "authoredOn": ctx.now.isoformat(),
        "lastModified": ctx.now.isoformat(),
        "restriction": {"period": {"start": ctx.now.isoformat(), "end": deadline.isoformat()}},
        # where the review was registered: a later version naming another clinic does not move it
        "input": [{"type": concept("task-parameter", "reviewing-clinic"), "valueReference": clinic_reference(clinic)}],
    }
    task = {k: v for k, v in task.items() if v is not None}
    write = create(task, codes().identifier_system("task"), review_key(referral))
    return Plan(
        writes=(write,),
        timers=(Timer(OVERDUE_TIMER, referral.id, deadline),),
        notes=(f"arrival registered at {clinic.key}, review due {deadline.isoformat()}",),
    )


def assign_reviewer(referral: Referral, event: Event, ctx: Context) -> Plan:
    """[4] Give a registered review to a reviewer of the clinic's pool, or leave it to the clinic."""
    task = review_task(referral)
    clinic = performer_clinic(referral)
    if task is None or clinic is None or not is_open(task) or referral.service_request.get("status") != ACTIVE:
        return NOTHING
    status = business_status(task)
    if status not in ("registered", "awaiting-assignment"):
        return NOTHING
    stamp = {"lastModified": ctx.now.isoformat()}
    if owner_is_reviewer(task):
        return Plan(
            writes=(revise(referral, task, "task", businessStatus=concept("business-status", "assigned"), **stamp),),
            notes=("review assigned by hand",),
        )
    if not clinic.reviewers:
        if status == "awaiting-assignment":
            return NOTHING
        return Plan(
            writes=(
                revise(
                    referral, task, "task", **stamp, businessStatus=concept("business-status", "awaiting-assignment")
                ),
            ),
            notes=(f"{clinic.key} has no reviewer pool: awaiting assignment by the clinic",),
        )
    if reassignment_refused(task):  # handed outside the pool and refused: the clinic assigns it again
        return NOTHING
    reviewer = choose_reviewer(referral, clinic, str(options.option(ctx, "assignment")))
    owner = unit_reference(reviewer, "PractitionerRole")
    return Plan(
        writes=(
            revise(referral, task, "task", owner=owner, **stamp, businessStatus=concept("business-status", "assigned")),
        ),
        notes=(f"review assigned to reviewer {reviewer.hsa_id}",),
    )


def record_start(referral: Referral, event: Event, ctx: Context) -> Plan:
    """[4] The moment a reviewer took the review up: ``executionPeriod.start``, once."""
    task = review_task(referral)
    if task is None or task.get("status") != "in-progress" or dig(task, "executionPeriod", "start"):
        return NOTHING
    period = {**(task.get("executionPeriod") or {}), "start": ctx.now.isoformat()}
    return Plan(writes=(revise(referral, task, "task", executionPeriod=period),), notes=("review taken up",))


def choose_reviewer(referral: Referral, clinic: Clinic, method: str) -> Unit:
    """Round robin by a stable hash of the referral key; ``least-open`` by the loaded workload."""
    pool = clinic.reviewers
    digest = hashlib.sha256(referral_key(referral.service_request).encode()).hexdigest()
    start = int(digest, 16) % len(pool)
    if method != "least-open":
        return pool[start]
    load = open_reviews(referral)
    return min(pool, key=lambda r: (load[r.hsa_id], (pool.index(r) - start) % len(pool)))


def open_reviews(referral: Referral) -> Counter[str]:
    """Open review Tasks of *other* referrals per owner HSA-id, as far as the shell loaded them."""
    system = codes().system("task-type")
    counts: Counter[str] = Counter()
    for task in referral.all("Task"):
        if (
            not has_code(task.get("code"), system, "referral-review")
            or not is_open(task)
            or points_to(task.get("focus"), referral.reference)
        ):
            continue
        reference = str(dig(task, "owner", "reference") or "")
        hsa = dig(task, "owner", "identifier", "value") or reference.removeprefix("PractitionerRole/")
        if hsa:
            counts[hsa] += 1
    return counts
