"""Base FHIR structure via the fhir.resources models (R4B: the closest to R4 4.0.1 installed).

It catches unknown elements, wrong types, missing base-required elements and references to a
type the element does not allow (which HAPI refuses on write) before any profile rule runs; the
required code lists of the elements our profiles use are checked here too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir_core.fhirabstractmodel import FHIRAbstractModel
from pydantic import ValidationError

from adapter.conformance.outcome import Issue, error, warning
from adapter.fhir.resource import local_reference

# Required bindings of FHIR R4 on the elements the workflow relies on (the models do not check codes).
CORE_CODES: dict[tuple[str, str], frozenset[str]] = {
    ("Task", "status"): frozenset(
        {
            "draft",
            "requested",
            "received",
            "accepted",
            "rejected",
            "ready",
            "cancelled",
            "in-progress",
            "on-hold",
            "failed",
            "completed",
            "entered-in-error",
        }
    ),
    ("Task", "intent"): frozenset(
        {
            "unknown",
            "proposal",
            "plan",
            "order",
            "original-order",
            "reflex-order",
            "filler-order",
            "instance-order",
            "option",
        }
    ),
    ("ServiceRequest", "status"): frozenset(
        {"draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"}
    ),
    ("ServiceRequest", "intent"): frozenset(
        {
            "proposal",
            "plan",
            "directive",
            "order",
            "original-order",
            "reflex-order",
            "filler-order",
            "instance-order",
            "option",
        }
    ),
    ("Communication", "status"): frozenset(
        {"preparation", "in-progress", "not-done", "on-hold", "stopped", "completed", "entered-in-error", "unknown"}
    ),
    ("Consent", "status"): frozenset({"draft", "proposed", "active", "rejected", "inactive", "entered-in-error"}),
    ("EpisodeOfCare", "status"): frozenset(
        {"planned", "waitlist", "active", "onhold", "finished", "cancelled", "entered-in-error"}
    ),
    ("CarePlan", "status"): frozenset(
        {"draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"}
    ),
    ("CarePlan", "intent"): frozenset({"proposal", "plan", "order", "option"}),
    ("QuestionnaireResponse", "status"): frozenset(
        {"in-progress", "completed", "amended", "entered-in-error", "stopped"}
    ),
}


def _path(root: str, loc: tuple[Any, ...]) -> str:
    out = root
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def check_structure(resource: dict[str, Any], root_path: str) -> list[Issue]:
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        return [error("structure", root_path or "(resource)", "no resourceType")]
    try:
        model = get_fhir_model_class(resource_type)
    except KeyError:
        return [warning("not-supported", root_path, f"unknown resource type {resource_type}: structure not checked")]
    try:
        instance = model.model_validate(resource)
    except ValidationError as exc:
        return [error("structure", _path(root_path, tuple(e["loc"])), e["msg"]) for e in exc.errors()]
    return list(_reference_targets(instance, root_path or resource_type))


def _target_type(reference: str) -> str | None:
    """The type a literal reference names (relative, absolute or versioned); None for contained/urn."""
    local = local_reference(reference)
    return local.split("/")[0] if local else None


def _reference_targets(node: FHIRAbstractModel, path: str) -> Iterator[Issue]:
    """References to a type the element does not allow (HAPI refuses them: HAPI-0931)."""
    for name, field in type(node).model_fields.items():
        value = getattr(node, name, None)
        if value is None:
            continue
        alias = field.alias or name
        allowed: Any = (  # JSON from the model's schema: a list of type names
            (field.json_schema_extra or {}).get("enum_reference_types")
            if isinstance(field.json_schema_extra, dict)
            else None
        )
        for i, item in enumerate(value if isinstance(value, list) else [value]):
            here = f"{path}.{alias}" + (f"[{i}]" if isinstance(value, list) else "")
            if not isinstance(item, FHIRAbstractModel):
                continue
            reference = getattr(item, "reference", None)
            target = _target_type(reference) if allowed and isinstance(reference, str) else None
            if target and "Resource" not in allowed and target not in allowed:
                yield error("structure", here, f"must reference {' or '.join(allowed)}, not {target}")
            yield from _reference_targets(item, here)


def check_core_codes(resource: dict[str, Any], root_path: str) -> list[Issue]:
    issues = []
    for (resource_type, element), allowed in CORE_CODES.items():
        value = resource.get(element)
        if resource.get("resourceType") == resource_type and value is not None and value not in allowed:
            issues.append(
                error(
                    "code-invalid",
                    f"{root_path}.{element}",
                    f"{value!r} is not a FHIR R4 {resource_type}.{element} code",
                )
            )
    return issues
