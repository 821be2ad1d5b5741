"""Human mistakes end to end (issue 23): each gets a visible answer addressed to whoever can fix it.

Sandbox or HAPI, Redis, the API and a real worker. Runs on both servers (MMR_TEST_FHIR=hapi).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from adapter.fhir.client import FhirClient
from adapter.mappings import HSA_SYSTEM, directory
from tests.support.e2e_referrals import code, key, messages, referral_on_server, review_in, tasks
from tests.support.referrals import LUND, TEST_PERSONNUMMER
from tests.support.stack import Stack, wait_for

pytestmark = pytest.mark.e2e


def _held_outcomes(stack: Stack) -> int:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{stack.api_url}/metrics", timeout=5).text
    return sum(
        int(s.value)
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "mmr_events_total" and s.labels.get("outcome") == "held"
    )


def _performer(hsa: str) -> list[dict[str, Any]]:
    return [{"identifier": {"system": HSA_SYSTEM, "value": hsa}, "display": "Smärtmottagningen"}]


def test_a_mistyped_clinic_is_held_told_and_released_when_corrected(stack: Stack, fhir: FhirClient) -> None:
    held_before = _held_outcomes(stack)
    sr = referral_on_server(fhir, performer=_performer("SE2321000255-XXX9"))
    held = wait_for(lambda: tasks(fhir, sr).get("referral-routing"), what="the held Task")
    assert held["owner"]["identifier"]["value"] == directory().coordinator.hsa_id
    assert (held["status"], code(held["businessStatus"])) == ("on-hold", "awaiting-correction")
    assert "SE2321000255-XXX9" not in held["statusReason"]["text"]
    told = wait_for(lambda: messages(fhir, sr).get(f"{key(sr)}-referral-held-referrer-unknown"), what="the notice")
    assert told["recipient"][0]["reference"].startswith("PractitionerRole/")
    assert TEST_PERSONNUMMER not in told["payload"][0]["contentString"]
    assert "referral-review" not in tasks(fhir, sr)
    wait_for(lambda: _held_outcomes(stack) > held_before, what='outcome="held" counted')

    # The referrer corrects the receiving clinic: a new version of the same referral.
    current = fhir.read("ServiceRequest", sr["id"])
    fhir.update({**current, "performer": _performer(LUND)}, if_match=current["meta"]["versionId"])
    review = review_in(fhir, sr, "recommended", "awaiting-patient", "awaiting-supplement", "assigned")
    assert review["owner"]["reference"].startswith(f"PractitionerRole/{LUND}R")
    closed = wait_for(
        lambda: (t := tasks(fhir, sr).get("referral-routing")) and t["status"] == "completed" and t,
        what="the held Task closed",
    )
    assert code(closed["businessStatus"]) == "routed"


def test_a_referral_with_the_mmr_code_and_no_category_is_recognised(stack: Stack, fhir: FhirClient) -> None:
    sr = referral_on_server(fhir, category=None)
    assert "category" not in fhir.read("ServiceRequest", sr["id"])
    review_in(fhir, sr, "recommended", "awaiting-patient", "awaiting-supplement", "assigned")
