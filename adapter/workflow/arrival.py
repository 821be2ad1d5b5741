"""Routine step 3: a referral reaching a specialist clinic gets its arrival registered.

Which referrals: a ServiceRequest for multimodal pain rehabilitation whose performer is one of
the specialist clinics of the directory. The review Task is created once, with a business
identifier derived from the referral's, so a replay never makes a second one.
"""

from __future__ import annotations

from typing import Any

from adapter.mappings import HSA_SYSTEM, Clinic, codes, directory
from adapter.workflow.core import NOTHING, Context, Event, Plan, Referral, create, note, on

ACTIVE = "active"


def is_mmr_referral(sr: dict[str, Any]) -> bool:
    c = codes()
    category, code = c.referral_category, c.referral_code
    codings = [cd for cc in sr.get("category") or () for cd in cc.get("coding") or ()] + \
        list((sr.get("code") or {}).get("coding") or ())
    return any((cd.get("system"), cd.get("code")) in ((category["system"], category["code"]),
                                                       (code["system"], code["code"])) for cd in codings)


def performer_clinic(referral: Referral) -> Clinic | None:
    """The directory clinic the referral is addressed to: by HSA-id identifier or by the referenced resource."""
    d = directory()
    for performer in referral.service_request.get("performer") or ():
        ident = performer.get("identifier") or {}
        if ident.get("system") == HSA_SYSTEM and (clinic := d.clinic_by_hsa(ident.get("value"))):
            return clinic
        target = referral.get(performer)
        for i in (target or {}).get("identifier") or ():
            if i.get("system") == HSA_SYSTEM and (clinic := d.clinic_by_hsa(i.get("value"))):
                return clinic
        reference = performer.get("reference") or ""
        if reference.startswith("Organization/") and (clinic := d.clinic_by_hsa(reference.split("/", 1)[1])):
            return clinic
    return None


def referral_key(sr: dict[str, Any]) -> str:
    """The referral's own business identifier value, else its server id: the root of ours."""
    ident = next((i for i in sr.get("identifier") or () if i.get("value")), None)
    return f"{ident['value']}" if ident else f"sr-{sr['id']}"


def clinic_reference(clinic: Clinic) -> dict[str, Any]:
    return {"reference": f"Organization/{clinic.hsa_id}", **clinic.reference("Organization")}


@on("ServiceRequest")
def register_arrival(referral: Referral, event: Event, ctx: Context) -> Plan:
    sr = referral.service_request
    if not is_mmr_referral(sr):
        return note("not an MMR referral: ignored")
    if sr.get("status") != ACTIVE:
        return NOTHING
    clinic = performer_clinic(referral)
    if clinic is None:
        return note("performer is not a specialist clinic of the directory: ignored")
    c = codes()
    if referral.tasks("referral-review", c.system("task-type")):
        return NOTHING
    task = {
        "resourceType": "Task",
        "status": "received",
        "intent": "order",
        "code": c.concept("task-type", "referral-review"),
        "businessStatus": c.concept("business-status", "registered"),
        "focus": {"reference": referral.reference},
        "for": sr.get("subject"),
        "requester": sr.get("requester"),
        "owner": clinic_reference(clinic),
        "authoredOn": ctx.now.isoformat(),
        "lastModified": ctx.now.isoformat(),
    }
    task = {k: v for k, v in task.items() if v is not None}
    write = create(task, c.identifier_system("task"), f"{referral_key(sr)}-referral-review")
    return Plan(writes=(write,), notes=(f"arrival registered at {clinic.key}",))
