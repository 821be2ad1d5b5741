"""Builders for differential ElementDefinitions, invariants and StructureDefinitions."""

from __future__ import annotations

from typing import Any

from adapter.conformance.sources.common import CORE_SD, FHIR_VERSION, Resource, identifier_prefix, metadata

# ---------------------------------------------------------------- element builders


def el(element_id: str, *, min: int | None = None, max: str | None = None, short: str | None = None,
       definition: str | None = None, types: list[str] | None = None, targets: list[str] | None = None,
       fixed: tuple[str, Any] | None = None, pattern: tuple[str, Any] | None = None,
       binding: tuple[str, str] | None = None, slicing: str | None = None, slicing_type: str = "pattern",
       extension: str | None = None, constraints: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """One ElementDefinition. ``element_id`` may carry slice names (``Task.output:level.value[x]``).

    ``targets`` makes the type a Reference to those resource types; ``extension`` an Extension of
    that profile; ``slicing`` is the discriminator path (``slicing_type`` pattern or value);
    ``binding`` is (strength, ValueSet).
    """
    path = ".".join(seg.split(":")[0] for seg in element_id.split("."))
    last = element_id.split(".")[-1]
    e: dict[str, Any] = {"id": element_id, "path": path}
    if ":" in last:
        e["sliceName"] = last.split(":", 1)[1]
    if slicing:
        e["slicing"] = {"discriminator": [{"type": slicing_type, "path": slicing}], "rules": "open"}
    if short:
        e["short"] = short
    if definition:
        e["definition"] = definition
    if min is not None:
        e["min"] = min
    if max is not None:
        e["max"] = max
    if extension:
        e["type"] = [{"code": "Extension", "profile": [extension]}]
    elif targets:
        e["type"] = [{"code": "Reference", "targetProfile": [f"{CORE_SD}/{t}" for t in targets]}]
    elif types:
        e["type"] = [{"code": t} for t in types]
    if fixed:
        e[f"fixed{fixed[0]}"] = fixed[1]
    if pattern:
        e[f"pattern{pattern[0]}"] = pattern[1]
    if constraints:
        e["constraint"] = constraints
    if binding:
        e["binding"] = {"strength": binding[0], "valueSet": binding[1]}
    return e


def inv(key: str, human: str, expression: str) -> dict[str, str]:
    return {"key": key, "severity": "error", "human": human, "expression": expression}


def has(element: str, system: str, code: str) -> str:
    """FHIRPath: ``element`` holds a Coding with this system and code."""
    return f"{element}.coding.where(system = '{system}' and code = '{code}').exists()"


def output_of(system: str, code: str) -> str:
    """FHIRPath: the Task outputs whose type is this Coding."""
    return f"output.where({has('type', system, code)})"


def business_identifier() -> dict[str, str]:
    prefix = identifier_prefix()
    return inv("mmr-id-1",
               f"Carries the adapter's business identifier: system {prefix}<kind> with a value",
               f"identifier.where(system.startsWith('{prefix}') and value.exists()).exists()")


def profile(id_: str, name: str, title: str, resource_type: str, description: str, purpose: str,
            elements: list[dict[str, Any]]) -> Resource:
    sd = metadata("StructureDefinition", id_, name, title, description, purpose)
    sd.update({"fhirVersion": FHIR_VERSION, "kind": "resource", "abstract": False, "type": resource_type,
               "baseDefinition": f"{CORE_SD}/{resource_type}", "derivation": "constraint",
               "differential": {"element": elements}})
    return sd
