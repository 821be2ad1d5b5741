"""When beat starts a reconciliation: one per interval while runs complete, and a replacement at beat's
next tick after a run that was killed, so completed runs stay within two intervals of each other.

A model of beat's ticks, one worker, its restart and the lock around the real rule (``tick_due``), lock
lifetime and busy retries, and the lock itself on a real Redis (a run longer than the lock's lifetime
keeps it; a SIGKILLed run's lock lapses within it); ``tests/test_broker_outage.py`` kills a real worker
mid-run."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from itertools import pairwise

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from adapter.pipeline.state import LockBusy, State
from adapter.pipeline.worker import RECONCILE_BUSY_RETRIES, RECONCILE_BUSY_WAIT, RECONCILE_LOCK_TTL, tick_due
from tests.support.stack import PrivateRedis, wait_for


def completions(
    interval: float, duration: float, killed: set[int], boot: float = 0.0, ticks: int = 60
) -> tuple[list[float], int]:
    """When runs complete, and how many started, as beat ticks every half interval and one worker takes
    them. A killed run dies just before it would have completed: its lock lapses a lock lifetime later
    (the watchdog that extended it died with it), and the worker takes ticks again ``boot`` seconds later."""
    done, started, last_started, locked_until, free_at = [], 0, None, 0.0, 0.0
    for tick in range(ticks):
        taken = max(tick * interval / 2, free_at)  # a tick waits in the queue while the worker is busy or down
        if not tick_due(last_started, taken, interval):
            continue
        waits = max(0, math.ceil((locked_until - taken) / RECONCILE_BUSY_WAIT))
        if waits > RECONCILE_BUSY_RETRIES:
            continue  # the busy lock outlasted the retries: left to the next tick
        start = taken + waits * RECONCILE_BUSY_WAIT
        started += 1
        if started in killed:
            locked_until, free_at = start + duration + RECONCILE_LOCK_TTL, start + duration + boot
            continue
        last_started, locked_until, free_at = start, 0.0, start + duration
        done.append(start + duration)
    return done, started


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in pairwise(times)]


@given(
    interval=st.sampled_from([10.0, 30.0, 60.0, 300.0]),
    share=st.floats(0.01, 0.2),
    boot=st.floats(0.0, 5.0),
    killed=st.sets(st.integers(2, 20), max_size=3),
)
def test_completed_reconciliations_stay_within_two_intervals_when_runs_are_killed(
    interval: float, share: float, boot: float, killed: set[int]
) -> None:
    killed = {k for k in killed if k - 1 not in killed}  # never two in a row: each kill is its own fault
    done, _ = completions(interval, interval * share, killed, boot)
    assert max(gaps(done)) <= 2 * interval


def test_while_runs_complete_there_is_one_per_interval() -> None:
    done, started = completions(10.0, 1.0, set(), ticks=60)  # 30 s of ticks every 5 s
    assert started == 30 and set(gaps(done)) == {10.0}


def test_a_killed_run_is_replaced_at_beats_next_tick_once_the_worker_is_back() -> None:
    done, _ = completions(10.0, 1.0, {3}, boot=4.0)  # killed a second in: back and unlocked before the tick
    assert max(gaps(done)) == 10.0 / 2 + 10.0  # 1.5 intervals
    done, _ = completions(10.0, 1.0, {3}, boot=6.0)  # a slow restart: the tick waits for the worker
    assert max(gaps(done)) == 10.0 + 1.0 + 6.0


def test_a_killed_runs_lock_never_outlasts_the_busy_retries() -> None:
    assert RECONCILE_LOCK_TTL <= RECONCILE_BUSY_RETRIES * RECONCILE_BUSY_WAIT


def test_a_run_longer_than_the_locks_lifetime_keeps_the_lock(private_redis: PrivateRedis) -> None:
    st_ = State(redis.Redis.from_url(private_redis.url, decode_responses=True))
    with st_.reconciliation.running(ttl=0.3):
        time.sleep(1.0)  # three lifetimes with no page, no call into the lock: only the watchdog keeps it
        with pytest.raises(LockBusy), st_.reconciliation.running(ttl=0.3):
            pass
    assert st_.reconciliation.last() is not None
    with st_.reconciliation.running(ttl=0.3):  # released when the run ended
        pass


def test_a_killed_runs_lock_lapses_within_its_lifetime(private_redis: PrivateRedis) -> None:
    st_ = State(redis.Redis.from_url(private_redis.url, decode_responses=True))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import redis, sys, time\n"
            "from adapter.pipeline.state import State\n"
            f"with State(redis.Redis.from_url({private_redis.url!r})).reconciliation.running(ttl=1.0):\n"
            "    print('held', flush=True); time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        time.sleep(1.5)  # past one lifetime: the watchdog still holds it
        with pytest.raises(LockBusy), st_.reconciliation.running(ttl=1.0):
            pass
        holder.kill()
        holder.wait()
        assert 0 < st_.r.pttl("mmr:lock:reconcile") <= 1000  # nobody extends it now: gone within its lifetime

        def free() -> bool:
            try:
                with st_.reconciliation.running(ttl=1.0):
                    return True
            except LockBusy:
                return False

        wait_for(free, timeout=5, interval=0.05, what="the killed run's lock to lapse")
    finally:
        holder.kill()
