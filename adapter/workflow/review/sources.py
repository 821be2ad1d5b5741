"""What the review may read, and FHIRPath over it.

The review reads the referral itself (the ServiceRequest and its contained resources), the
referrer and the addressed clinic, the patient's Consent, and the answers the patient gave to
our questionnaire. The patient's record beyond that (Conditions the referral points at) is read
only when an active Consent covers the clinic: without it, ``record`` returns nothing even if the
shell loaded something.

Rules in ``mappings/*.yaml`` are FHIRPath with the ServiceRequest as the root and these
variables: ``%consents``, ``%patient``, ``%patientReference``, ``%requester``,
``%requesterOrganization``, ``%clinicReference``, ``%clinicHsa``, ``%now``, ``%conditions``.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

from adapter.fhir.fhirpath import compiled
from adapter.fhir.resource import Resource
from adapter.mappings import Clinic, codes, load
from adapter.workflow.core import Referral
from adapter.workflow.referral import as_list, clinic_reference, points_to, references, resolve, subject_key


class RuleError(Exception):
    """A FHIRPath rule could not be evaluated (bad expression, or data it cannot handle)."""


@cache
def _compiled(expression: str) -> Any:
    return compiled(codes().fill(expression))


def fhirpath(expression: str, resource: Resource, variables: dict[str, Any]) -> list[Any]:
    """Evaluate one expression (:mod:`adapter.fhir.fhirpath`); any failure (fhirpathpy raises bare ``Exception``)
    becomes ``RuleError``."""
    try:
        return list(_compiled(expression)(resource, variables))
    except Exception as exc:
        raise RuleError(f"{type(exc).__name__}: {exc}") from exc


def is_true(result: list[Any]) -> bool:
    return result == [True]


# ---------------------------------------------------------------- the parts of the state


def patient(referral: Referral) -> Resource | None:
    found = resolve(referral, referral.service_request.get("subject"))
    return found if (found or {}).get("resourceType") == "Patient" else None


def requester(referral: Referral) -> Resource | None:
    return resolve(referral, referral.service_request.get("requester"))


def requester_organization(referral: Referral) -> Resource | None:
    who = requester(referral) or {}
    return resolve(referral, who.get("organization")) if who.get("resourceType") == "PractitionerRole" else None


def consents(referral: Referral) -> list[Resource]:
    """Consents the referral carries (contained or in supportingInfo) or the shell found for its patient."""
    sr = referral.service_request
    subject = subject_key(referral)
    found: list[Resource] = [
        r for r in as_list(sr.get("contained")) if isinstance(r, dict) and r.get("resourceType") == "Consent"
    ]
    for info in as_list(sr.get("supportingInfo")):
        target = resolve(referral, info)
        if target and target.get("resourceType") == "Consent" and target not in found:
            found.append(target)
    for consent in referral.all("Consent"):
        if subject and points_to(consent.get("patient"), subject) and consent not in found:
            found.append(consent)
    return found


# What the rules read: the referral, the patient's Consents and record, the requester. Values derived
# from them alone are kept across a plan's steps that write none of these (``Referral.derived``).
RECORD = frozenset(
    {"ServiceRequest", "Patient", "Consent", "Condition", "Practitioner", "PractitionerRole", "Organization"}
)


def variables(
    referral: Referral, clinic: Clinic | None, now: datetime, conditions: list[Resource] | None = None
) -> dict[str, Any]:
    return {
        "consents": consents(referral),
        "patient": [patient(referral)] if patient(referral) else [],
        "patientReference": subject_key(referral) or "",
        "requester": [requester(referral)] if requester(referral) else [],
        "requesterOrganization": [requester_organization(referral)] if requester_organization(referral) else [],
        "clinicReference": clinic_reference(clinic)["reference"] if clinic else "",
        "clinicHsa": clinic.hsa_id if clinic else "",
        "now": now.isoformat(),
        "conditions": conditions or [],
    }


# ---------------------------------------------------------------- consent and the record


@cache
def _consent_rule() -> str:
    rule = next(r for r in load("completeness")["rules"] if r["id"] == "consent")
    return str(rule["expression"])


def consent_covers(referral: Referral, clinic: Clinic | None, now: datetime) -> bool:
    """An active Consent of the patient permits the clinic to read the record (completeness.yaml ``consent``)."""
    try:
        return holds(referral, clinic, now, _consent_rule())
    except RuleError:
        return False


def holds(referral: Referral, clinic: Clinic | None, now: datetime, expression: str) -> bool:
    """Whether a rule's expression is true of the referral; evaluated once per event however many steps
    ask. Raises :class:`RuleError` when it cannot be evaluated."""

    def compute() -> bool | RuleError:
        try:
            env = referral.derived(("variables", clinic, now), lambda: variables(referral, clinic, now), RECORD)
            return is_true(fhirpath(expression, referral.service_request, env))
        except RuleError as exc:
            return exc

    result = referral.derived(("rule", expression, clinic, now), compute, RECORD)
    if isinstance(result, RuleError):
        raise result
    return result


def record(referral: Referral, clinic: Clinic | None, now: datetime) -> list[Resource]:
    """Conditions the referral gives as its reason: contained ones always (they are the referral),
    ones in the patient's record only under Consent."""
    sr = referral.service_request
    consented = consent_covers(referral, clinic, now)
    out = []
    for reason in as_list(sr.get("reasonReference")):
        if not isinstance(reason, dict):
            continue
        contained = str(reason.get("reference") or "").startswith("#")
        if contained or consented:
            target = resolve(referral, reason)
            if target and target.get("resourceType") == "Condition":
                out.append(target)
    return out


# ---------------------------------------------------------------- the patient's answers


def questionnaire_canonical() -> str:
    return str(load("criteria")["questionnaire"]["canonical"])


def _same_questionnaire(value: Any) -> bool:
    url = questionnaire_canonical().split("|")[0]
    return isinstance(value, str) and value.split("|")[0] == url


def responses(
    referral: Referral, questionnaire_task: Resource | None, questionnaire_task_key: str | None
) -> list[Resource]:
    """Completed answers to our questionnaire for this referral, newest first.

    Ours: the Task's output points at it, or it is ``basedOn`` the ServiceRequest (what R4 allows)
    or the questionnaire Task (where the server lets that through), for the referral's patient.
    """
    sr_subject = subject_key(referral)
    linked = set(
        references(
            [o.get("valueReference") for o in as_list((questionnaire_task or {}).get("output")) if isinstance(o, dict)]
        )
    )
    out = []
    for qr in referral.all("QuestionnaireResponse"):
        if qr.get("status") not in ("completed", "amended") or not _same_questionnaire(qr.get("questionnaire")):
            continue
        ours = (
            f"QuestionnaireResponse/{qr.get('id')}" in linked
            or points_to(qr.get("basedOn"), referral.reference)
            or (questionnaire_task_key and points_to(qr.get("basedOn"), questionnaire_task_key))
        )
        same_patient = not sr_subject or not qr.get("subject") or points_to(qr.get("subject"), sr_subject)
        if ours and same_patient:
            out.append(qr)
    return sorted(out, key=lambda r: str(r.get("authored") or ""), reverse=True)


def answers(response: Resource) -> dict[str, list[Any]]:
    """Answer values by linkId, through nested groups: codes for Codings, plain values otherwise."""
    out: dict[str, list[Any]] = {}

    def walk(items: Any) -> None:
        for item in items or ():
            if not isinstance(item, dict):
                continue
            for answer in as_list(item.get("answer")):
                if isinstance(answer, dict):
                    value = _answer_value(answer)
                    if value is not None:
                        out.setdefault(str(item.get("linkId")), []).append(value)
                    walk(answer.get("item"))
            walk(item.get("item"))

    walk(response.get("item"))
    return out


def _answer_value(answer: dict[str, Any]) -> Any:
    for key, value in answer.items():
        if key.startswith("value"):
            return value.get("code") if isinstance(value, dict) else value
    return None
