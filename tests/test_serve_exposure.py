"""``serve`` keeps /metrics, /docs and /openapi.json on this machine unless an operator token guards them.

Real ``mmr-adapter serve`` processes: on loopback by default; on any other address only with
``MMR_OPERATOR_TOKEN``, else it refuses to start with one line and exit code 2.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from adapter.dev.sandbox import free_port
from tests.support.stack import adapter_env, spawn, stop, unique, wait_for

OPERATOR = "operator-token-" + "x" * 16


def env(**extra: str) -> dict[str, str]:
    # Nothing is reached at start: the FHIR server and Redis are only asked by /health.
    return adapter_env("http://127.0.0.1:9/fhir", unique("mmr-serve"), "http://127.0.0.1:8000", **extra)


def answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=1)
        return True
    except httpx.TransportError:
        return False


@contextmanager
def serving(*args: str, **extra: str) -> Iterator[int]:
    port = free_port()
    process = spawn(f"serve-{port}", ["serve", "--port", str(port), *args], env(**extra))
    try:

        def up() -> bool:
            assert process.poll() is None, f"serve exited with {process.returncode}"
            return answers(f"http://127.0.0.1:{port}/health")

        wait_for(up, timeout=30, what="serve to answer")
        yield port
    finally:
        stop(process)


def this_hosts_other_address() -> str | None:
    """An address of this machine that is not loopback, if it has one (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: routing only picks the source address
        except OSError:
            return None
        address = str(s.getsockname()[0])
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_serve_on_every_interface_without_an_operator_token_refuses_to_start() -> None:
    port = free_port()
    done = subprocess.run(
        [sys.executable, "-m", "adapter.cli", "serve", "--host", "0.0.0.0", "--port", str(port)],
        env=env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "MMR_OPERATOR_TOKEN" in lines[0] and "0.0.0.0" in lines[0], done.stderr
    assert not answers(f"http://127.0.0.1:{port}/metrics")


def test_serve_on_every_interface_with_an_operator_token_guards_metrics_and_docs() -> None:
    with serving("--host", "0.0.0.0", MMR_OPERATOR_TOKEN=OPERATOR) as port:
        base = f"http://127.0.0.1:{port}"
        for path in ("/metrics", "/docs", "/openapi.json"):
            assert httpx.get(base + path, timeout=5).status_code == 401, path
            granted = httpx.get(base + path, headers={"Authorization": f"Bearer {OPERATOR}"}, timeout=5)
            assert granted.status_code == 200, path


def test_serve_listens_on_loopback_by_default() -> None:
    with serving() as port:
        assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 200  # open, on loopback
        other = this_hosts_other_address()
        if other is not None:  # a machine with only loopback has nothing more to show
            assert not answers(f"http://{other}:{port}/metrics")
