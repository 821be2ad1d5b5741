"""Start-up refuses a missing or malformed setting with one line naming it; every command has --help."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from adapter.config import ConfigError, load_settings
from adapter.pipeline.state import State
from tests.support.stack import REDIS_URL

COMMANDS = [
    "serve",
    "worker",
    "beat",
    "setup",
    "sandbox",
    "demo",
    "dlq",
    "dlq list",
    "dlq replay",
    "fire-timers",
    "status",
    "validate",
    "profiles-doc",
    "profiles-build",
    "ping-worker",
    "check-scheduler",
    "clock",
    "clock set",
    "clock show",
    "clock clear",
    "view",
    "view run",
    "flow",
]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MMR_")}
    return subprocess.run(
        [sys.executable, "-m", "adapter.cli", *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "MMR_FHIR_BASE_URL"),
        ({"MMR_FHIR_BASE_URL": "not a url", "MMR_WEBHOOK_TOKEN": "x" * 20}, "MMR_FHIR_BASE_URL"),
        ({"MMR_FHIR_BASE_URL": "http://fhir/fhir"}, "MMR_WEBHOOK_TOKEN"),
        ({"MMR_FHIR_BASE_URL": "http://fhir/fhir", "MMR_WEBHOOK_TOKEN": "short"}, "MMR_WEBHOOK_TOKEN"),
        (
            {"MMR_FHIR_BASE_URL": "http://fhir/fhir", "MMR_WEBHOOK_TOKEN": "x" * 20, "MMR_FHIR_TIMEOUT": "soon"},
            "MMR_FHIR_TIMEOUT",
        ),
        (
            {"MMR_FHIR_BASE_URL": "http://fhir/fhir", "MMR_WEBHOOK_TOKEN": "x" * 20, "MMR_FHIR_AUTH": "bearer"},
            "MMR_FHIR_TOKEN",
        ),
        (
            {
                "MMR_FHIR_BASE_URL": "http://fhir/fhir",
                "MMR_WEBHOOK_TOKEN": "x" * 20,
                "MMR_FHIR_AUTH": "client-credentials",
            },
            "MMR_OAUTH_TOKEN_URL",
        ),
    ],
)
def test_serve_stops_with_one_line_naming_the_setting(env: dict[str, str], named: str) -> None:
    result = run("serve", env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], result.stderr


def test_settings_default_redis_url() -> None:
    assert load_settings().redis_url.startswith("redis://")
    with pytest.raises(ConfigError, match="MMR_FHIR_BASE_URL"):
        load_settings(require=["fhir_base_url"], fhir_base_url=None)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    result = run(*command.split(), "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout and len(result.stdout.splitlines()) > 3


def test_the_configuration_doc_documents_every_setting() -> None:
    from pathlib import Path

    from adapter.config import Settings

    table = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()
    for name in Settings.model_fields:
        assert f"`MMR_{name.upper()}`" in table, name


def _clock_env(on: bool) -> dict[str, str]:
    # A Redis db of its own: the session's workers read the clock in theirs.
    return {"MMR_REDIS_URL": REDIS_URL.rsplit("/", 1)[0] + "/15", "MMR_TEST_CLOCK": "true" if on else "false"}


def test_the_clock_command_is_refused_unless_the_test_clock_is_on() -> None:
    for args in (("set", "2027-02-08T09:00:00+01:00"), ("show",), ("clear",)):
        result = run("clock", *args, env=_clock_env(False))
        assert result.returncode == 2 and "MMR_TEST_CLOCK=true" in result.stderr, result.stderr
    assert State.from_url(_clock_env(False)["MMR_REDIS_URL"]).clock.frozen() is None


def test_the_clock_is_set_shown_and_cleared_for_every_process() -> None:
    env = _clock_env(True)
    state = State.from_url(env["MMR_REDIS_URL"])
    try:
        assert run("clock", "set", "2027-02-08T09:00:00+01:00", env=env).returncode == 0
        assert state.clock.now(True) == datetime(2027, 2, 8, 8, 0, tzinfo=UTC)  # what a worker reads
        shown = run("clock", "show", env=env)
        assert shown.stdout.strip() == "2027-02-08T09:00:00+01:00 (test clock)"
        assert run("clock", "clear", env=env).returncode == 0
        assert state.clock.frozen() is None and "not set: the real time" in run("clock", "show", env=env).stdout
    finally:
        state.clock.set(None)


@pytest.mark.parametrize(
    ("when", "problem"), [("2027-02-08T09:00:00", "give the offset"), ("next monday", "not an ISO 8601 time")]
)
def test_a_clock_time_that_is_ambiguous_or_no_time_is_refused_in_one_line(when: str, problem: str) -> None:
    result = run("clock", "set", when, env=_clock_env(True))
    assert result.returncode == 2 and problem in result.stderr and len(result.stderr.strip().splitlines()) == 1
