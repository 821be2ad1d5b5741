"""beat keeps its schedule in the state directory (``MMR_STATE_DIR``), never in a fixed /tmp path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import redis

from adapter.config import load_settings
from tests.support.stack import REDIS_URL, adapter_env, spawn, stop, unique, wait_for


def test_the_state_directory_defaults_to_the_users_xdg_state_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MMR_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", "/srv/state")
    assert load_settings().state_dir == Path("/srv/state/mmr-adapter")
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", "/home/someone")
    assert load_settings().state_dir == Path("/home/someone/.local/state/mmr-adapter")
    monkeypatch.setenv("MMR_STATE_DIR", "/var/lib/mmr")
    assert load_settings().state_dir == Path("/var/lib/mmr")


def test_beat_keeps_its_schedule_in_the_state_directory(tmp_path: Path) -> None:
    state_dir = tmp_path / "state" / "mmr"  # missing: beat makes it
    queue = unique("mmr-beat")
    env = adapter_env("http://127.0.0.1:9/fhir", queue, "http://127.0.0.1:8000", MMR_STATE_DIR=str(state_dir))
    beat = spawn(f"beat-{queue}", ["beat"], env)
    try:
        wait_for(
            lambda: beat.poll() is None and [p.name for p in state_dir.glob("beat-schedule*")],
            timeout=30,
            what="beat's schedule in MMR_STATE_DIR",
        )
        assert state_dir.stat().st_mode & 0o777 == 0o700  # the user's own
    finally:
        stop(beat)
        with redis.Redis.from_url(REDIS_URL) as client:  # what beat queued for a worker it never had
            client.delete(*client.keys(f"*{queue}*") or [queue])


def test_beat_names_the_setting_when_it_cannot_make_the_state_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = adapter_env("http://127.0.0.1:9/fhir", unique("mmr-beat"), "http://127.0.0.1:8000")
    env["MMR_STATE_DIR"] = str(blocker / "state")
    done = subprocess.run(
        [sys.executable, "-m", "adapter.cli", "beat"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and "MMR_STATE_DIR" in done.stderr
