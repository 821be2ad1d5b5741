"""[10] The care commitment (vårdåtagande): one EpisodeOfCare per referral the MMRpv unit takes on.

Created once, as soon as the intake Task exists and the referral is active: status ``active``,
type ``mmr`` (mmr-service, as profile mmr-care-commitment requires) plus the level ``MMRpv``
(that is what makes it the MMRpv commitment), managingOrganization the MMRpv unit,
referralRequest the ServiceRequest, period.start now, identifier ``<key>-care-commitment``. The
intake Task links it as an output ``care-commitment`` (by its ``urn:uuid`` in the same transaction).

It ends (period.end now) ``finished`` when the follow-up is answered or given up on, and
``cancelled`` when the programme is interrupted, the referral revoked or the unit turns the
intake down: R4's "ended before the episode was finished".
"""

from __future__ import annotations

from typing import Any

from adapter.fhir.resource import Resource
from adapter.mappings import codes
from adapter.workflow.core import NOTHING, Context, Event, Plan, Referral, Write, create
from adapter.workflow.mmrpv.common import (
    EPISODE,
    active,
    care_commitment,
    care_ended,
    episode,
    intake_open,
    intake_task,
    key,
    unit_ref,
)
from adapter.workflow.referral import patient_reference
from adapter.workflow.tasks import concept, parameters, revise

OPEN_EPISODE = frozenset({"planned", "waitlist", "active", "onhold"})


def _body(referral: Referral, ctx: Context) -> dict[str, Any]:
    body = {
        "resourceType": "EpisodeOfCare",
        "status": "active",
        "type": [concept("service", "mmr", ctx), concept("level", "MMRpv", ctx)],
        "patient": patient_reference(referral),
        "managingOrganization": unit_ref(),
        "referralRequest": [{"reference": referral.reference}],
        "period": {"start": ctx.now.isoformat()},
    }
    return {k: v for k, v in body.items() if v is not None}


def _link(referral: Referral, intake: Resource, target: str, ctx: Context) -> Write | None:
    if parameters(intake, "output", "care-commitment"):
        return None
    output = {"type": concept("task-parameter", "care-commitment", ctx), "valueReference": {"reference": target}}
    return revise(
        referral, intake, "task", output=[*(intake.get("output") or ()), output], lastModified=ctx.now.isoformat()
    )


def commit_care(referral: Referral, event: Event, ctx: Context) -> Plan:
    """Create the care commitment once the unit has the referral; link it from the intake Task."""
    intake = intake_task(referral)
    if not intake_open(intake) or not active(referral):
        return NOTHING
    assert intake is not None
    target = care_commitment(referral)
    if target is not None:
        link = _link(referral, intake, target, ctx)
        return Plan(writes=(link,)) if link else NOTHING
    if patient_reference(referral) is None:
        return Plan(notes=("care commitment not created: the referral names no usable patient",))
    made = create(_body(referral, ctx), codes().identifier_system(EPISODE), f"{key(referral)}-care-commitment")
    link = _link(referral, intake, made.full_url, ctx)
    return Plan(writes=(made, link) if link else (made,), notes=("care commitment created",))


def end_episode(referral: Referral, event: Event, ctx: Context) -> Plan:
    """Close the care commitment when the care is over, stating the end."""
    current = episode(referral)
    status = care_ended(referral)
    if current is None or status is None or current.get("status") not in OPEN_EPISODE:
        return NOTHING
    period = {**(current.get("period") or {}), "end": ctx.now.isoformat()}
    write = revise(referral, current, EPISODE, status=status, period=period)
    return Plan(writes=(write,), notes=(f"care commitment {status}",))
