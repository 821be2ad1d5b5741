"""A dead letter's reason is one line an operator can act on: the host, the request, the failure.

Against a real refused port (nothing listens on it): the client's own failure, and a real worker
process dead-lettering an event it could not load.
"""

from __future__ import annotations

import pytest

from adapter.dev.sandbox import free_port
from adapter.fhir.client import FhirClient, FhirError
from adapter.pipeline.envelope import Envelope
from adapter.pipeline.state import State
from tests.support.stack import adapter_env, start_worker, stop, unique, wait_for


@pytest.fixture
def refused() -> str:
    """A FHIR base on loopback where nothing listens: every connection is refused."""
    return f"http://127.0.0.1:{free_port()}/fhir"


def test_a_refused_transaction_names_the_host_the_interaction_and_the_failure(refused: str) -> None:
    with FhirClient(refused, retries=0) as client, pytest.raises(FhirError) as info:
        client.transaction({"resourceType": "Bundle", "type": "transaction", "entry": []})
    assert info.value.status == 0 and info.value.transient
    assert info.value.summary == f"POST {refused} (transaction): connection refused"


def test_a_refused_search_keeps_its_query_values_out_of_the_summary(refused: str) -> None:
    with FhirClient(refused, retries=0) as client, pytest.raises(FhirError) as info:
        client.search("Patient", {"identifier": "http://electronichealth.se/identifier/personnummer|191212121212"})
    assert info.value.summary == f"GET {refused}/Patient (search): connection refused"
    assert "1912" not in str(info.value) and "1912" not in info.value.summary


@pytest.mark.e2e
def test_a_worker_that_cannot_reach_the_fhir_server_dead_letters_with_an_actionable_reason(
    refused: str, state: State
) -> None:
    queue = unique("mmr-refused")
    env = adapter_env(refused, queue, "http://127.0.0.1:9", MMR_MAX_ATTEMPTS="1", MMR_FHIR_RETRIES="0")
    worker = start_worker(env, "refused", concurrency=1)
    referral = unique("sr")
    try:
        from adapter.pipeline.worker import PROCESS, app

        event = Envelope("changed", "rest-hook-put", "ServiceRequest", referral, "1")
        app.send_task(PROCESS, args=[event.to_dict()], queue=queue)
        entry = wait_for(
            lambda: next((e for e in state.dlq.entries() if e["envelope"].get("resource_id") == referral), None),
            what="the event's dead letter",
        )
        state.dlq.take(entry["id"])
    finally:
        stop(worker)
    reason = entry["reason"]
    request, _, failure = reason.partition(": ")
    assert request.startswith((f"FHIR GET {refused}", f"FHIR POST {refused}")), reason
    assert "?" not in request and "=" not in request, reason  # no query string: it may hold identifiers
    assert failure == "connection refused; is the FHIR server up and MMR_FHIR_BASE_URL right?", reason
    assert "\n" not in reason
