"""The test session's real parts as processes: its Redis, token and queue, the adapter's API and
workers started as `mmr-adapter` processes, a private redis-server, and polling with a deadline.

Importable by any test (``from tests.support.stack import Stack, wait_for``); the fixtures that
start and share them once per session live in ``tests/conftest.py``. Importing this module fixes
the session's environment (``MMR_*`` from the test settings only), once per process.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from adapter.fhir.client import FhirClient
from adapter.polling import TimedOut, poll_or_raise
from tests.support.redis_server import PrivateRedis as RedisServer
from tests.support.redis_server import answers

# Left in the environment, so every process the tests start (and a second session in it) sees one
# token, queue and log folder.
TOKEN = os.environ.setdefault("MMR_TEST_TOKEN", "test-token-" + uuid.uuid4().hex)


def _redis_url() -> str:
    """The test Redis: MMR_TEST_REDIS_URL, the local one, or a private redis-server we start."""
    url = os.environ.get("MMR_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
    if answers(url):
        return url
    if shutil.which("redis-server") is None:
        raise RuntimeError(
            f"no Redis answers at {url} and redis-server is not installed; "
            "see the README (apt-get install -y redis-server)"
        )
    server = RedisServer(db=9)
    try:
        server.start()
    except TimedOut as exc:
        raise RuntimeError(str(exc)) from None
    atexit.register(lambda: redis.Redis.from_url(server.url).shutdown(nosave=True))
    return server.url


REDIS_URL = os.environ["MMR_TEST_REDIS_URL"] = _redis_url()
QUEUE = os.environ.setdefault("MMR_TEST_QUEUE", f"mmr-test-{uuid.uuid4().hex[:8]}")
# The processes' logs, which tests read (and check for personal data): a folder of this session's own
# unless MMR_TEST_LOGS names one, so two test sessions on one machine never read or wipe each other's.
LOGS = Path(os.environ.setdefault("MMR_TEST_LOGS", tempfile.mkdtemp(prefix="mmr-test-logs-")))


def _drop_empty_logs() -> None:
    """A session that started no process leaves no folder behind; one with logs keeps them to read."""
    with contextlib.suppress(OSError):
        LOGS.rmdir()  # only an empty folder goes


atexit.register(_drop_empty_logs)
# MMR_TEST_FHIR=hapi: run against the real HAPI FHIR fixture (adapter/dev/hapi.py) instead of the sekmet sandbox.
FHIR_SERVER = os.environ.get("MMR_TEST_FHIR", "sandbox")
# In-process helpers (enqueue, control.ping) read the same settings as the processes they talk to.
# MMR_TEST_* stay: they are the test session's own settings (MMR_TEST_LOGS, MMR_TEST_FHIR, ...).
for _key in [k for k in os.environ if k.startswith("MMR_") and not k.startswith("MMR_TEST_")]:
    del os.environ[_key]
os.environ.update({"MMR_REDIS_URL": REDIS_URL, "MMR_QUEUE": QUEUE, "MMR_TEST_CLOCK": "true"})


# How long an end-to-end step may take. HAPI delivers from an in-memory queue shared with all the
# noise and retries a failed delivery for 60 s (../shared/reference/hapi-notifications.md): on a
# loaded CI machine a step there took longer than 20 s. A deadline, not a sleep: it costs nothing
# when the step is on time.
STEP_TIMEOUT = 60.0 if FHIR_SERVER == "hapi" else 20.0


def wait_for(
    predicate: Callable[[], Any], timeout: float = STEP_TIMEOUT, interval: float = 0.1, what: str = "condition"
) -> Any:
    """Poll until ``predicate`` returns something truthy; fail the test with ``what`` otherwise."""
    try:
        return poll_or_raise(predicate, timeout, interval, what=what)
    except TimedOut as exc:
        pytest.fail(str(exc))


@dataclass
class Stack:
    """The adapter as deployed: API and worker processes, sharing Redis and the (proxied) sandbox."""

    api_url: str
    env: dict[str, str]
    queue: str

    def notify(
        self,
        method: str,
        path: str = "",
        body: bytes | str | None = None,
        content_type: str = "application/fhir+json; charset=UTF-8",
        token: str | None = TOKEN,
        extra: dict[str, str] | None = None,
    ) -> httpx.Response:
        headers = {"Content-Type": content_type, **(extra or {})}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.request(method, f"{self.api_url}/notify{path}", content=body, headers=headers, timeout=10)


def adapter_env(fhir_base: str, queue: str, public_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMR_")}
    env.update(
        {
            "MMR_FHIR_BASE_URL": fhir_base,
            "MMR_REDIS_URL": REDIS_URL,
            "MMR_WEBHOOK_TOKEN": TOKEN,
            "MMR_PUBLIC_URL": public_url,
            "MMR_QUEUE": queue,
            "MMR_TEST_CLOCK": "true",
            "MMR_FHIR_RETRIES": "1",
            "MMR_RETRY_BACKOFF": "0.2",
            "MMR_RETRY_BACKOFF_MAX": "1",
            "MMR_MAX_ATTEMPTS": "4",
            "MMR_LOCK_TIMEOUT": "5",
            "MMR_LOG_JSON": "true",
            "MMR_LOG_LEVEL": "INFO",
            **extra,
        }
    )
    return env


def spawn(name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    LOGS.mkdir(parents=True, exist_ok=True)
    log = (LOGS / f"{name}.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "adapter.cli", *args],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        os.killpg(process.pid, sig)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def start_worker(env: dict[str, str], name: str, concurrency: int = 2, broker: Any = None) -> subprocess.Popen[bytes]:
    """A real Celery worker process; returns once it consumes from its queue (``broker``: the Celery
    app to ping it through, when it does not use the suite's Redis)."""
    from adapter.pipeline.worker import app as suite_app

    app = broker or suite_app
    process = spawn(name, ["worker", "--pool", "prefork", "-c", str(concurrency)], env)

    def ready() -> bool:
        if process.poll() is not None:
            pytest.fail(f"worker {name} exited with {process.returncode}; see {LOGS}/{name}.log")
        try:
            replies = app.control.ping(timeout=0.5)
        except (redis.exceptions.ConnectionError, OSError):  # a broker just restarted: ask again
            return False
        return any(str(process.pid) in next(iter(r)) for r in replies)

    wait_for(ready, timeout=30, what=f"worker {name} to start")
    return process


def off_the_tables(fhir: FhirClient, since: datetime) -> list[str]:
    """Every version of every Task of ours written since ``since`` that is at no row of its state
    table, as ``Task/id/_history/n: problem``. A version someone else closed may wait for the
    adapter to settle it, as long as a later version did."""
    from adapter.mappings import codes
    from adapter.workflow import task_states

    system = codes().identifier_system("task")
    found = []
    for current in fhir.search("Task", {"identifier": f"{system}|", "_lastUpdated": f"ge{since.isoformat()}"}):
        versions = [
            e["resource"]
            for e in fhir.get(f"Task/{current['id']}/_history?_count=100").get("entry") or ()
            if e.get("resource")
        ]  # none: a delete
        versions.sort(key=lambda v: int(v.get("meta", {}).get("versionId") or 0))
        for n, version in enumerate(versions):
            if n < len(versions) - 1 and task_states.closed_by_another(version):
                continue
            found += [
                f"Task/{current['id']}/_history/{version.get('meta', {}).get('versionId')}: {p}"
                for p in task_states.problems(version)
            ]
    return found


def nobody_responsible(fhir: FhirClient, since: datetime) -> list[str]:
    """Every MMR referral (by category or code) written since ``since`` that breaks the rule of
    :func:`adapter.workflow.responsibility.responsible` (exactly one responsible party), as
    ``ServiceRequest/id: problem``; each loaded as the ``status`` command loads it."""
    from adapter.fhir.resource import ref
    from adapter.mappings import codes
    from adapter.operations.status import load_referral
    from adapter.workflow.core import Referral
    from adapter.workflow.referral import is_mmr_referral
    from adapter.workflow.responsibility import responsible

    c = codes()
    found: dict[str, dict[str, Any]] = {}
    for param, coding in (("category", c.referral_category), ("code", c.referral_code)):
        query = {param: f"{coding['system']}|{coding['code']}", "_lastUpdated": f"ge{since.isoformat()}"}
        for sr in fhir.search("ServiceRequest", query):
            if sr.get("resourceType") == "ServiceRequest" and is_mmr_referral(sr):
                found[sr["id"]] = sr
    problems = []
    for referral_id in sorted(found):
        resources = {ref(r): r for r in load_referral(fhir, referral_id)}
        service_request = resources.get(f"ServiceRequest/{referral_id}")
        if service_request is None:  # deleted since
            continue
        answer = responsible(Referral(service_request, resources))
        if answer.problem:
            problems.append(f"ServiceRequest/{referral_id}: {answer.problem}")
    return problems


class PrivateRedis(RedisServer):
    """A redis-server of the test's own, persisting to an append-only file so a restart keeps the queue."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.start()


def unique(prefix: str = "R") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
