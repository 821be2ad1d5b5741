"""What the shell loads for a referral before the steps run: FHIR searches, as data.

Phase one is one search with includes; phase two (only what phase one makes possible, such as
the patient's active Consent) runs as one batch. Steps add what they need here, not in the shell.
"""

from __future__ import annotations

from typing import Any

REFERRAL_INCLUDES = (
    "_include=ServiceRequest:subject",
    "_include=ServiceRequest:requester",
    "_include=ServiceRequest:performer",
    "_revinclude=Task:focus",
    "_revinclude=Communication:based-on",
)


def referral_query(referral_id: str) -> str:
    return f"ServiceRequest?_id={referral_id}&" + "&".join(REFERRAL_INCLUDES)


def follow_up_queries(service_request: dict[str, Any], loaded: dict[str, dict[str, Any]]) -> list[str]:
    """Searches that depend on what phase one found. Extended by the review and MMRpv steps."""
    return []
