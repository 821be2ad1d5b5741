"""Builders for differential ElementDefinitions, invariants and StructureDefinitions."""

from __future__ import annotations

from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

from adapter.conformance.build.sources.common import CORE_SD, FHIR_VERSION, Resource, identifier_prefix, metadata

# ---------------------------------------------------------------- element builders


def el(
    element_id: str,
    *,
    min: int | None = None,
    max: str | None = None,
    short: str | None = None,
    definition: str | None = None,
    types: list[str] | None = None,
    targets: list[str] | None = None,
    fixed: tuple[str, Any] | None = None,
    pattern: tuple[str, Any] | None = None,
    binding: tuple[str, str] | None = None,
    slicing: str | None = None,
    slicing_type: str = "pattern",
    extension: str | None = None,
    constraints: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
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
    return inv(
        "mmr-id-1",
        f"Carries the adapter's business identifier: system {prefix}<kind> with a value",
        f"identifier.where(system.startsWith('{prefix}') and value.exists()).exists()",
    )


# ---------------------------------------------------------------- differential order


@cache
def _children(type_name: str) -> tuple[tuple[str, str | None], ...]:
    """The elements of a FHIR type in the specification's order, each with the type it holds."""
    model = get_fhir_model_class(type_name)
    by_name = {(field.alias or name): field for name, field in model.model_fields.items()}
    out = []
    for name in model.elements_sequence():
        annotation: Any = by_name[name].annotation if name in by_name else None
        while getattr(annotation, "__args__", None):  # Optional[List[XType]] -> XType
            annotation = next(a for a in annotation.__args__ if a is not type(None))
        held = getattr(annotation, "__name__", "")
        out.append((name, held.removesuffix("Type") if held.endswith("Type") else None))
    return tuple(out)


def differential_order(elements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The elements in the base definition's order, each slice after its element and before the next.

    Snapshot generators (HAPI's ``ProfileUtilities`` among them) walk the base and the differential
    together, so an element out of order is silently left out of the snapshot: HAPI then validated
    against a profile without its cardinalities, fixed values and bindings.
    """
    slices: dict[str, int] = {}

    def key(element: dict[str, Any]) -> tuple[tuple[int, int], ...]:
        segments = element["id"].split(".")
        type_name: str | None = segments[0]
        out = []
        for depth, segment in enumerate(segments[1:], start=1):
            name, _, slice_name = segment.partition(":")
            children = _children(type_name) if type_name else ()
            stem = name.removesuffix("[x]")
            index = next(
                (
                    i
                    for i, (child, _) in enumerate(children)
                    if child == name
                    or (name.endswith("[x]") and child.startswith(stem) and child[len(stem) :][:1].isupper())
                ),
                len(children),
            )
            type_name = children[index][1] if index < len(children) else None
            rank = slices.setdefault(".".join(segments[: depth + 1]), len(slices) + 1) if slice_name else 0
            out.append((index, rank))
        return tuple(out)

    return sorted(elements, key=key)


def profile(
    id_: str, name: str, title: str, resource_type: str, description: str, purpose: str, elements: list[dict[str, Any]]
) -> Resource:
    sd = metadata("StructureDefinition", id_, name, title, description, purpose)
    sd.update(
        {
            "fhirVersion": FHIR_VERSION,
            "kind": "resource",
            "abstract": False,
            "type": resource_type,
            "baseDefinition": f"{CORE_SD}/{resource_type}",
            "derivation": "constraint",
            "differential": {"element": differential_order(elements)},
        }
    )
    return sd
