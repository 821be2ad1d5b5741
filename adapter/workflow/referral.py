"""Reading a referral safely: is it an MMR referral for one of our clinics, what is its key, and
which of its references can be copied into what the adapter writes.

A referral comes from another system and may be malformed. Nothing here raises on a missing or
odd element; a literal reference that does not resolve among the loaded resources is never
copied (the transaction would be refused), only its logical part (identifier, display).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from adapter.fhir.resource import Resource, local_reference
from adapter.mappings import HSA_SYSTEM, Clinic, Unit, codes, directory
from adapter.workflow.core import Referral

ACTIVE = "active"
REVOKED = "revoked"


def as_list(value: Any) -> list[Any]:
    """A FHIR repeating element as a list, whatever arrived: a single object becomes one, junk none."""
    if isinstance(value, list):
        return value
    return [value] if isinstance(value, dict) else []


def dig(value: Any, *keys: str) -> Any:
    """``value[k1][k2]...`` through dicts only; ``None`` as soon as a step is missing or not a dict."""
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def local(reference: str | None) -> str | None:
    """``Type/id`` of a literal reference (relative, absolute or versioned), a ``urn:`` as it is;
    ``None`` otherwise."""
    if not isinstance(reference, str):
        return None
    if reference.startswith("urn:"):  # a resource planned in the same transaction: its key in the state
        return reference
    return local_reference(reference)


def references(value: Any) -> list[str]:
    """The literal references (``Type/id`` or ``urn:``) in a Reference or a list of them."""
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if isinstance(item, dict) and (target := local(item.get("reference"))):
            out.append(target)
    return out


def points_to(value: Any, key: str | None) -> bool:
    return bool(key) and key in references(value)


def codings(concepts: Any) -> list[dict[str, Any]]:
    """Every Coding of a CodeableConcept or a list of them."""
    items = concepts if isinstance(concepts, list) else [concepts]
    return [c for cc in items if isinstance(cc, dict) for c in as_list(cc.get("coding")) if isinstance(c, dict)]


def has_code(concepts: Any, system: str, code: str | None = None) -> bool:
    return any(c.get("system") == system and (code is None or c.get("code") == code) for c in codings(concepts))


def code_in(concepts: Any, system: str) -> str | None:
    return next((c.get("code") for c in codings(concepts) if c.get("system") == system), None)


def is_mmr_referral(sr: Resource) -> bool:
    """Category SNOMED 3457005 (patient referral) and/or our code ``mmr``."""
    c = codes()
    category, code = c.referral_category, c.referral_code
    return has_code(sr.get("category"), category["system"], category["code"]) or has_code(
        sr.get("code"), code["system"], code["code"]
    )


def _hsa_ids(referral: Referral, performer: dict[str, Any]) -> Iterable[str | None]:
    ident = performer.get("identifier")
    if isinstance(ident, dict) and ident.get("system") == HSA_SYSTEM:
        yield ident.get("value")
    literal = performer.get("reference")
    target = (referral.get(literal) if isinstance(literal, str) else None) or {}
    for i in as_list(target.get("identifier")):
        if isinstance(i, dict) and i.get("system") == HSA_SYSTEM:
            yield i.get("value")
    if isinstance(literal, str) and literal.startswith("Organization/"):
        yield literal.split("/", 1)[1]


def performer_clinic(referral: Referral) -> Clinic | None:
    """The directory clinic the referral is addressed to: by HSA-id, on the reference or its target.

    Once a review is registered, the clinic it was registered at (:func:`reviewing_clinic`): a later
    version of the referral naming another clinic, or none, does not move the review (``holding``
    tells the referrer the change was not applied). Before that, ``None`` unless exactly one clinic
    is named: a referral to two clinics is no clinic's to review (``routing_problem`` says why, and
    the referral coordinator holds it)."""
    return referral.derived("performer clinic", lambda: _performer_clinic(referral))


def _performer_clinic(referral: Referral) -> Clinic | None:
    registered = recorded_clinic(referral)
    if registered is not None:
        return registered
    clinics = _performer_clinics(referral)
    if len(clinics) == 1:
        return clinics[0]
    return reviewing_clinic(referral)


def named_clinics(referral: Referral) -> list[Clinic]:
    """The clinics of the directory the referral's current version names as ``performer``."""
    return _performer_clinics(referral)


def _review(referral: Referral) -> Resource | None:
    return referral.by_identifier(
        codes().identifier_system("task"), f"{referral_key(referral.service_request)}-referral-review"
    )


def recorded_clinic(referral: Referral) -> Clinic | None:
    """The clinic the review Task records it was registered at (its input ``reviewing-clinic``).

    The record, not the owner, is what keeps the two mistakes apart that look alike on the owner
    alone: a reviewer handing the review to another clinic's reviewer (refused, back to this clinic)
    and the referrer naming another clinic in a new version (not applied, the referrer told)."""
    task = _review(referral)
    system, d = codes().system("task-parameter"), directory()
    for item in as_list(task.get("input") if task else None):
        if isinstance(item, dict) and has_code(item.get("type"), system, "reviewing-clinic"):
            value = item.get("valueReference")
            if isinstance(value, dict):
                ids = {dig(value, "identifier", "value"), str(value.get("reference") or "").rsplit("/", 1)[-1]}
                return next((c for c in d.clinics if c.hsa_id in ids), None)
    return None


def reviewing_clinic(referral: Referral) -> Clinic | None:
    """The clinic whose review the referral is under: the one the review records
    (:func:`recorded_clinic`), else (a review registered before the record) by its owner (the
    clinic, or a reviewer of its pool); ``None`` without a review or when its owner is no unit of
    the directory.

    A version that names another clinic, or none of the routine, does not take a referral away from
    the clinic reviewing it (``holding`` tells the referrer): the review goes on there."""
    registered = recorded_clinic(referral)
    if registered is not None:
        return registered
    task = _review(referral)
    owner = task.get("owner") if task else None
    if not isinstance(owner, dict):
        return None
    ids = {dig(owner, "identifier", "value"), str(owner.get("reference") or "").rsplit("/", 1)[-1]}
    d = directory()
    return next(
        (c for c in d.clinics if c.hsa_id in ids or any(r.hsa_id in ids for r in c.reviewers)),
        None,
    )


def _performer_clinics(referral: Referral) -> list[Clinic]:
    d = directory()
    found: list[Clinic] = []
    for performer in as_list(referral.service_request.get("performer")):
        if not isinstance(performer, dict):
            continue
        for hsa_id in _hsa_ids(referral, performer):
            if (clinic := d.clinic_by_hsa(hsa_id)) and clinic not in found:
                found.append(clinic)
    return found


def routing_problem(referral: Referral) -> str | None:
    """Why an MMR referral cannot be routed to a specialist clinic of the routine, or ``None``.

    ``missing`` (no performer), ``ambiguous`` (several clinics), ``not-a-clinic`` (a unit of the
    directory that is no specialist clinic: the MMRpv unit, a site, a reviewer), ``unknown``: the
    keys of the ``held`` texts in ``mappings/confirmations.yaml``.
    """
    performers = [p for p in as_list(referral.service_request.get("performer")) if isinstance(p, dict)]
    if not performers:
        return "missing"
    clinics = _performer_clinics(referral)
    if len(clinics) == 1:
        return None
    if clinics:
        return "ambiguous"
    d = directory()
    if any(d.known(hsa_id) for p in performers for hsa_id in _hsa_ids(referral, p)):
        return "not-a-clinic"
    return "unknown"


def referral_key(sr: Resource) -> str:
    """The referral's own business identifier value, else ``sr-<id>``: the root of every identifier we make."""
    ident = next((i for i in as_list(sr.get("identifier")) if isinstance(i, dict) and i.get("value")), None)
    return f"{ident['value']}" if ident else f"sr-{sr['id']}"


def unit_reference(unit: Unit, resource_type: str) -> dict[str, Any]:
    """A directory unit: literal by HSA-id (setup installs it so) plus identifier and name."""
    return {"reference": f"{resource_type}/{unit.hsa_id}", **unit.reference(resource_type)}


def clinic_reference(clinic: Clinic) -> dict[str, Any]:
    return unit_reference(clinic, "Organization")


def usable_reference(referral: Referral, reference: Any) -> dict[str, Any] | None:
    """A Reference safe to copy into a write, or ``None``.

    Resolvable literal references are copied as they are; a broken or contained one keeps only
    its identifier and display (a logical reference), and is dropped if that leaves nothing.
    """
    if not isinstance(reference, dict):
        return None
    literal = reference.get("reference")
    if isinstance(literal, str) and not literal.startswith("#") and referral.get(literal) is not None:
        return dict(reference)
    logical = {k: reference[k] for k in ("type", "identifier", "display") if reference.get(k)}
    return logical if isinstance(logical.get("identifier"), dict) and logical["identifier"].get("value") else None


def subject_key(referral: Referral) -> str | None:
    """``Patient/<id>`` of the referral's subject, if it is a literal reference."""
    subject = referral.service_request.get("subject")
    return local(subject.get("reference")) if isinstance(subject, dict) else None


def patient_reference(referral: Referral) -> dict[str, Any] | None:
    return usable_reference(referral, referral.service_request.get("subject"))


def subject_reference(referral: Referral) -> dict[str, Any] | None:
    """The patient a write is about: the usable reference, else whatever display the referral gives.

    Tasks and Communications must name their subject even when the referral's is unusable; a
    display-only Reference says who was meant without pointing anywhere wrong.
    """
    subject = referral.service_request.get("subject")
    shown = subject.get("display") if isinstance(subject, dict) else None
    return patient_reference(referral) or ({"display": shown} if isinstance(shown, str) and shown else None)


def referrer_reference(referral: Referral) -> dict[str, Any] | None:
    return usable_reference(referral, referral.service_request.get("requester"))


def resolve(referral: Referral, reference: Any) -> Resource | None:
    """The target of a literal or contained reference, among the loaded resources."""
    if not isinstance(reference, dict):
        return None
    literal = reference.get("reference")
    if isinstance(literal, str) and literal.startswith("#"):
        return next(
            (
                r
                for r in as_list(referral.service_request.get("contained"))
                if isinstance(r, dict) and r.get("id") == literal[1:]
            ),
            None,
        )
    return referral.get(literal) if isinstance(literal, str) else None
