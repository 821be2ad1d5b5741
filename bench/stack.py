"""The real parts as processes for the benchmark: the adapter's API, a Celery worker, the counting proxy.

Everything listens on 127.0.0.1 only. Each process gets its own session (so it and its children stop
together) and a log file under ``bench/results/logs/``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import httpx
import redis

from adapter.polling import TimedOut, poll_or_raise

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
LOGS = RESULTS / "logs"
TOKEN = "bench-token-" + uuid.uuid4().hex
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
T = TypeVar("T")


class BenchError(RuntimeError):
    """A part did not start or a phase did not finish within its deadline."""


def require_loopback(url: str) -> None:
    host = urlparse(url).hostname or ""
    if host not in LOOPBACK:
        raise BenchError(f"{url}: the benchmark only talks to loopback, not {host!r}")


def wait_until(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll ``predicate`` until it returns something truthy, at most ``timeout`` seconds."""
    try:
        return poll_or_raise(predicate, timeout, interval, what=what)
    except TimedOut as exc:
        raise BenchError(str(exc)) from None


def adapter_env(fhir_base: str, redis_url: str, queue: str, public_url: str) -> dict[str, str]:
    """The MMR_* settings of the API and the worker; production defaults otherwise (INFO, JSON logs)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMR_")}
    env.update(
        {
            "MMR_FHIR_BASE_URL": fhir_base,
            "MMR_REDIS_URL": redis_url,
            "MMR_WEBHOOK_TOKEN": TOKEN,
            "MMR_PUBLIC_URL": public_url,
            "MMR_QUEUE": queue,
            "MMR_LOG_LEVEL": "INFO",
            "MMR_LOG_JSON": "true",
        }
    )
    return env


def spawn(name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    LOGS.mkdir(parents=True, exist_ok=True)
    with (LOGS / f"{name}.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, *args], env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(process: subprocess.Popen[Any]) -> None:
    """SIGTERM the process group we started, SIGKILL it if it lingers."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def _alive(process: subprocess.Popen[Any], name: str) -> None:
    if process.poll() is not None:
        raise BenchError(f"{name} exited with {process.returncode}; see {LOGS}/{name}.log")


def start_api(env: dict[str, str], port: int, workers: int = 1) -> subprocess.Popen[bytes]:
    """``mmr-adapter serve`` (uvicorn, ``workers`` processes) on 127.0.0.1; returns once /health is ready."""
    api = spawn(
        "api",
        ["-m", "adapter.cli", "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
        env,
    )

    def ready() -> bool:
        _alive(api, "api")
        try:
            return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, 30, "the API to become ready")
    except BaseException:
        stop(api)
        raise
    return api


def start_worker(env: dict[str, str], name: str, concurrency: int = 2) -> subprocess.Popen[bytes]:
    """``mmr-adapter worker`` (Celery prefork); returns once it answers a control ping."""
    from celery import Celery

    worker = spawn(name, ["-m", "adapter.cli", "worker", "--pool", "prefork", "-c", str(concurrency)], env)
    control = Celery("bench-control", broker=env["MMR_REDIS_URL"])

    def ready() -> bool:
        _alive(worker, name)
        return any(f"mmr-worker-{worker.pid}@" in next(iter(r)) for r in control.control.ping(timeout=0.5))

    try:
        wait_until(ready, 60, f"worker {name} to start")
    except BaseException:
        stop(worker)
        raise
    finally:
        control.close()
    return worker


def start_proxy(target: str) -> tuple[subprocess.Popen[bytes], str]:
    """The counting proxy (``bench/fhir_proxy.py``) in its own process; returns it and its FHIR base."""
    port_file = LOGS / f"proxy-{uuid.uuid4().hex[:8]}.port"
    proxy = spawn("proxy", [str(REPO / "bench" / "fhir_proxy.py"), "--target", target, "--port-file", str(port_file)])

    def port() -> int:
        _alive(proxy, "proxy")
        text = port_file.read_text().strip() if port_file.exists() else ""
        return int(text) if text.isdigit() else 0

    try:
        base = f"http://127.0.0.1:{wait_until(port, 20, 'the proxy to listen')}/fhir"
    except BaseException:
        stop(proxy)
        raise
    finally:
        port_file.unlink(missing_ok=True)
    return proxy, base


@dataclass
class RedisScope:
    """Remembers which keys of the (dedicated) Redis db existed, so cleanup removes only ours."""

    url: str
    before: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        require_loopback(self.url)
        db = int((urlparse(self.url).path or "/0").lstrip("/") or 0)
        if db == 0:
            raise BenchError("use a dedicated Redis db for the benchmark (e.g. redis://127.0.0.1:6379/12), not db 0")
        self.client = redis.Redis.from_url(self.url, decode_responses=True, socket_connect_timeout=2)
        self.client.ping()
        self.before = set(self.client.scan_iter(count=1000))

    @property
    def server_pid(self) -> int:
        """The redis-server's pid, to count its CPU as ours (it runs the queue)."""
        return int(self.client.info("server").get("process_id") or 0)

    def delete(self, *keys: str) -> None:
        if keys:
            self.client.delete(*keys)

    def created(self) -> Iterator[str]:
        return (k for k in self.client.scan_iter(count=1000) if k not in self.before)

    def cleanup(self) -> int:
        """Delete every key that appeared since the benchmark started; never FLUSHDB."""
        keys = list(self.created())
        for i in range(0, len(keys), 500):
            self.client.delete(*keys[i : i + 500])
        self.client.close()
        return len(keys)
