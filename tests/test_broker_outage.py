"""Redis goes away while events are processed, and a reconciliation's worker is killed midway.

Each test that stops Redis runs its own ``redis-server`` (``conftest.PrivateRedis``, with an
append-only file, as compose runs it), so the rest of the suite keeps its Redis.
"""

from __future__ import annotations

import threading
import time

import pytest
import redis
from celery import Celery

from adapter.fhir.client import FhirClient
from adapter.pipeline.envelope import Envelope
from adapter.pipeline.state import State
from adapter.pipeline.worker import PROCESS, RECONCILE
from tests.support.faults import FaultProxy, Rule
from tests.support.referrals import new_referral, review_tasks, subscriptions_paused
from tests.support.stack import LOGS, PrivateRedis, Stack, adapter_env, start_worker, stop, unique, wait_for

pytestmark = pytest.mark.e2e


def test_redis_stopped_while_events_are_processed_every_event_has_its_effect_after_it_returns(
    stack: Stack, fhir: FhirClient, proxy: FaultProxy, private_redis: PrivateRedis
) -> None:
    queue = unique("mmr-outage")
    env = adapter_env(
        proxy.base_url, queue, stack.api_url, MMR_REDIS_URL=private_redis.url, MMR_VISIBILITY_TIMEOUT="10"
    )
    broker = Celery("outage-test", broker=private_redis.url)
    with subscriptions_paused(fhir):
        referrals = [new_referral(fhir) for _ in range(12)]
        for sr in referrals:
            env_ = Envelope("changed", "test", "ServiceRequest", sr["id"], sr["meta"]["versionId"])
            broker.send_task(PROCESS, args=[env_.to_dict()], queue=queue)
        worker = start_worker(env, "outage", concurrency=2, broker=broker)
        try:
            wait_for(
                lambda: sum(1 for sr in referrals if review_tasks(fhir, sr["id"])) >= 2,
                what="the first events to be processed",
            )
            private_redis.stop()
            log = LOGS / "outage.log"  # the outage lasts until the worker has met it
            wait_for(
                lambda: "Connection to broker lost" in log.read_text(errors="replace"),
                what="the worker to notice Redis gone",
            )
            private_redis.start()

            def done() -> bool:
                nonlocal worker
                if worker.poll() is not None:  # it gave up on the broker: never with exit code 0
                    assert worker.returncode != 0, "the worker exited 0 after losing the broker"
                    worker = start_worker(env, "outage-restarted", concurrency=2, broker=broker)  # as a supervisor does
                return all(review_tasks(fhir, sr["id"]) for sr in referrals)

            wait_for(done, timeout=90, what="every event's effect after Redis returned")
        finally:
            stop(worker)
    assert [len(review_tasks(fhir, sr["id"])) for sr in referrals] == [1] * len(referrals)
    private = State(redis.Redis.from_url(private_redis.url, decode_responses=True))
    assert private.dlq.size() == 0


def test_a_worker_killed_in_the_middle_of_a_reconciliation_does_not_hold_up_the_next(
    stack: Stack, proxy: FaultProxy, state: State
) -> None:
    queue = unique("mmr-reconcile-kill")
    env = adapter_env(proxy.base_url, queue, stack.api_url, MMR_RECONCILE_INTERVAL="10")
    hold = proxy.add(
        Rule(lambda method, path, _: method == "GET" and "_lastUpdated" in path, hold=threading.Event(), times=1)
    )
    worker = start_worker(env, "reconcile-kill", concurrency=1)
    broker = Celery("reconcile-test", broker=env["MMR_REDIS_URL"])
    started = time.time()
    broker.send_task(RECONCILE, queue=queue)
    wait_for(hold.held.is_set, what="the reconciliation to be searching")
    stop(worker, sig=9)
    assert hold.hold is not None
    hold.hold.set()
    replacement = start_worker(env, "reconcile-kill-replacement", concurrency=1)
    try:

        def completed() -> bool:
            broker.send_task(RECONCILE, kwargs={"requested_at": time.time()}, queue=queue)  # beat's next runs
            return (state.reconciliation.last() or 0.0) > started

        # A killed run's lock lapses within RECONCILE_LOCK_TTL (3 s), and beat's next tick comes half an
        # interval on: the next run completes well within two intervals, plus the replacement's start
        # on a busy machine.
        wait_for(completed, timeout=40, interval=2, what="a reconciliation to complete after the kill")
    finally:
        stop(replacement)
