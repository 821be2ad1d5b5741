"""OperationOutcome: the one shape in which the adapter says what went wrong."""

from __future__ import annotations

from typing import Any


def operation_outcome(
    text: str, *, severity: str = "error", code: str = "invalid", expression: str | None = None
) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": text}
    if expression:
        issue["expression"] = [expression]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def outcome_text(outcome: Any) -> str | None:
    """The human text of an OperationOutcome (diagnostics or details.text), or None."""
    if not isinstance(outcome, dict) or outcome.get("resourceType") != "OperationOutcome":
        return None
    texts = [i.get("diagnostics") or (i.get("details") or {}).get("text") for i in outcome.get("issue") or ()]
    return "; ".join(t for t in texts if t) or None
