"""Faults that land between two writes: the FHIR transaction landed, what was to follow did not.

Anything due later is derived from what the FHIR server holds, so it comes back: every event of the
referral sets its missing timers again, and the periodic sweep of open referrals does so for
events that are gone altogether.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import datetime, timedelta
from typing import Any

import pytest
import redis

from adapter.fhir.client import FhirClient
from adapter.pipeline.envelope import Envelope
from adapter.pipeline.state import State
from tests.support.e2e_referrals import key, messages, referral_on_server, tasks
from tests.support.faults import FaultProxy, Rule, transaction_about
from tests.support.referrals import subscriptions_paused
from tests.support.stack import PrivateRedis, Stack, adapter_env, start_worker, stop, unique, wait_for

pytestmark = pytest.mark.e2e


def _cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "adapter.cli", *args], env=stack.env, capture_output=True, text=True, timeout=120
    )


def _timer(state: State, referral_id: str, name: str) -> float | None:
    return dict(state.timers.all()).get(f"{referral_id}|{name}")


def _killed_after_its_transaction(stack: Stack, proxy: FaultProxy, sr: dict[str, Any]) -> None:
    """A worker processes the referral's arrival and is SIGKILLed while its transaction is in flight;
    the transaction lands, the timer write never happens and the message is not delivered again."""
    from adapter.pipeline.worker import PROCESS, app

    queue = unique("mmr-lost")
    env = adapter_env(proxy.base_url, queue, stack.api_url, MMR_VISIBILITY_TIMEOUT="3600")
    hold = proxy.add(Rule(transaction_about(sr["id"]), hold=threading.Event(), times=1))
    worker = start_worker(env, f"lost-{sr['id'][:8]}", concurrency=1)
    app.send_task(PROCESS, args=[Envelope("changed", "test", "ServiceRequest", sr["id"]).to_dict()], queue=queue)
    wait_for(hold.held.is_set, what="the worker to reach its transaction")
    stop(worker, sig=9)
    assert hold.hold is not None
    hold.hold.set()


def test_a_timer_lost_with_a_killed_worker_comes_back_with_the_sweep_and_fires_once(
    stack: Stack, fhir: FhirClient, proxy: FaultProxy, state: State
) -> None:
    with subscriptions_paused(fhir):
        sr = referral_on_server(fhir)
        _killed_after_its_transaction(stack, proxy, sr)
        review = wait_for(lambda: tasks(fhir, sr).get("referral-review"), what="the transaction to land")
        assert _timer(state, sr["id"], "review-overdue") is None  # lost: the worker died before writing it

    swept = _cli(stack, "sweep")
    assert swept.returncode == 0, swept.stderr
    due = datetime.fromisoformat(review["restriction"]["period"]["end"])
    assert (
        wait_for(
            lambda: _timer(state, sr["id"], "review-overdue"),
            timeout=60,
            what="the sweep to set the overdue timer again",
        )
        == due.timestamp()
    )

    late = due + timedelta(hours=1)
    state.clock.set(late)
    try:
        for _ in range(2):  # a second beat run finds nothing left to fire
            assert _cli(stack, "fire-timers", "--at", late.isoformat()).returncode == 0
        overdue = f"{key(sr)}-overdue-clinic-review"
        wait_for(lambda: messages(fhir, sr).get(overdue), what="the overdue notice")
        assert _cli(stack, "sweep").returncode == 0  # sweeping again arms nothing that fires twice
        assert _cli(stack, "fire-timers", "--at", (late + timedelta(minutes=5)).isoformat()).returncode == 0
        wait_for(lambda: _timer(state, sr["id"], "review-overdue") is None, what="the overdue timer to be done")
        assert sum(1 for k in messages(fhir, sr) if "overdue" in k) == 1
    finally:
        state.clock.set(None)


def test_a_lost_timer_comes_back_with_the_referrals_next_event_whatever_it_is(
    stack: Stack, fhir: FhirClient, state: State
) -> None:
    sr = referral_on_server(fhir)
    review = wait_for(lambda: tasks(fhir, sr).get("referral-review"), what="the review Task")
    due = datetime.fromisoformat(review["restriction"]["period"]["end"]).timestamp()
    wait_for(lambda: _timer(state, sr["id"], "review-overdue") == due, what="the overdue timer")
    state.r.zrem("mmr:timers", f"{sr['id']}|review-overdue")  # lost, as between a transaction and its timer write
    # A new version no step acts on: a plain event, neither a retry nor a timer nor the sweep.
    fhir.update({**fhir.read("ServiceRequest", sr["id"]), "note": [*sr.get("note", []), {"text": "ring först"}]})
    assert wait_for(lambda: _timer(state, sr["id"], "review-overdue"), what="the timer set again") == due


def test_a_deleted_review_task_is_noticed_by_the_sweep_when_its_delete_notification_is_lost(
    stack: Stack, fhir: FhirClient
) -> None:
    sr = referral_on_server(fhir)
    first = wait_for(lambda: tasks(fhir, sr).get("referral-review"), what="the review Task")
    assert _cli(stack, "sweep").returncode == 0  # the referral is open
    with subscriptions_paused(fhir):
        fhir.delete("Task", first["id"])  # and nobody tells the adapter
    assert _cli(stack, "sweep").returncode == 0
    second = wait_for(
        lambda: tasks(fhir, sr).get("referral-review"), timeout=60, what="the review Task registered anew"
    )
    assert second["id"] != first["id"]


def test_redis_gone_between_the_transaction_and_the_timer_write_the_sweep_brings_the_timer_back(
    stack: Stack, fhir: FhirClient, proxy: FaultProxy, private_redis: PrivateRedis
) -> None:
    """Redis stops while the arrival's transaction is in flight: the transaction lands, the timer
    write fails, and the worker is killed there. Once Redis is back, the sweep sets the timer from
    what the FHIR server holds, and past the deadline the overdue notice goes out once."""
    from celery import Celery

    from adapter.pipeline.worker import PROCESS

    queue = unique("mmr-redis-gap")
    env = adapter_env(
        proxy.base_url, queue, stack.api_url, MMR_REDIS_URL=private_redis.url, MMR_VISIBILITY_TIMEOUT="3600"
    )
    private = State(redis.Redis.from_url(private_redis.url, decode_responses=True))
    with subscriptions_paused(fhir):
        sr = referral_on_server(fhir)
        hold = proxy.add(Rule(transaction_about(sr["id"]), hold=threading.Event(), times=1))
        worker = start_worker(env, "redis-gap", concurrency=1, broker=Celery("redis-gap", broker=private_redis.url))
        Celery("redis-gap-send", broker=private_redis.url).send_task(
            PROCESS, args=[Envelope("changed", "test", "ServiceRequest", sr["id"]).to_dict()], queue=queue
        )
        wait_for(hold.held.is_set, what="the worker to reach its transaction")
        private_redis.stop()
        assert hold.hold is not None
        hold.hold.set()  # the transaction lands; the timer write that follows finds no Redis
        review = wait_for(lambda: tasks(fhir, sr).get("referral-review"), what="the transaction to land")
        stop(worker, sig=9)
        private_redis.start()
        assert _timer(private, sr["id"], "review-overdue") is None

        sweep = subprocess.run(
            [sys.executable, "-m", "adapter.cli", "sweep"], env=env, capture_output=True, text=True, timeout=120
        )
        assert sweep.returncode == 0, sweep.stderr
        broker = Celery("redis-gap-after", broker=private_redis.url)
        worker = start_worker(env, "redis-gap-after", concurrency=1, broker=broker)
        try:
            due = datetime.fromisoformat(review["restriction"]["period"]["end"])
            assert (
                wait_for(
                    lambda: _timer(private, sr["id"], "review-overdue"),
                    timeout=60,
                    what="the sweep to set the overdue timer again",
                )
                == due.timestamp()
            )
            late = due + timedelta(hours=1)
            private.clock.set(late)
            for _ in range(2):  # two beat runs: the timer fires once
                fired = subprocess.run(
                    [sys.executable, "-m", "adapter.cli", "fire-timers", "--at", late.isoformat()],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                assert fired.returncode == 0, fired.stderr
            overdue = f"{key(sr)}-overdue-clinic-review"
            wait_for(lambda: messages(fhir, sr).get(overdue), what="the overdue notice")
            wait_for(lambda: _timer(private, sr["id"], "review-overdue") is None, what="the overdue timer done")
            assert sum(1 for k in messages(fhir, sr) if "overdue" in k) == 1
        finally:
            stop(worker)
