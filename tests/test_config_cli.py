"""Start-up refuses a missing or malformed setting with one line naming it; every command has --help."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from adapter.config import ConfigError, load_settings

COMMANDS = ["serve", "worker", "beat", "setup", "sandbox", "demo", "dlq", "dlq list", "dlq replay", "fire-timers",
            "status", "validate", "profiles-doc", "profiles-build", "ping-worker", "check-scheduler"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MMR_")}
    return subprocess.run([sys.executable, "-m", "adapter.cli", *args], env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("env", "named"), [
    ({}, "MMR_FHIR_BASE_URL"),
    ({"MMR_FHIR_BASE_URL": "not a url", "MMR_WEBHOOK_TOKEN": "x" * 20}, "MMR_FHIR_BASE_URL"),
    ({"MMR_FHIR_BASE_URL": "http://fhir/fhir"}, "MMR_WEBHOOK_TOKEN"),
    ({"MMR_FHIR_BASE_URL": "http://fhir/fhir", "MMR_WEBHOOK_TOKEN": "short"}, "MMR_WEBHOOK_TOKEN"),
    ({"MMR_FHIR_BASE_URL": "http://fhir/fhir", "MMR_WEBHOOK_TOKEN": "x" * 20, "MMR_FHIR_TIMEOUT": "soon"},
     "MMR_FHIR_TIMEOUT"),
    ({"MMR_FHIR_BASE_URL": "http://fhir/fhir", "MMR_WEBHOOK_TOKEN": "x" * 20, "MMR_FHIR_AUTH": "bearer"},
     "MMR_FHIR_TOKEN"),
    ({"MMR_FHIR_BASE_URL": "http://fhir/fhir", "MMR_WEBHOOK_TOKEN": "x" * 20,
      "MMR_FHIR_AUTH": "client-credentials"}, "MMR_OAUTH_TOKEN_URL"),
])
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


def test_the_readme_documents_every_setting() -> None:
    from pathlib import Path

    from adapter.config import Settings

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for name in Settings.model_fields:
        assert f"`MMR_{name.upper()}`" in readme, name
