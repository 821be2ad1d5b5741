"""``mmr-adapter demo`` as a newcomer runs it: the whole journey, with Redis and without."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import redis

from tests.support.stack import REDIS_URL

pytestmark = pytest.mark.e2e

JOURNEY = (
    "referral REM-2026-0001",
    "Task referral-review: completed / Remiss vidareskickad",
    "Task booking: completed / Bokad",
    "Task mmrpv-intake: completed / Epikris skickad",
    "Task follow-up: draft / Uppföljning planerad",
    "demo done",
)


def run_demo(redis_url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMR_")}
    env.update({"MMR_REDIS_URL": redis_url, "COLUMNS": "200"})
    return subprocess.run(
        [sys.executable, "-m", "adapter.cli", "demo"], env=env, capture_output=True, text=True, timeout=180
    )


def test_demo_takes_the_real_path_when_redis_answers() -> None:
    url = REDIS_URL.rsplit("/", 1)[0] + "/10"  # its own database: the demo's timers stay out of the tests'
    client = redis.Redis.from_url(url)
    try:
        done = run_demo(url)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "the real path" in done.stdout
        for step in JOURNEY:
            assert step in done.stdout, done.stdout
    finally:
        client.flushdb()
        client.close()


def test_demo_falls_back_to_an_in_process_broker_without_redis() -> None:
    done = run_demo("redis://127.0.0.1:1/0")  # nothing listens on port 1
    assert done.returncode == 0, done.stdout + done.stderr
    assert "falling back to an in-process broker" in done.stdout
    for step in JOURNEY:
        assert step in done.stdout, done.stdout
