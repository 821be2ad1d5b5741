"""Fixtures: the real parts started once per session (the sandbox FHIR server, Redis, the API and
Celery workers as processes; a worker per test where a test kills one) and the checks every test
runs beside its own. Each test works on its own referrals, so tests do not need to wipe the server.

The helpers the fixtures and the tests share are importable from ``tests.support``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import redis

from adapter.dev.hapi import HapiServer, start_hapi
from adapter.dev.sandbox import Sandbox, free_port, start_sandbox
from adapter.fhir.client import FhirClient
from adapter.pipeline.state import State
from adapter.workflow.core import Plan, Referral
from tests.support.faults import FaultProxy
from tests.support.stack import (
    FHIR_SERVER,
    LOGS,
    QUEUE,
    REDIS_URL,
    PrivateRedis,
    Stack,
    adapter_env,
    nobody_responsible,
    off_the_tables,
    spawn,
    start_worker,
    stop,
    wait_for,
)


@pytest.fixture(scope="session", autouse=True)
def _fresh_logs() -> None:
    LOGS.mkdir(parents=True, exist_ok=True)
    for old in LOGS.glob("*.log"):
        old.unlink()


@pytest.fixture(autouse=True)
def _kept_lookups_are_what_a_fresh_state_derives(monkeypatch: pytest.MonkeyPatch) -> None:
    """In every test that plans in this process: each lookup a state keeps from the state before
    (``core.per_state``, kept while a plan writes none of the types it reads) gives what the same
    lookup gives on a fresh state of the same resources. A ``reads`` set that is too narrow fails here."""
    real = Referral.with_plan

    def checked(self: Referral, plan: Plan) -> Referral:
        after = real(self, plan)
        if after is not self:
            fresh = Referral(after.service_request, after.resources)
            for key, (value, _) in after._derived.items():
                if callable(key):  # a per_state lookup (other derived values are keyed by names)
                    assert key(fresh) == value, f"{key.__qualname__} kept across a plan that changed it"
        return after

    monkeypatch.setattr(Referral, "with_plan", checked)


@pytest.fixture(scope="session")
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        pytest.fail(f"Redis is not reachable at {REDIS_URL}; .ci/run starts one")
    for key in client.scan_iter("mmr:*"):  # never FLUSHDB: kombu keeps its queue bindings here
        client.delete(key)
    yield client
    client.close()


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox | HapiServer]:
    """The FHIR server of the session: the sekmet sandbox, or HAPI FHIR with MMR_TEST_FHIR=hapi."""
    if FHIR_SERVER not in ("sandbox", "hapi"):
        pytest.fail(f"MMR_TEST_FHIR must be 'sandbox' or 'hapi', not {FHIR_SERVER!r}")
    # HAPI's own log sits apart from the adapter's *.log files, which tests read and check for personal data.
    (LOGS / "hapi").mkdir(parents=True, exist_ok=True)
    server = start_hapi(log_path=LOGS / "hapi" / "hapi.log") if FHIR_SERVER == "hapi" else start_sandbox(0)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def proxy(sandbox: Sandbox) -> Iterator[FaultProxy]:
    p = FaultProxy(sandbox.base_url)
    yield p
    p.close()


@pytest.fixture(autouse=True)
def _clear_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "proxy" in request.fixturenames:
        request.getfixturevalue("proxy").clear()


@pytest.fixture(scope="session")
def fhir(sandbox: Sandbox) -> Iterator[FhirClient]:
    # The tests look at what the server holds now: never at HAPI's 60 s search cache.
    with FhirClient(sandbox.base_url, retries=0, headers={"Cache-Control": "no-cache"}) as client:
        yield client


@pytest.fixture(scope="session")
def state(redis_client: redis.Redis) -> State:
    return State(redis_client)


@pytest.fixture(scope="session")
def stack(sandbox: Sandbox, proxy: FaultProxy, redis_client: redis.Redis) -> Iterator[Stack]:
    port = free_port()
    queue = QUEUE
    env = adapter_env(proxy.base_url, queue, f"http://127.0.0.1:{port}")
    api = spawn("api", ["serve", "--host", "127.0.0.1", "--port", str(port)], env)
    worker = start_worker(env, "worker")
    api_url = f"http://127.0.0.1:{port}"

    def api_ready() -> bool:
        if api.poll() is not None:
            pytest.fail(f"API exited with {api.returncode}; see {LOGS}/api.log")
        try:
            return httpx.get(f"{api_url}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(api_ready, timeout=30, what="the API to become ready")
    setup = subprocess.run(
        [sys.executable, "-m", "adapter.cli", "setup"], env=env, capture_output=True, text=True, timeout=120
    )
    assert setup.returncode == 0, setup.stdout + setup.stderr
    yield Stack(api_url, env, queue)
    stop(api)
    stop(worker)
    # Every test takes away what it parks on purpose: what is left was lost to a fault.
    left = [
        f"{e['envelope'].get('kind')} {e['envelope'].get('resource_type')}: {e['reason']}"
        for e in State(redis_client).dlq.entries()
    ]
    assert left == [], f"the suite ended with dead letters: {left}"


SINCE = pytest.StashKey[datetime]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """After every end-to-end test that passed: each referral it wrote has exactly one party
    responsible for its next step (``adapter.workflow.responsibility``). Part of the test's own
    outcome, not of its teardown, so a case the workflow still leaves without one is marked on the
    test, ``xfail(strict=True)`` with the reason, and fails as soon as it is fixed."""
    result = yield
    since = item.stash.get(SINCE, None)
    if since is not None:
        fhir: FhirClient = item._request.getfixturevalue("fhir")  # type: ignore[attr-defined]
        left: list[str] = []

        def everyone_held() -> bool:
            left[:] = nobody_responsible(fhir, since)
            return not left

        try:
            wait_for(everyone_held, what="every referral of the test to have one responsible party")
        except pytest.fail.Exception:
            raise AssertionError(f"referrals without exactly one responsible party: {left}") from None
    return result


@pytest.fixture(autouse=True)
def _noise(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every end-to-end scenario runs with unrelated traffic beside it: none of it may be
    dead-lettered or written to by the adapter."""
    if "stack" not in request.fixturenames:
        yield
        return
    from tests.support.noise import Noise, unrelated

    request.getfixturevalue("stack")  # subscribed first, so the noise is notified like everything else
    fhir: FhirClient = request.getfixturevalue("fhir")
    state: State = request.getfixturevalue("state")
    since = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    request.node.stash[SINCE] = since
    # A round of noise a second; on HAPI, which spends some 60 ms of CPU on each write, one every two
    # seconds, so that the noise does not starve the two cores the suite and HAPI share.
    with Noise(fhir, every=2.0 if FHIR_SERVER == "hapi" else 1.0) as noise:
        yield
    assert noise.types() == {r["resourceType"] for r in unrelated("x")}, "the server refused the noise"
    assert noise.touched() == [], "the adapter wrote to resources that are no referral's business"
    assert off_the_tables(fhir, since) == [], "Task versions at no row of mappings/task-states.yaml"
    # Noise notified just now may still be queued: give the worker a moment to park any, then look.
    from adapter.pipeline.worker import queue_depth

    wait_for(lambda: not queue_depth(state.r, QUEUE), timeout=30, what="the noise to be processed")
    assert noise.dead_lettered(state) == [], "unrelated events were dead-lettered"


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-cli") is None:
        pytest.fail("redis-cli is missing: it comes with Debian's redis-server (see the README)")
    server = PrivateRedis(tmp_path)
    yield server
    if server.answers():
        server.stop()
