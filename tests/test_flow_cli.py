"""``mmr-adapter flow`` and beat's flow jobs over a real FHIR server: the whole shell, end to end.

The journeys of ``tests/support/journeys.py`` (the routine's own writes, version by version, on a
test clock in March-April 2026) on a sandbox of this module's own, so the store holds them and
nothing else; the figures themselves are checked by hand in ``test_flow_figures.py`` and
``test_flow_e2e.py``. Here: the command rebuilds, refreshes, prints every format, writes the page,
publishes the MeasureReports once, and beat's jobs read the same store the same way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import pytest
import redis

from adapter.config import Settings
from adapter.dev.sandbox import Sandbox, free_port, start_sandbox
from adapter.fhir.client import FhirClient
from adapter.flow import gauges, store
from adapter.pipeline import flow_job, monthly_reports
from adapter.pipeline.state import State
from adapter.workflow.calendar import STOCKHOLM
from tests.support import journeys
from tests.support.stack import REDIS_URL


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Sandbox, list[journeys.Journey]]]:
    sandbox = start_sandbox(0)
    try:
        with FhirClient(sandbox.base_url) as fhir:
            journeys.install_directory(fhir)
            made = journeys.journeys()
            journeys.write(fhir, made)
        yield sandbox, made
    finally:
        sandbox.stop()


def flow(server: Sandbox, state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMR_")}
    env |= {"MMR_STATE_DIR": str(state), "MMR_FHIR_BASE_URL": server.base_url}
    return subprocess.run(
        [sys.executable, "-m", "adapter.cli", "flow", *args], env=env, capture_output=True, text=True, timeout=120
    )


def key(made: list[journeys.Journey], name: str) -> str:
    return journeys.by_name(made, name).key


def test_rebuild_then_every_format_from_the_same_store(
    server: tuple[Sandbox, list[journeys.Journey]], tmp_path: Path
) -> None:
    sandbox, made = server
    rebuilt = flow(sandbox, tmp_path, "--rebuild", "--at", "2026-04-01", "--format", "json")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert rebuilt.stderr.startswith("flow store rebuilt: ")
    figures = json.loads(rebuilt.stdout)
    assert (figures["from"], figures["to"]) == ("2026-03-01", "2026-03-31")
    assert figures["nobody_responsible"] == [key(made, "nobody")]  # and said on stderr, loudly
    assert f"NOBODY IS RESPONSIBLE for 1 referral(s): {key(made, 'nobody')}" in rebuilt.stderr
    assert figures["region"]["reviews_decided"] > 0

    again = flow(sandbox, tmp_path, "--at", "2026-04-01", "--format", "json")  # the store as it stands
    assert again.returncode == 0 and json.loads(again.stdout) == figures

    page = tmp_path / "flow.html"
    html = flow(sandbox, tmp_path, "--at", "2026-04-01", "--format", "html", "--output", str(page))
    assert html.returncode == 0, html.stderr
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "<svg" in text and key(made, "nobody") in text

    table = flow(sandbox, tmp_path, "--at", "2026-04-01")
    assert table.returncode == 0 and "Smärtrehabilitering SUS Lund" in table.stdout

    chain = flow(sandbox, tmp_path, "--at", "2026-05-01", "--referral", key(made, "pv"), "--format", "json")
    assert chain.returncode == 0, chain.stderr
    assert [link["organization"] for link in json.loads(chain.stdout)][:2] == [
        "SE2321000255-SML1",
        "SE2321000255-MMRPV",
    ]  # Lund reviewed it, then the MMRpv unit took it


def test_refresh_says_it_refreshed_the_store_it_rebuilt(
    server: tuple[Sandbox, list[journeys.Journey]], tmp_path: Path
) -> None:
    sandbox = server[0]
    assert flow(sandbox, tmp_path, "--rebuild", "--at", "2026-04-01", "--format", "json").returncode == 0
    refreshed = flow(sandbox, tmp_path, "--refresh", "--at", "2026-04-01", "--format", "json")
    assert refreshed.returncode == 0, refreshed.stderr
    assert refreshed.stderr.startswith("flow store refreshed: ")


def test_a_store_being_written_is_one_line_and_exit_1(
    server: tuple[Sandbox, list[journeys.Journey]], tmp_path: Path
) -> None:
    sandbox = server[0]
    assert flow(sandbox, tmp_path, "--rebuild", "--at", "2026-04-01", "--format", "json").returncode == 0
    writer = store.open_store(tmp_path / "flow.duckdb")  # as a refresh holds it, in another process
    try:
        busy = flow(sandbox, tmp_path, "--at", "2026-04-01")
    finally:
        writer.close()
    assert busy.returncode == 1 and busy.stdout == ""
    assert busy.stderr.startswith(
        f"cannot read the flow store {tmp_path / 'flow.duckdb'} (a refresh may be writing it): "
    )
    assert len(busy.stderr.strip().splitlines()) == 1


def test_publish_writes_the_months_reports_once(server: tuple[Sandbox, list[journeys.Journey]], tmp_path: Path) -> None:
    sandbox = server[0]
    first = flow(sandbox, tmp_path, "--rebuild", "--from", "2026-03-01", "--to", "2026-03-31", "--publish")
    assert first.returncode == 0, first.stderr
    created = int(first.stderr.split("MeasureReports 2026-03-01..2026-03-31: ")[1].split(" created")[0])
    assert created > 0
    second = flow(sandbox, tmp_path, "--from", "2026-03-01", "--to", "2026-03-31", "--publish", "--format", "json")
    assert "MeasureReports 2026-03-01..2026-03-31: 0 created, 0 updated, " in second.stderr
    with FhirClient(sandbox.base_url) as fhir:
        assert monthly_reports.published(fhir, (date(2026, 3, 1), date(2026, 3, 31)))
        # beat's look on 1 April (a working day): March is there, nothing to do
        settings = Settings(fhir_base_url=sandbox.base_url, state_dir=tmp_path)
        assert monthly_reports.publish_if_due(settings, date(2026, 4, 1), fhir) is None
        # and for April, on 4 May (1 May off, then a weekend): refreshed, computed, published
        done = monthly_reports.publish_if_due(settings, date(2026, 5, 4), fhir)
        assert done is not None and done.written > 0
        assert monthly_reports.published(fhir, (date(2026, 4, 1), date(2026, 4, 30)))
    assert flow(sandbox, tmp_path, "--clinic", "SE2321000255-SML1", "--publish").returncode == 2


def test_beats_flow_job_keeps_the_gauges_of_the_store(
    server: tuple[Sandbox, list[journeys.Journey]], tmp_path: Path
) -> None:
    sandbox = server[0]
    state = State(redis.Redis.from_url(REDIS_URL, decode_responses=True))
    settings = Settings(fhir_base_url=sandbox.base_url, state_dir=tmp_path)
    at = datetime(2026, 4, 1, 0, 0, tzinfo=STOCKHOLM)
    try:
        count = flow_job.run(settings, state, at)
        kept = state.flow.rows()
        assert count == len(kept) > 0
        assert [value for name, _, value in kept if name == gauges.NOBODY] == [1.0]  # the owner removed by hand
    finally:
        state.flow.set([])


def test_a_server_that_does_not_answer_is_one_line_and_exit_1(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMR_")}
    env |= {
        "MMR_STATE_DIR": str(tmp_path),
        "MMR_FHIR_BASE_URL": f"http://127.0.0.1:{free_port()}/fhir",  # nothing listens there
        "MMR_FHIR_RETRIES": "0",
    }
    result = subprocess.run(
        [sys.executable, "-m", "adapter.cli", "flow", "--rebuild"], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("the FHIR server: GET ") and len(result.stderr.strip().splitlines()) == 1
