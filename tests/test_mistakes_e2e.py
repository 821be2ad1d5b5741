"""Human mistakes end to end (issue 23): each gets a visible answer addressed to whoever can fix it.

Sandbox or HAPI, Redis, the API and a real worker. Runs on both servers (MMR_TEST_FHIR=hapi).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from adapter.fhir.client import FhirClient
from adapter.mappings import HSA_SYSTEM, directory
from adapter.workflow.referral import dig
from tests.support.e2e_referrals import (
    assessments,
    code,
    decide,
    key,
    messages,
    referral_on_server,
    review_in,
    tasks,
)
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


def test_a_review_handed_outside_the_pool_goes_back_to_the_clinic_visibly(stack: Stack, fhir: FhirClient) -> None:
    sr = referral_on_server(fhir, extension=assessments())
    review = review_in(fhir, sr, "recommended")
    other = "SE2321000255-SMH1R1"  # Hässleholm's reviewer, not Lund's
    handed = {**review, "owner": {"reference": f"PractitionerRole/{other}"}}
    fhir.update(handed, if_match=review["meta"]["versionId"])
    back = review_in(fhir, sr, "awaiting-assignment")
    assert back["owner"]["reference"] == f"Organization/{LUND}"
    assert (
        "inte granskare vid mottagningen" in back["statusReason"]["text"] and other not in back["statusReason"]["text"]
    )
    # the clinic assigns one of its reviewers: the refusal is cleared
    mine = f"{LUND}R2"
    fhir.update({**back, "owner": {"reference": f"PractitionerRole/{mine}"}}, if_match=back["meta"]["versionId"])
    cleared = wait_for(
        lambda: (t := tasks(fhir, sr)["referral-review"]) and "statusReason" not in t and t, what="refusal cleared"
    )
    assert cleared["owner"]["reference"] == f"PractitionerRole/{mine}"


def test_a_criterion_result_yes_gets_a_kom_in_clinical_words_with_the_issue_for_the_integrator(
    stack: Stack, fhir: FhirClient
) -> None:
    sr = referral_on_server(fhir, extension=assessments(stable_diagnosis="yes"))
    kom = wait_for(lambda: messages(fhir, sr).get(f"{key(sr)}-KOM-referrer-1"), what="the KOM")
    text = kom["payload"][0]["contentString"]
    assert "Bedömningen av kriterierna" in text and "profil" not in text and "ValueSet" not in text
    assert "mmr-criterion-result" in kom["note"][0]["text"]


def test_the_coordinator_closing_a_held_referral_tells_the_referrer(stack: Stack, fhir: FhirClient) -> None:
    sr = referral_on_server(fhir, performer=_performer("SE2321000255-XXX9"))
    held = wait_for(lambda: tasks(fhir, sr).get("referral-routing"), what="the held Task")
    closed = {**held, "status": "cancelled", "statusReason": {"text": "Patienten har flyttat"}}
    fhir.update(closed, if_match=held["meta"]["versionId"])
    told = wait_for(lambda: messages(fhir, sr).get(f"{key(sr)}-referral-closed-referrer-coordinator"), what="told")
    assert "Patienten har flyttat" in told["payload"][0]["contentString"]
    wait_for(lambda: code(tasks(fhir, sr)["referral-routing"]["businessStatus"]) == "closed", what="closed")


def _readdressed(fhir: FhirClient, sr: dict[str, Any], performer: str) -> dict[str, Any]:
    """The referrer's new version naming ``performer``; the notice it gets for that version."""
    current = fhir.read("ServiceRequest", sr["id"])
    updated = fhir.update({**current, "performer": _performer(performer)}, if_match=current["meta"]["versionId"])
    notice = f"{key(sr)}-performer-unchanged-referrer-v{updated['meta']['versionId']}"
    return wait_for(lambda: messages(fhir, sr).get(notice), what="the notice")


def test_a_version_naming_no_clinic_leaves_the_review_at_its_clinic(stack: Stack, fhir: FhirClient) -> None:
    sr = referral_on_server(fhir, extension=assessments())
    review = review_in(fhir, sr, "recommended")
    told = _readdressed(fhir, sr, "SE2321000255-XXX9")
    assert "har inte genomförts" in told["payload"][0]["contentString"]
    now = tasks(fhir, sr)["referral-review"]
    assert (now["owner"], now["status"], code(now["businessStatus"])) == (review["owner"], "received", "recommended")
    assert "referral-routing" not in tasks(fhir, sr)


def test_a_version_naming_another_clinic_leaves_the_review_at_its_clinic(stack: Stack, fhir: FhirClient) -> None:
    sr = referral_on_server(fhir, extension=assessments())
    review = review_in(fhir, sr, "recommended")
    told = _readdressed(fhir, sr, "SE2321000255-SMH1")  # Hässleholm, a clinic of the routine
    assert "flyttas inte till en annan mottagning" in told["payload"][0]["contentString"]
    now = tasks(fhir, sr)["referral-review"]
    assert (now["owner"], now["status"], code(now["businessStatus"])) == (review["owner"], "received", "recommended")
    # the reviewer's next touch changes nothing either: Lund's reviewer is no outsider at Lund
    fhir.update({**now, "note": [{"text": "Läst"}]}, if_match=now["meta"]["versionId"])
    later = wait_for(
        lambda: (t := tasks(fhir, sr)["referral-review"]) and t["meta"]["versionId"] != now["meta"]["versionId"] and t,
        what="the reviewer's version",
    )
    assert later["owner"] == review["owner"] and "statusReason" not in later


def test_a_version_naming_another_clinic_after_the_decision_changes_nothing_and_is_told(
    stack: Stack, fhir: FhirClient
) -> None:
    sr = referral_on_server(fhir, extension=assessments())
    decide(fhir, review_in(fhir, sr, "recommended"), "MMRpv")
    forwarded = wait_for(lambda: tasks(fhir, sr).get("mmrpv-intake"), what="the MMRpv unit's intake Task")
    settled = wait_for(
        lambda: (t := tasks(fhir, sr)) and t["referral-review"]["status"] == "completed" and t, what="the review closed"
    )
    told = _readdressed(fhir, sr, "SE2321000255-SMH1")
    assert "redan bedömd av" in told["payload"][0]["contentString"]
    now = tasks(fhir, sr)
    assert now["referral-review"]["meta"]["versionId"] == settled["referral-review"]["meta"]["versionId"]
    assert now["mmrpv-intake"]["owner"] == forwarded["owner"] and "referral-routing" not in now


def _remove_owner(fhir: FhirClient, task: dict[str, Any]) -> None:
    """A person's PATCH that deletes the owner (JSON Patch, as the cookbook's requests are)."""
    response = httpx.patch(
        f"{fhir.base_url}/Task/{task['id']}",
        content='[{"op": "remove", "path": "/owner"}]',
        headers={"Content-Type": "application/json-patch+json", "If-Match": f'W/"{task["meta"]["versionId"]}"'},
        timeout=10,
    )
    assert response.status_code == 200, response.text


def test_a_review_whose_owner_is_removed_goes_back_to_the_clinic_visibly(stack: Stack, fhir: FhirClient) -> None:
    sr = referral_on_server(fhir, extension=assessments())
    review = review_in(fhir, sr, "recommended")
    _remove_owner(fhir, review)
    back = wait_for(
        lambda: (t := tasks(fhir, sr)["referral-review"]) and dig(t, "owner", "reference") and t,
        what="the owner given back",
    )
    assert back["owner"]["reference"] == f"Organization/{LUND}"
    assert (back["status"], code(back["businessStatus"])) == ("received", "awaiting-assignment")
    assert (
        "saknade ansvarig" in back["statusReason"]["text"] and back["note"][-1]["text"] == back["statusReason"]["text"]
    )


def test_a_questionnaire_task_whose_owner_is_removed_goes_back_to_the_patient(stack: Stack, fhir: FhirClient) -> None:
    sr = referral_on_server(fhir, extension=[])  # no criteria: the patient is asked
    asked = wait_for(lambda: tasks(fhir, sr).get("complete-questionnaire"), what="the questionnaire Task")
    _remove_owner(fhir, asked)
    back = wait_for(
        lambda: (t := tasks(fhir, sr)["complete-questionnaire"]) and t.get("owner") and t, what="the owner given back"
    )
    assert back["owner"] == asked["owner"] and back["status"] == "requested"
    assert "patienten" in back["note"][-1]["text"] and TEST_PERSONNUMMER not in str(back.get("note"))
