"""Finding the instance values an ElementDefinition speaks about, slices included.

Element ids (``Task.output:level.value[x]``) are walked from the resource root; a ``:slice``
segment keeps only the repetitions the slice's pattern discriminator selects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Element = dict[str, Any]


@dataclass(frozen=True)
class Node:
    """One value in the instance, with its FHIRPath-like location and the JSON key it sits under."""

    value: Any
    path: str
    key: str = ""


def contains(pattern: Any, value: Any) -> bool:
    """FHIR pattern semantics: every element of the pattern is present in the value."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(k in value and contains(v, value[k]) for k, v in pattern.items())
    if isinstance(pattern, list):
        return isinstance(value, list) and all(any(contains(p, v) for v in value) for p in pattern)
    return pattern == value


def children(node: Node, name: str) -> list[Node]:
    """The values of child ``name`` (``value[x]`` matches ``valueString``, ``valueReference``...)."""
    if not isinstance(node.value, dict):
        return []
    if name.endswith("[x]"):
        stem = name[:-3]
        keys = [k for k in node.value if k.startswith(stem) and k[len(stem) :][:1].isupper()]
    else:
        keys = [name] if name in node.value else []
    out = []
    for k in keys:
        v = node.value[k]
        if isinstance(v, list):
            out += [Node(item, f"{node.path}.{k}[{i}]", k) for i, item in enumerate(v)]
        else:
            out.append(Node(v, f"{node.path}.{k}", k))
    return out


def fixed_or_pattern(element: Element | None) -> tuple[str, Any] | None:
    """(``fixed`` or ``pattern``, value) of an element, if it has one."""
    for k, v in (element or {}).items():
        if k.startswith("fixed"):
            return "fixed", v
        if k.startswith("pattern"):
            return "pattern", v
    return None


def value_at(node: Node, path: str) -> list[Any]:
    if path == "$this":
        return [node.value]
    nodes = [node]
    for name in path.split("."):
        nodes = [c for n in nodes for c in children(n, name)]
    return [n.value for n in nodes]


class Walker:
    """Resolves element ids of one profile against one resource, memoised."""

    def __init__(self, resource: dict[str, Any], elements: list[Element], root_path: str) -> None:
        self.root_id = elements[0]["id"] if elements else resource.get("resourceType", "")
        self.by_id = {e["id"]: e for e in elements}
        self.root = Node(resource, root_path)
        self._groups: dict[str, list[tuple[Node, list[Node]]]] = {}
        self._nodes: dict[str, list[Node]] = {}

    def in_slice(self, node: Node, sliced_id: str, slice_name: str) -> bool:
        slicing = (self.by_id.get(sliced_id) or {}).get("slicing") or {}
        discriminators = slicing.get("discriminator") or []
        if not discriminators:
            return False
        for d in discriminators:
            target_id = f"{sliced_id}:{slice_name}" + ("" if d["path"] == "$this" else f".{d['path']}")
            expected = fixed_or_pattern(self.by_id.get(target_id))
            if expected is None and d["path"] == "url":  # an extension slice: its profile is its url
                profiles = [
                    p
                    for t in (self.by_id.get(f"{sliced_id}:{slice_name}") or {}).get("type") or ()
                    for p in t.get("profile") or ()
                ]
                expected = ("fixed", profiles[0]) if profiles else None
            if expected is None:
                return False
            kind, want = expected
            values = value_at(node, d["path"])
            ok = any(v == want for v in values) if kind == "fixed" else any(contains(want, v) for v in values)
            if not ok:
                return False
        return True

    def groups(self, element_id: str) -> list[tuple[Node, list[Node]]]:
        """For each parent value: the values this element id selects under it (memoised: the
        cardinality check and the per-value checks both ask)."""
        if (known := self._groups.get(element_id)) is not None:
            return known
        parent_id, last = element_id.rsplit(".", 1)
        name, _, slice_name = last.partition(":")
        out = []
        for parent in self.nodes(parent_id):
            kids = children(parent, name)
            if slice_name:
                kids = [k for k in kids if self.in_slice(k, f"{parent_id}.{name}", slice_name)]
            out.append((parent, kids))
        self._groups[element_id] = out
        return out

    def nodes(self, element_id: str) -> list[Node]:
        if element_id == self.root_id:
            return [self.root]
        if element_id not in self._nodes:
            self._nodes[element_id] = [k for _, kids in self.groups(element_id) for k in kids]
        return self._nodes[element_id]
