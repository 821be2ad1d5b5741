"""``mmr-adapter demo`` as a newcomer runs it: the whole journey, and never in someone else's Redis."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from tests.support.stack import REDIS_URL, PrivateRedis

pytestmark = pytest.mark.e2e

JOURNEY = (
    "referral REM-2026-0001",
    "Task referral-review: completed / Remiss vidareskickad",
    "Task booking: completed / Bokad",
    "Task mmrpv-intake: completed / Epikris skickad",
    "Task follow-up: draft / Uppföljning planerad",
    "demo done",
)


def run_demo(*args: str, **env_extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMR_")}
    env.update({"COLUMNS": "200", **env_extra})
    return subprocess.run(
        [sys.executable, "-m", "adapter.cli", "demo", *args], env=env, capture_output=True, text=True, timeout=180
    )


def keyspace(url: str) -> dict[int, set[bytes]]:
    """Every key of every database of the Redis at ``url``."""
    client = redis.Redis.from_url(url)
    try:
        dbs = [int(name[2:]) for name in client.info("keyspace")]
        return {db: set(redis.Redis.from_url(url.rsplit("/", 1)[0] + f"/{db}").keys()) for db in dbs}
    finally:
        client.close()


def test_demo_starts_a_redis_of_its_own_and_leaves_a_foreign_one_untouched(tmp_path: Path) -> None:
    """A Redis the demo did not start, named where it used to look (MMR_REDIS_URL, before the
    local 6379): not one key written, read or left behind there; its own is gone afterwards."""
    foreign = PrivateRedis(tmp_path)
    try:
        redis.Redis.from_url(foreign.url).set("canary", "someone else's")
        before = keyspace(foreign.url)
        done = run_demo(MMR_REDIS_URL=foreign.url)
        assert done.returncode == 0, done.stdout + done.stderr
        assert keyspace(foreign.url) == before == {0: {b"canary"}}
        own = re.search(r"redis-server of its own at (redis://127\.0\.0\.1:(\d+)/0)", done.stdout)
        assert own and own[2] != str(foreign.port), done.stdout
        with pytest.raises(redis.exceptions.ConnectionError):
            redis.Redis.from_url(own[1], socket_connect_timeout=1).ping()  # removed when the demo ended
        for step in JOURNEY:
            assert step in done.stdout, done.stdout
    finally:
        foreign.stop()


def test_demo_uses_the_redis_it_is_told_to_use() -> None:
    url = REDIS_URL.rsplit("/", 1)[0] + "/10"  # its own database: the demo's timers stay out of the tests'
    client = redis.Redis.from_url(url)
    try:
        done = run_demo("--redis-url", url)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"Redis at {url}, as asked" in done.stdout
        assert client.dbsize() > 0  # the real path wrote there, as asked
        for step in JOURNEY:
            assert step in done.stdout, done.stdout
    finally:
        client.flushdb()
        client.close()


def test_demo_runs_in_process_without_redis_server(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"  # a PATH with everything but redis-server
    bin_dir.mkdir()
    for folder in os.environ["PATH"].split(os.pathsep):
        for tool in Path(folder).glob("*") if Path(folder).is_dir() else ():
            if tool.name != "redis-server" and not (bin_dir / tool.name).exists():
                (bin_dir / tool.name).symlink_to(tool)
    assert shutil.which("redis-server", path=str(bin_dir)) is None
    done = run_demo(PATH=str(bin_dir))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "redis-server is not installed: an in-process broker" in done.stdout
    for step in JOURNEY:
        assert step in done.stdout, done.stdout


def test_demo_told_to_use_a_redis_that_does_not_answer_says_so_and_starts_nothing() -> None:
    done = run_demo("--redis-url", "redis://127.0.0.1:1/0")  # nothing listens on port 1
    assert done.returncode == 2, done.stdout + done.stderr
    assert "No Redis answers at redis://127.0.0.1:1/0 (--redis-url)." in done.stdout
    assert "stack up" not in done.stdout
