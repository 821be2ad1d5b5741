"""Code look-up in the package's own CodeSystems and ValueSets (no terminology server needed).

Only our systems are known completely; a ValueSet that includes another system's codes lists them
explicitly (the SDC task code), so membership is decidable without outside help.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TypeGuard

from adapter.conformance.package import Package, package


@dataclass(frozen=True)
class Terminology:
    code_systems: dict[str, dict[str, dict]]  # url -> code -> concept
    value_sets: dict[str, frozenset[tuple[str, str]]]  # url -> {(system, code)}

    def is_ours(self, system: str | None) -> TypeGuard[str]:
        return system in self.code_systems

    def has_code(self, system: str, code: str | None) -> bool:
        return code in self.code_systems.get(system, {})

    def displays(self, system: str, code: str) -> set[str]:
        concept = self.code_systems.get(system, {}).get(code) or {}
        return {concept.get("display", ""), *(d.get("value", "") for d in concept.get("designation") or ())}

    def in_value_set(self, value_set: str, system: str | None, code: str | None) -> bool | None:
        """Whether (system, code) is in the ValueSet; ``None`` when the ValueSet is not ours.

        A bare code (``system`` None, as for a ``code`` element) matches any system of the ValueSet.
        """
        members = self.value_sets.get(value_set.split("|")[0])
        if members is None:
            return None
        if system is None:
            return any(c == code for _, c in members)
        return (system, code) in members


def build(pkg: Package) -> Terminology:
    systems = {cs["url"]: {c["code"]: c for c in cs.get("concept") or ()} for cs in pkg.of_type("CodeSystem")}
    value_sets = {}
    for vs in pkg.of_type("ValueSet"):
        members: set[tuple[str, str]] = set()
        for inc in (vs.get("compose") or {}).get("include") or ():
            system = inc.get("system", "")
            if inc.get("concept"):
                members |= {(system, c["code"]) for c in inc["concept"]}
            else:
                members |= {(system, code) for code in systems.get(system, {})}
        value_sets[vs["url"]] = frozenset(members)
    return Terminology(systems, value_sets)


@cache
def terminology() -> Terminology:
    return build(package())
