"""``mmr-adapter sandbox`` stopped by SIGTERM (a supervisor, ``kill``) or SIGINT (Ctrl-C) leaves
nothing behind: no server still answering on its port, no process, no files.

A real ``python -m adapter.cli sandbox`` process; its temporary directory (the sandbox's
database) goes under a TMPDIR of the test's own, so what is left there is what it left.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from adapter.dev.sandbox import free_port
from tests.support.stack import wait_for


def children(pid: int) -> set[int]:
    """Every descendant of ``pid``, read from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended while we looked
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def running(pid: int) -> bool:
    """Alive and not a zombie (a zombie serves nothing; only its parent's wait removes it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_the_sandbox_ends_its_server_and_removes_its_files_on_a_signal(tmp_path: Path, sig: int) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    port = free_port()
    metadata = f"http://127.0.0.1:{port}/fhir/metadata"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMR_")} | {"TMPDIR": str(tmp)}
    sandbox = subprocess.Popen(
        [sys.executable, "-m", "adapter.cli", "sandbox", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # the signal reaches this process only, as from `kill <pid>`
    )
    try:
        wait_for(lambda: sandbox.poll() is None and answers(metadata), timeout=30, what="the sandbox to answer")
        servers = children(sandbox.pid)
        assert servers and any(tmp.iterdir())  # a server child, and its files under our TMPDIR
        sandbox.send_signal(sig)
        assert sandbox.wait(timeout=30) == 0
        assert not answers(metadata)
        assert not [pid for pid in servers if running(pid)]
        assert not list(tmp.iterdir()), list(tmp.iterdir())
    finally:
        with contextlib.suppress(ProcessLookupError):  # whatever is left of its group, should the test fail
            os.killpg(sandbox.pid, signal.SIGKILL)
        sandbox.wait()
