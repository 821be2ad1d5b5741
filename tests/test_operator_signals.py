"""The worker's signals an operator alerts on, as the API's /metrics shows them with real workers:
events in progress, the oldest queued event's age, workers alive, FHIR failures by answer."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from adapter.fhir.client import FhirClient
from adapter.pipeline import worker
from adapter.pipeline.envelope import Envelope
from adapter.pipeline.state import State
from tests.support.faults import FaultProxy, Rule, transaction_about
from tests.support.referrals import new_referral, review_tasks, subscriptions_paused
from tests.support.stack import Stack, start_worker, stop, unique, wait_for

pytestmark = pytest.mark.e2e


def scrape(stack: Stack) -> dict[str, float]:
    """/metrics as ``{'name{label="value",...}': value}``, labels sorted (``name`` alone without labels)."""
    from prometheus_client.parser import text_string_to_metric_families

    reply = httpx.get(f"{stack.api_url}/metrics", timeout=10)
    assert reply.status_code == 200
    found = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found


def test_the_oldest_queued_event_is_read_from_the_queue_the_sweep_left_out(state: State) -> None:
    """Published by the real Celery publish onto a queue no worker consumes: the next event in line is
    the oldest, a fan-out's events count by their own arrival, and the sweep's wait by design."""
    queue = unique("mmr-oldest")
    try:
        assert worker.queue_view(state.r, queue)[0] is None  # empty: no age at all
        now = time.time()
        sweep = Envelope("changed", "sweep", "ServiceRequest", "a", "1", received_at=now - 3600)
        worker.app.send_task(worker.PROCESS, args=[sweep.to_dict()], queue=queue, **worker._publish_options(sweep))
        assert worker.queue_view(state.r, queue)[0] is None  # only the sweep's: nothing a patient waits on
        first = Envelope("changed", "rest-hook", "ServiceRequest", "b", "1", received_at=now - 120)
        worker.enqueue_notification((first,), queue=queue)
        fan_out = tuple(Envelope("changed", "topic", "Task", f"t{n}", "1", received_at=now - 60) for n in range(3))
        worker.enqueue_notification(fan_out, queue=queue)
        assert worker.queue_view(state.r, queue)[0] == pytest.approx(now - 120)
        state.r.rpop(queue)  # a worker takes the first: the fan-out is next
        assert worker.queue_view(state.r, queue)[0] == pytest.approx(now - 60)
    finally:
        state.r.delete(*worker.queue_keys(queue))


def test_an_event_held_at_the_fhir_server_shows_in_progress_until_it_is_done(
    stack: Stack, fhir: FhirClient, proxy: FaultProxy
) -> None:
    # What earlier tests on the shared stack left in progress is counted too (an event a killed worker held
    # stays unacked until it is handed back, which may happen at any moment): this test's event is one of
    # those counted while it is held, and the count falls by it once it is done.
    with subscriptions_paused(fhir):
        sr = new_referral(fhir)
        hold = proxy.add(Rule(transaction_about(sr["id"]), hold=threading.Event(), times=1))
        try:
            assert stack.notify("PUT", f"/ServiceRequest/{sr['id']}", json.dumps(sr)).status_code == 202
            wait_for(hold.held.is_set, what="the worker to reach its transaction")
            during = scrape(stack)["mmr_events_in_progress"]
            assert during >= 1
        finally:
            assert hold.hold is not None
            hold.hold.set()
        wait_for(lambda: review_tasks(fhir, sr["id"]), what="the review Task")
        wait_for(lambda: scrape(stack)["mmr_events_in_progress"] <= during - 1, what="this event no longer in progress")
    assert scrape(stack)["mmr_queue_oldest_age_seconds"] < 60  # the stack's queue drains


def test_fhir_failures_are_counted_by_the_servers_answer(stack: Stack, fhir: FhirClient, proxy: FaultProxy) -> None:
    def failures(answer: str) -> float:
        return scrape(stack).get(f'mmr_fhir_failures_total{{answer="{answer}"}}', -1.0)

    before = {answer: failures(answer) for answer in ("none", "4xx", "5xx")}
    assert min(before.values()) >= 0  # every answer is a series from the start, for rate()
    retried = scrape(stack).get('mmr_events_total{kind="ServiceRequest",outcome="retried"}', 0.0)
    with subscriptions_paused(fhir):
        sr = new_referral(fhir)
        rule = proxy.add(Rule(transaction_about(sr["id"]), status=503, times=2))
        assert stack.notify("PUT", f"/ServiceRequest/{sr['id']}", json.dumps(sr)).status_code == 202
        wait_for(lambda: review_tasks(fhir, sr["id"]), what="the review Task once the server recovers")
    assert rule.hits == 2
    after = scrape(stack)
    assert after['mmr_fhir_failures_total{answer="5xx"}'] >= before["5xx"] + 1
    assert after['mmr_events_total{kind="ServiceRequest",outcome="retried"}'] >= retried + 1


def test_workers_alive_counts_a_worker_from_its_start_to_its_stop(stack: Stack) -> None:
    def alive() -> float:
        return scrape(stack)["mmr_workers_alive"]

    wait_for(lambda: alive() >= 1, what="the stack's worker to count as alive")
    before = alive()
    extra = start_worker(stack.env, "alive-probe", concurrency=1)
    try:
        wait_for(lambda: alive() == before + 1, what="the new worker to count as alive")
    finally:
        stop(extra)  # SIGTERM: a warm shutdown, which says it is gone
    wait_for(lambda: alive() == before, timeout=10, what="the stopped worker to stop counting")
