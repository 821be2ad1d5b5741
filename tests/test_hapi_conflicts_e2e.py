"""End to end: the worker given HAPI's 409 on its transaction re-reads, re-plans and writes nothing twice.

Real API, worker, Redis and sandbox; FaultProxy (a FAKE) answers the worker's first transaction
with HAPI's exact 409 OperationOutcome, because the sandbox answers a stale If-Match with 412 and
cannot be made to lose a race on demand.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from adapter.fhir.client import FhirClient
from adapter.pipeline.envelope import Envelope
from adapter.pipeline.state import State
from tests.support.faults import FaultProxy, Rule, transaction_about
from tests.support.referrals import new_referral, review_tasks, subscriptions_paused
from tests.support.stack import Stack, wait_for

pytestmark = pytest.mark.e2e

LOST_RACE = "HAPI-2840: Can not create resource duplicating existing resource: Task/123"
STALE = (
    "HAPI-0550: HAPI-0550: HAPI-0989: Trying to update ServiceRequest/1/_history/1 but this is not the current version"
)


def hapi_outcome(diagnostics: str) -> bytes:
    return json.dumps(
        {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "processing", "diagnostics": diagnostics}],
        }
    ).encode()


def written_for(fhir: FhirClient, referral_id: str) -> list[dict[str, Any]]:
    focus = f"ServiceRequest/{referral_id}"
    return fhir.search("Task", {"focus": focus}) + fhir.search("Communication", {"based-on": focus})


@pytest.fixture
def quiet(stack: Stack, fhir: FhirClient) -> Iterator[Stack]:
    with subscriptions_paused(fhir):
        yield stack


@pytest.mark.parametrize(("diagnostics", "landed"), [(LOST_RACE, True), (STALE, False)], ids=["HAPI-2840", "HAPI-0989"])
def test_hapis_409_on_a_transaction_means_read_again_and_plan_again(
    quiet: Stack, fhir: FhirClient, proxy: FaultProxy, state: State, diagnostics: str, landed: bool
) -> None:
    sr = new_referral(fhir)
    # HAPI-2840: another writer's transaction landed first (forwarded here), ours is refused 409.
    # HAPI-0989: the referral moved on; nothing of ours landed.
    rule = proxy.add(
        Rule(transaction_about(sr["id"]), status=409, body=hapi_outcome(diagnostics), times=1, forward_first=landed)
    )
    seen = proxy.record()
    assert quiet.notify("PUT", f"/ServiceRequest/{sr['id']}", json.dumps(sr)).status_code == 202
    event = Envelope("changed", "test", "ServiceRequest", sr["id"], sr["meta"]["versionId"])
    wait_for(lambda: state.events.seen(event.dedup_keys), what="this event to be processed")  # others run beside it
    assert rule.hits == 1
    assert len(review_tasks(fhir, sr["id"])) == 1
    identifiers = [json.dumps(r.get("identifier"), sort_keys=True) for r in written_for(fhir, sr["id"])]
    assert len(identifiers) == len(set(identifiers))  # nothing written twice
    transactions = [
        b
        for m, p, b in seen
        if m == "POST" and p.rstrip("/") == "/fhir" and sr["id"].encode() in b and b'"transaction"' in b
    ]
    # After HAPI-2840 the re-read finds everything written: no second write at all.
    assert len(transactions) == (0 if landed else 1)
