"""Routine steps 7-8: a decided referral goes where its level says, and referrer and patient are told.

MMRsv: the review Task is completed; a ``booking`` Task for the specialist clinic
(``<key>-booking-mmrsv``); ``BEK`` to referrer and patient.

MMRpv: the review Task is completed with closing code ``HE`` "Remiss vidareskickad" in
``statusReason`` and the text "Rehabiliteringsmottagning långvarig smärta nära vård, <ort>",
businessStatus ``forwarded`` and an ``mmrpv-site`` output; an ``mmrpv-intake`` Task for the
MMRpv unit (``requested``, partOf the review Task, focus the same ServiceRequest,
``<key>-mmrpv-intake``), which the MMRpv steps take from there; ``VID`` to referrer and patient.

The site (<ort>) is, in order: the reviewer's ``mmrpv-site`` output, the patient's preference in
the intake questionnaire, the site configured for the clinic (``mmrpv_site_by_clinic``).
A questionnaire still open when the review closes is cancelled.
"""

from __future__ import annotations

from typing import Any

from adapter.fhir.resource import Resource
from adapter.mappings import HSA_SYSTEM, Unit, codes, directory, load
from adapter.workflow import confirmations as conf
from adapter.workflow import options, questionnaires
from adapter.workflow.core import NOTHING, Context, Event, Plan, Referral, Write, create
from adapter.workflow.referral import (
    ACTIVE,
    as_list,
    clinic_reference,
    code_in,
    dig,
    local,
    performer_clinic,
    referral_key,
    subject_reference,
    unit_reference,
)
from adapter.workflow.review.criteria import latest_response
from adapter.workflow.review.sources import answers
from adapter.workflow.tasks import (
    business_status,
    cancel,
    concept,
    decision,
    find_own,
    is_open,
    key_of,
    parameters,
    questionnaire_task,
    reference_to,
    review_task,
    revise,
)

FOLLOW_ON = {"MMRsv": ("booking", "booking-mmrsv"), "MMRpv": ("mmrpv-intake", "mmrpv-intake")}
CLOSED_OTHERWISE = ("rejected", "cancelled", "failed", "entered-in-error")


# ---------------------------------------------------------------- the MMRpv site


def _site_from_output(review: Resource) -> Unit | None:
    d = directory()
    for output in parameters(review, "output", "mmrpv-site"):
        value = output.get("valueReference")
        hsa = dig(value, "identifier", "value") if dig(value, "identifier", "system") == HSA_SYSTEM else None
        target = local(dig(value, "reference"))
        hsa = hsa or (target.split("/", 1)[1] if target and target.startswith("Location/") else None)
        if site := d.site_by_hsa(hsa):
            return site
    return None


def _site_from_patient(referral: Referral) -> Unit | None:
    response = latest_response(referral)
    link_id = load("criteria")["questionnaire"].get("site_preference")
    if response is None or not link_id:
        return None
    keys = {s.key for s in directory().sites}
    wish = next((v for v in answers(response).get(str(link_id), []) if v in keys), None)
    return directory().site(wish) if wish else None


def mmrpv_site(referral: Referral, review: Resource, ctx: Context) -> Unit:
    """Where the forwarding text points: reviewer's choice, patient's wish, the clinic's default."""
    found = _site_from_output(review) or _site_from_patient(referral)
    if found:
        return found
    clinic = performer_clinic(referral)
    by_clinic = options.option(ctx, "mmrpv_site_by_clinic") or {}
    key = by_clinic.get(clinic.key) if clinic and isinstance(by_clinic, dict) else None
    sites = directory().sites
    return next((s for s in sites if s.key == key), sites[0])


# ---------------------------------------------------------------- closing the review


def _close_mmrsv(referral: Referral, review: Resource, ctx: Context) -> Write | None:
    if review.get("status") == "completed":
        return None
    return revise(
        referral,
        review,
        "task",
        status="completed",
        lastModified=ctx.now.isoformat(),
        businessStatus=concept("business-status", "decided", ctx),
    )


def _close_mmrpv(referral: Referral, review: Resource, site: Unit, ctx: Context) -> Write | None:
    lang = options.language(ctx)
    reason = {
        **codes().concept("closing-code", "HE", lang),
        "text": conf.closing_text("HE", lang, {"unit": directory().mmrpv.name, "ort": site.ort}),
    }
    changes: dict[str, Any] = {}
    if not parameters(review, "output", "mmrpv-site"):
        site_output = {
            "type": concept("task-parameter", "mmrpv-site", ctx),
            "valueReference": {"reference": f"Location/{site.hsa_id}", "display": site.name},
        }
        changes["output"] = [*as_list(review.get("output")), site_output]
    closed = (
        review.get("status") == "completed"
        and business_status(review) == "forwarded"
        and code_in(review.get("statusReason"), codes().system("closing-code")) == "HE"
    )
    if not closed:
        changes.update(
            status="completed", statusReason=reason, businessStatus=concept("business-status", "forwarded", ctx)
        )
    if not changes:
        return None
    return revise(referral, review, "task", lastModified=ctx.now.isoformat(), **changes)


# ---------------------------------------------------------------- the Task that follows


def _follow_on(referral: Referral, review: Resource, level: str, site: Unit | None, ctx: Context) -> Write | None:
    code, suffix = FOLLOW_ON[level]
    value = f"{referral_key(referral.service_request)}-{suffix}"
    if find_own(referral, "task", value):
        return None
    clinic = performer_clinic(referral)
    owner = (
        unit_reference(directory().mmrpv, "Organization")
        if level == "MMRpv"
        else (clinic_reference(clinic) if clinic else None)
    )
    body = {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "code": concept("task-type", code, ctx),
        "businessStatus": concept("business-status", "awaiting-booking" if level == "MMRsv" else "forwarded", ctx),
        "focus": {"reference": referral.reference},
        "partOf": [reference_to(referral, review)],
        "for": subject_reference(referral),
        "requester": clinic_reference(clinic) if clinic else None,
        "owner": owner,
        "location": {"reference": f"Location/{site.hsa_id}", "display": site.name} if site else None,
        "authoredOn": ctx.now.isoformat(),
        "lastModified": ctx.now.isoformat(),
    }
    return create({k: v for k, v in body.items() if v is not None}, codes().identifier_system("task"), value)


def _other_level_started(referral: Referral, level: str) -> bool:
    other = "MMRpv" if level == "MMRsv" else "MMRsv"
    return find_own(referral, "task", f"{referral_key(referral.service_request)}-{FOLLOW_ON[other][1]}") is not None


def forward(referral: Referral, event: Event, ctx: Context) -> Plan:
    """Close a decided review and start what its level requires; confirm to referrer and patient."""
    review = review_task(referral)
    level = decision(review)
    if (
        review is None
        or level is None
        or referral.service_request.get("status") != ACTIVE
        or review.get("status") in CLOSED_OTHERWISE
    ):
        return NOTHING
    if _other_level_started(referral, level):
        return Plan(notes=(f"decision changed to {level} after the referral went the other way: left to the clinic",))
    site = mmrpv_site(referral, review, ctx) if level == "MMRpv" else None
    close = _close_mmrpv(referral, review, site, ctx) if site else _close_mmrsv(referral, review, ctx)
    writes = [w for w in (close, _follow_on(referral, review, level, site, ctx)) if w is not None]
    questionnaire = questionnaire_task(referral)
    why = conf.reason("review-closed", options.language(ctx))
    if is_open(questionnaire):
        assert questionnaire is not None
        writes.append(cancel(referral, questionnaire, why, ctx))
    plan = Plan(writes=tuple(writes), notes=(f"{level}: review closed and handed on",) if writes else ())
    plan += questionnaires.close_companions(referral, ctx, key_of(referral, review) or "", why)
    confirmation = "VID" if level == "MMRpv" else "BEK"
    return plan + conf.confirm(referral, ctx, confirmation, "review", ort=site.ort if site else "")
