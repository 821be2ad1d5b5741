"""A redis-server of one's own, for the tests and the benchmarks: started, awaited, stopped.

No side effect on import (``tests.support.stack`` fixes the session's environment when imported, so
``bench/`` cannot use that); one argument list, so the test session's Redis, a test's restartable
one and the soak's cannot drift apart.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import redis

from adapter.dev.sandbox import free_port
from adapter.polling import poll_or_raise


def answers(url: str) -> bool:
    """True when the server at ``url`` answers a PING."""
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except redis.exceptions.RedisError:
        return False


def usable(url: str) -> bool:
    """True when it serves data: a PING answers while the append-only file still loads, a GET does not."""
    try:
        redis.Redis.from_url(url, socket_connect_timeout=0.5).get("mmr:reconciled-at")
        return True
    except redis.exceptions.RedisError:
        return False


class PrivateRedis:
    """A daemonized redis-server on a free loopback port.

    Without ``folder`` it keeps nothing (the test session's broker); with one it persists to an
    append-only file there, synced ``fsync`` (``always`` or ``everysec``), so a restart keeps the
    queue, as compose runs it.
    """

    def __init__(self, folder: Path | None = None, *, fsync: str = "always", load_timeout: float = 10, db: int = 0):
        self.port, self.folder, self.fsync, self.load_timeout = free_port(), folder, fsync, load_timeout
        self.url = f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> PrivateRedis:
        args = ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port", str(self.port), "--save", ""]
        if self.folder is None:
            args += ["--appendonly", "no"]
        else:
            args += ["--dir", str(self.folder), "--appendonly", "yes", "--appendfsync", self.fsync]
        subprocess.run(
            args,
            check=True,
            capture_output=True,
        )
        poll_or_raise(lambda: usable(self.url), self.load_timeout, what=f"a redis-server on port {self.port}")
        return self

    def stop(self) -> None:
        subprocess.run(["redis-cli", "-p", str(self.port), "shutdown"], capture_output=True, timeout=10)
        poll_or_raise(lambda: not self.answers(), 10, what=f"the redis-server on port {self.port} to stop")

    def answers(self) -> bool:
        return answers(self.url)
