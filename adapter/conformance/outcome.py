"""OperationOutcome issues: every issue names the instance path and, where one applies, the profile."""

from __future__ import annotations

from typing import Any

Issue = dict[str, Any]
ERRORS = frozenset({"fatal", "error"})


def issue(severity: str, code: str, path: str, message: str, profile: str | None = None) -> Issue:
    text = f"{path}: {message}" + (f" (profile {profile})" if profile else "")
    return {"severity": severity, "code": code, "diagnostics": text, "expression": [path]}


def error(code: str, path: str, message: str, profile: str | None = None) -> Issue:
    return issue("error", code, path, message, profile)


def warning(code: str, path: str, message: str, profile: str | None = None) -> Issue:
    return issue("warning", code, path, message, profile)


def has_errors(outcome: dict[str, Any]) -> bool:
    return any(i.get("severity") in ERRORS for i in outcome.get("issue") or ())


def outcome(issues: list[Issue], checked: list[str]) -> dict[str, Any]:
    """The OperationOutcome; without errors it ends with the informational issue ``valid``."""
    issues = list(issues)
    if not any(i["severity"] in ERRORS for i in issues):
        against = ", ".join(checked) if checked else "base FHIR R4 structure only"
        issues.append(
            {
                "severity": "information",
                "code": "informational",
                "diagnostics": "valid",
                "details": {"text": f"checked against: {against}"},
            }
        )
    return {"resourceType": "OperationOutcome", "issue": issues}
