"""When beat starts a reconciliation: one per interval while runs complete, and a replacement half an
interval after a run that was killed, so completed runs stay within two intervals of each other.

A model of beat's ticks and the lock around the real rule (``tick_due``) and lock lifetime
(``reconcile_lock_ttl``); ``tests/test_broker_outage.py`` kills a real worker mid-run."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from adapter.pipeline.worker import RECONCILE_BUSY_RETRIES, RECONCILE_BUSY_WAIT, reconcile_lock_ttl, tick_due


def completions(interval: float, duration: float, killed: set[int], ticks: int = 60) -> tuple[list[float], int]:
    """When runs complete, and how many started, as beat ticks every half interval. A killed run dies
    just before it would have completed; its lock lapses a lock lifetime after its last keepalive."""
    done, started, last_started, locked_until = [], 0, None, 0.0
    for tick in range(ticks):
        now = tick * interval / 2
        if not tick_due(last_started, now, interval):
            continue
        start = max(now, locked_until)
        if start - now > RECONCILE_BUSY_RETRIES * RECONCILE_BUSY_WAIT:
            continue  # the busy lock outlasted the retries: left to the next tick
        started += 1
        if started in killed:
            locked_until = start + duration + reconcile_lock_ttl(interval)
            continue
        last_started, locked_until = start, 0.0
        done.append(start + duration)
    return done, started


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in pairwise(times)]


@given(interval=st.sampled_from([10.0, 30.0, 60.0, 300.0]), share=st.floats(0.01, 0.2),
       killed=st.sets(st.integers(2, 20), max_size=3))
def test_completed_reconciliations_stay_within_two_intervals_when_runs_are_killed(
        interval: float, share: float, killed: set[int]) -> None:
    killed = {k for k in killed if k - 1 not in killed}  # never two in a row: each kill is its own fault
    done, _ = completions(interval, interval * share, killed)
    assert max(gaps(done)) <= 2 * interval


def test_while_runs_complete_there_is_one_per_interval() -> None:
    done, started = completions(10.0, 1.0, set(), ticks=60)  # 30 s of ticks every 5 s
    assert started == 30 and set(gaps(done)) == {10.0}


def test_a_killed_run_is_replaced_half_an_interval_later() -> None:
    done, _ = completions(10.0, 1.0, {3})  # killed a second in; its lock lapses 5 s later, past the tick
    assert max(gaps(done)) == 10.0 / 2 + 10.0 + 1.0  # the next tick, waiting out the lock: 1.5 intervals
