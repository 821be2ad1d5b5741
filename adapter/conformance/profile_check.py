"""Checking one resource against one of our profiles, element by element of the differential.

Cardinality (slices included), fixed and pattern values, allowed types and reference targets,
required bindings to our ValueSets, and the profile's FHIRPath invariants.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from adapter.conformance.elements import Element, Node, Walker, contains
from adapter.conformance.outcome import Issue, error
from adapter.conformance.terminology import Terminology
from adapter.fhir.fhirpath import compiled
from adapter.fhir.resource import Resource, local_reference


def reference_type(reference: Any, bundle_types: dict[str, str]) -> str | None:
    """The resource type a Reference points at, where it can be told without resolving it."""
    if not isinstance(reference, dict):
        return None
    literal = reference.get("reference")
    if isinstance(literal, str) and literal and not literal.startswith("#"):
        if literal.startswith("urn:"):
            return bundle_types.get(literal)
        if local := local_reference(literal):
            return local.split("/")[0]
    declared = reference.get("type")
    return declared.rsplit("/", 1)[-1] if isinstance(declared, str) and declared else None


class ProfileCheck:
    """One profile applied to one resource; ``run()`` returns the issues."""

    def __init__(
        self,
        resource: Resource,
        sd: Resource,
        term: Terminology,
        root_path: str,
        bundle_types: dict[str, str] | None = None,
        lookup: Callable[[str], Resource | None] | None = None,
    ) -> None:
        self.resource = resource
        self.sd = sd
        self.url = sd["url"]
        self.term = term
        self.elements: list[Element] = sd["differential"]["element"]
        self.walker = Walker(resource, self.elements, root_path)
        self.bundle_types = bundle_types or {}
        self.lookup = lookup or (lambda _: None)
        self.issues: list[Issue] = []

    def fail(self, code: str, path: str, message: str) -> None:
        self.issues.append(error(code, path, message, self.url))

    def run(self) -> list[Issue]:
        for element in self.elements:
            if element["id"] == self.walker.root_id:
                continue
            self.cardinality(element)
            for node in self.walker.nodes(element["id"]):
                self.value(element, node)
                self.types(element, node)
                self.binding(element, node)
                self.extension(element, node)
        self.invariants()
        return self.issues

    def cardinality(self, element: Element) -> None:
        lo, hi = element.get("min"), element.get("max")
        if lo is None and hi is None:
            return
        name = element["id"].rsplit(".", 1)[1]
        for parent, kids in self.walker.groups(element["id"]):
            where = f"{parent.path}.{name.replace('[x]', '')}"
            if lo is not None and len(kids) < lo:
                self.fail("required", where, f"minimum cardinality {lo}, found {len(kids)}")
            if hi not in (None, "*") and len(kids) > int(hi):
                self.fail("structure", where, f"maximum cardinality {hi}, found {len(kids)}")

    def value(self, element: Element, node: Node) -> None:
        for key, want in element.items():
            if key.startswith("fixed") and node.value != want:
                self.fail("value", node.path, f"must be exactly {want!r}, found {node.value!r}")
            elif key.startswith("pattern") and not contains(want, node.value):
                self.fail("value", node.path, f"must match pattern {want}")

    def types(self, element: Element, node: Node) -> None:
        types = element.get("type") or []
        if element["path"].endswith("[x]") and types:
            allowed = {t["code"][:1].upper() + t["code"][1:] for t in types}
            suffix = node.key[len(element["path"].rsplit(".", 1)[1]) - 3 :]
            if suffix not in allowed:
                expected = ", ".join(sorted(allowed))
                self.fail("structure", node.path, f"type {suffix} not allowed here; expected {expected}")
                return
        targets = {
            p.rsplit("/", 1)[-1] for t in types if t["code"] == "Reference" for p in t.get("targetProfile") or ()
        }
        if targets:
            found = reference_type(node.value, self.bundle_types)
            if found and found not in targets:
                self.fail("structure", node.path, f"must reference {' or '.join(sorted(targets))}, not {found}")

    def extension(self, element: Element, node: Node) -> None:
        """An extension slice of ours: the instance is checked against the extension's own definition."""
        for t in element.get("type") or ():
            for profile in t.get("profile") or () if t["code"] == "Extension" else ():
                sd = self.lookup(profile)
                if sd is not None and isinstance(node.value, dict):
                    self.issues += ProfileCheck(
                        node.value, sd, self.term, node.path, self.bundle_types, self.lookup
                    ).run()

    def binding(self, element: Element, node: Node) -> None:
        binding = element.get("binding") or {}
        if binding.get("strength") != "required" or not binding.get("valueSet"):
            return
        vs = binding["valueSet"]
        value = node.value
        if isinstance(value, str):
            pairs: list[tuple[str | None, str | None]] = [(None, value)]
        elif isinstance(value, dict) and "coding" in value:
            pairs = [(c.get("system"), c.get("code")) for c in value.get("coding") or ()]
        elif isinstance(value, dict):
            pairs = [(value.get("system"), value.get("code"))]
        else:
            return
        verdicts = [self.term.in_value_set(vs, s, c) for s, c in pairs]
        if any(v is None for v in verdicts) or any(verdicts):
            return
        shown = ", ".join(f"{s}|{c}" if s else str(c) for s, c in pairs) or "no code"
        self.fail("code-invalid", node.path, f"{shown} is not in the required ValueSet {vs}")

    def invariants(self) -> None:
        root = self.walker.root
        for element in self.elements:
            for c in element.get("constraint") or ():
                try:
                    result = compiled(c["expression"])(self.resource, {})
                except Exception as exc:  # a broken expression is our bug: report it, never crash
                    self.fail("processing", root.path, f"invariant {c['key']} could not be evaluated: {exc}")
                    continue
                if result != [True]:
                    self.fail("invariant", root.path, f"invariant {c['key']} failed: {c['human']}")
