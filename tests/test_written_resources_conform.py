"""Everything the adapter wrote during the end-to-end tests conforms to its profile.

Runs after the other end-to-end modules (file order) and also drives one referral itself, so it
always has something to check. The adapter's writes are recognised by their ``meta.source``.
"""

from __future__ import annotations

import pytest

from adapter.conformance.outcome import has_errors
from adapter.conformance.validate import validate_resource
from adapter.fhir.client import FhirClient
from tests.support.referrals import new_referral, review_tasks
from tests.support.stack import Stack, wait_for

pytestmark = pytest.mark.e2e

WRITTEN_TYPES = ("Task", "Communication", "EpisodeOfCare", "CarePlan", "CommunicationRequest", "Appointment")


def test_every_resource_the_adapter_wrote_conforms(stack: Stack, fhir: FhirClient) -> None:
    sr = new_referral(fhir)
    wait_for(lambda: review_tasks(fhir, sr["id"]), what="the review Task")
    written = [
        r
        for rtype in WRITTEN_TYPES
        for r in fhir.search(rtype, {"_count": "200"})
        if r.get("resourceType") == rtype
        and (r.get("meta") or {}).get("source", "").startswith("https://mmr-adapter.se/fhir/Device/")
    ]
    assert written, "the adapter wrote nothing to check"
    failures = {}
    for resource in written:
        outcome = validate_resource(resource)
        if has_errors(outcome):
            failures[f"{resource['resourceType']}/{resource['id']}"] = [
                i["diagnostics"] for i in outcome["issue"] if i["severity"] in ("error", "fatal")
            ]
    assert not failures, failures
