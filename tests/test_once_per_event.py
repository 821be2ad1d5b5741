"""No repeated work within an event: every rule and FHIRPath expression is evaluated once per event,
however many steps ask, and what a step's writes cannot change is not evaluated again."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from typing import Any

import pytest

from adapter.workflow.core import Plan, Write
from adapter.workflow.review import completeness, criteria, sources
from adapter.workflow.steps import ROUTINE
from tests.support.workflow import ALL_MET, ctx, referral, service_request, sr_event


@pytest.fixture
def evaluations(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Every FHIRPath evaluation, by expression."""
    seen: Counter[str] = Counter()
    real = sources.fhirpath

    def counting(expression: str, *args: Any, **kwargs: Any) -> Any:
        seen[expression] += 1
        return real(expression, *args, **kwargs)

    for module in (sources, completeness, criteria):
        monkeypatch.setattr(module, "fhirpath", counting, raising=False)
    return seen


def test_an_arrival_evaluates_every_expression_once(evaluations: Counter[str]) -> None:
    state = referral(service_request(extension=ALL_MET))
    plan = ROUTINE.decide(state, sr_event(state), ctx())
    assert plan.writes and len(evaluations) > 5  # the completeness rules and the criteria ran
    assert {e: n for e, n in evaluations.items() if n > 1} == {}


def test_what_is_derived_from_the_record_outlives_writes_of_tasks_but_not_of_the_referral() -> None:
    state = referral(service_request())
    computed: list[int] = []

    def count() -> int:
        computed.append(1)
        return len(computed)

    assert state.derived("k", count, sources.RECORD) == state.derived("k", count, sources.RECORD) == 1
    task = Write({"resourceType": "Task", "id": "t9", "status": "requested"})
    assert state.with_plan(Plan(writes=(task,))).derived("k", count, sources.RECORD) == 1
    revised = Write({**state.service_request, "status": "revoked"})
    assert state.with_plan(Plan(writes=(revised,))).derived("k", count, sources.RECORD) == 2
    assert state.with_plan(Plan(writes=(task,))).derived("all", count) == 3  # no reads: the whole state
    assert state.derived("all", count) == 4 and state.with_plan(Plan(writes=(task,))).derived("all", count) == 5


def test_what_is_due_later_reuses_what_the_event_derived(evaluations: Counter[str]) -> None:
    state = referral(service_request(extension=ALL_MET))
    plan, after = ROUTINE.planned(state, sr_event(state), ctx())
    assert after.resources.keys() == state.with_plan(plan).resources.keys()
    first = sum(evaluations.values())
    assert ROUTINE.due_later(after, ctx())  # the review deadline, at least
    assert sum(evaluations.values()) == first  # the timers' steps found every rule already evaluated


WARM_UP_PROBE = """
import socket, sys
def refuse(*args, **kwargs):
    raise AssertionError("the warm-up opened a connection")
socket.socket.connect = refuse
from adapter.pipeline import worker
from adapter.workflow.review import completeness, sources
worker.warm_up()
print(sources._compiled.cache_info().currsize == len(completeness.rules()),
      any(name.endswith(".servicerequest") for name in sys.modules))
"""


def test_the_worker_compiles_and_loads_once_before_its_pool_forks() -> None:
    """``mmr-adapter worker`` plans the example referral's arrival in its main process before the pool forks
    (``worker_init``), so no child pays for the first event: every completeness rule compiled, the
    FHIR model of the referral imported, and not one connection opened (the children must not share
    a socket). In a fresh interpreter, as a worker starts."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMR_")}
    probe = subprocess.run([sys.executable, "-c", WARM_UP_PROBE], capture_output=True, text=True, env=env, timeout=120)
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert probe.stdout.split() == ["True", "True"]
