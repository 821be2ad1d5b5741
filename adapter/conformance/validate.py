"""Validate a resource against the package: ``validate_resource(dict)`` and ``validate_file(path)``.

Order: base structure (fhir.resources), then every profile that applies (declared in meta.profile,
else chosen by resource type and code), the codes of our CodeSystems wherever they occur, and a
QuestionnaireResponse against our Questionnaire. A Bundle's entries are validated one by one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from adapter.conformance.elements import Walker, contains
from adapter.conformance.outcome import Issue, error, outcome, warning
from adapter.conformance.package import Package, package
from adapter.conformance.profile_check import ProfileCheck
from adapter.conformance.questionnaire_check import ResponseCheck
from adapter.conformance.structure import check_core_codes, check_structure
from adapter.conformance.terminology import Terminology, terminology
from adapter.fhir.resource import Resource

KEY_ELEMENTS = ("code", "category", "type")


def _is_key(sd: Resource, element: Resource) -> bool:
    """An element that identifies instances of the profile: a top-level code/category/type."""
    parts = element["id"].split(".")
    return len(parts) == 2 and parts[1].split(":")[0] in KEY_ELEMENTS and element["id"] != f"{sd['type']}"


def matches(resource: Resource, sd: Resource, term: Terminology) -> bool:
    """Whether an undeclared resource falls under the profile, by the profile's identifying codes.

    A key element with a pattern must match it; without one, a required binding to our ValueSet
    must. Any one key element suffices; a profile without key elements applies to its whole type.
    """
    if resource.get("resourceType") != sd["type"]:
        return False
    elements = sd["differential"]["element"]
    keys = [
        e
        for e in elements
        if _is_key(sd, e)
        and (any(k.startswith("pattern") for k in e) or (e.get("binding") or {}).get("strength") == "required")
    ]
    if not keys:
        return True
    walker = Walker(resource, elements, sd["type"])
    for e in keys:
        pattern = next((v for k, v in e.items() if k.startswith("pattern")), None)
        name = e["id"].split(".")[1].split(":")[0]
        values = [n.value for n in walker.nodes(f"{sd['type']}.{name}")]
        if pattern is not None:
            if any(contains(pattern, v) for v in values):
                return True
        elif any(
            term.in_value_set(e["binding"]["valueSet"], c.get("system"), c.get("code"))
            for v in values
            if isinstance(v, dict)
            for c in v.get("coding") or ()
        ):
            return True
    return False


def select_profiles(
    resource: Resource, pkg: Package, term: Terminology, path: str
) -> tuple[list[Resource], list[Issue]]:
    """The profiles to check: ours in meta.profile, else those the resource's codes select."""
    declared = (resource.get("meta") or {}).get("profile") or []
    chosen, issues = [], []
    base = pkg.manifest.get("canonical", "")
    for canonical in declared:
        sd = pkg.get(canonical)
        if sd is not None and sd.get("resourceType") == "StructureDefinition":
            if sd["type"] != resource.get("resourceType"):
                issues.append(error("structure", f"{path}.meta.profile", f"profile is for {sd['type']}", sd["url"]))
            else:
                chosen.append(sd)
        elif base and canonical.startswith(base):
            issues.append(error("not-found", f"{path}.meta.profile", f"unknown profile {canonical}"))
    if chosen or issues:
        return chosen, issues
    return [sd for sd in pkg.profiles() if matches(resource, sd, term)], []


def check_codes(value: Any, path: str, term: Terminology) -> list[Issue]:
    """Every Coding of one of our CodeSystems, wherever it occurs, must carry a known code."""
    issues: list[Issue] = []
    if isinstance(value, dict):
        system = value.get("system")
        if term.is_ours(system) and "code" in value:
            code = value["code"]
            if not term.has_code(system, code):
                issues.append(error("code-invalid", path, f"unknown code {code!r} in CodeSystem {system}"))
            elif value.get("display") and value["display"] not in term.displays(system, code):
                issues.append(warning("code-invalid", path, f"display {value['display']!r} is not that of {code!r}"))
        for k, v in value.items():
            issues += check_codes(v, f"{path}.{k}", term)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            issues += check_codes(v, f"{path}[{i}]", term)
    return issues


def check_resource(
    resource: Resource, path: str, pkg: Package, term: Terminology, bundle_types: dict[str, str] | None = None
) -> tuple[list[Issue], list[str]]:
    """Profile, code and questionnaire issues of one resource (structure is checked by the caller)."""
    issues = check_core_codes(resource, path) + check_codes(resource, path, term)
    profiles, selection_issues = select_profiles(resource, pkg, term, path)
    issues += selection_issues
    for sd in profiles:
        issues += ProfileCheck(resource, sd, term, path, bundle_types, pkg.get).run()
    checked = [sd["url"] for sd in profiles]
    if resource.get("resourceType") == "QuestionnaireResponse":
        q = pkg.get(resource.get("questionnaire"))
        if q is not None:
            issues += ResponseCheck(resource, q, path).run()
            checked.append(q["url"])
    if resource.get("resourceType") == "Bundle":
        entries = resource.get("entry") or []
        types = {
            e.get("fullUrl"): (e.get("resource") or {}).get("resourceType")
            for e in entries
            if isinstance(e, dict) and e.get("fullUrl")
        }
        for i, entry in enumerate(entries):
            inner = (entry or {}).get("resource") if isinstance(entry, dict) else None
            if isinstance(inner, dict):
                more, also = check_resource(inner, f"{path}.entry[{i}].resource", pkg, term, types)
                issues += more
                checked += [c for c in also if c not in checked]
    return issues, checked


def validate_resource(resource: dict) -> dict:
    """An OperationOutcome for one resource: its issues, or the single informational issue ``valid``."""
    if not isinstance(resource, dict):
        return outcome([error("structure", "(resource)", "not a JSON object")], [])
    path = str(resource.get("resourceType") or "(resource)")
    issues = check_structure(resource, path)
    more, checked = check_resource(resource, path, package(), terminology())
    return outcome(issues + more, checked)


def validate_against(resource: dict, canonical: str) -> dict:
    """An OperationOutcome for one resource against one named profile, whatever the resource declares.

    For a caller that knows what the resource must be (the review: an MMR referral), so a resource
    whose codes are too wrong to select the profile is still held to it. Pure over the resource:
    the package is read once per process.
    """
    pkg, term = package(), terminology()
    path = str(resource.get("resourceType") or "(resource)")
    sd = pkg.get(canonical)
    if sd is None or sd.get("resourceType") != "StructureDefinition":
        return outcome([error("not-found", path, f"unknown profile {canonical}")], [])
    issues = check_structure(resource, path) + check_core_codes(resource, path) + check_codes(resource, path, term)
    if sd["type"] != resource.get("resourceType"):
        issues.append(error("structure", path, f"profile is for {sd['type']}", sd["url"]))
    else:
        issues += ProfileCheck(resource, sd, term, path, None, pkg.get).run()
    return outcome(issues, [sd["url"]])


def validate_file(path: str | Path) -> dict:
    """Validate a JSON file; unreadable JSON is a ``fatal`` issue, not an exception."""
    try:
        resource = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "fatal", "code": "structure", "diagnostics": f"{path}: {exc}"}],
        }
    return validate_resource(resource)
