"""The flow store at scale: a full rebuild and a day's incremental refresh over N referrals' journeys.

Generates the fixed journeys of ``tests/support/journeys.py`` (what the real routine writes, every
Task version, the units' bookings, moves, cancellations, rejections, forwarding) on ``--weeks``
different clocks, then clones each set with fresh ids until N referrals, and writes them to a fresh
FHIR server version by version (the same transaction index of many journeys in one FHIR
transaction, so every resource's versions keep their order). Then, each in its own process, what
``adapter.operations.flow.refresh`` does: a rebuild, and after a day's changes (a new version of
one Task in 1 % of the journeys) a refresh; each reports its seconds, the rows it loaded and its
peak memory. The refresh runs without the production overlap (it reads again the five minutes
before its checkpoint, and everything here was written within five minutes). A benchmark, not a test.

Run: ``python bench/flow.py [--referrals 10000] [--fhir sandbox|hapi]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from adapter.dev.sandbox import start_sandbox
from adapter.fhir.client import FhirClient
from tests.support.journeys import install_directory, journeys, puts

CHILD = """
import json, sys, time
from datetime import date
from adapter.config import load_settings
from datetime import timedelta
from adapter.flow import store
from adapter.wiring import fhir_client
settings = load_settings()
started = time.perf_counter()
con = store.open_store(settings.flow_path)
with fhir_client(settings, fresh=True) as client:
    if sys.argv[1] == "rebuild":
        result = store.rebuild(con, client, date(2026, 12, 7))
    else:  # no overlap: everything here was written within the production overlap's five minutes
        result = store.refresh(con, client, date(2026, 12, 7), overlap=timedelta(0))
con.close()
# VmHWM, not ru_maxrss: that one keeps the forking parent's peak across exec
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"seconds": time.perf_counter() - started, "rebuilt": result.rebuilt, "loaded": result.loaded,
                  "peak_mb": peak / 1024}))
"""


def generated(referrals: int, weeks: int) -> list[list[list[dict[str, Any]]]]:
    """Each journey as its transactions (lists of resources), cloned from ``weeks`` template sets."""
    templates = [(f"tpl{w:03d}x", journeys(f"tpl{w:03d}x", timedelta(weeks=w))) for w in range(weeks)]
    per_set = len(templates[0][1])
    out: list[list[list[dict[str, Any]]]] = []
    copy = 0
    while len(out) < referrals:
        prefix, found = templates[copy % weeks]
        text = json.dumps([[tx.resources for tx in j.transactions] for j in found])
        clone = json.loads(text.replace(f"{prefix}-", f"b{copy:05d}x-"))
        out += clone[: referrals - len(out)]
        copy += 1
    assert per_set
    return out


def write(fhir: FhirClient, all_journeys: list[list[list[dict[str, Any]]]], batch: int) -> int:
    """Transaction i of ``batch`` journeys at a time in one FHIR transaction, i in order."""
    sent = 0
    for start in range(0, len(all_journeys), batch):
        group = all_journeys[start : start + batch]
        for i in range(max(len(j) for j in group)):
            resources = [r for j in group if i < len(j) for r in j[i]]
            fhir.transaction(puts(fhir.base_url, resources))
            sent += len(resources)
    return sent


def a_days_changes(fhir: FhirClient, all_journeys: list[list[list[dict[str, Any]]]]) -> int:
    """A new version of the last Task written in every hundredth journey (a unit's edit)."""
    changed = 0
    for j in all_journeys[::100]:
        task = next((r for tx in reversed(j) for r in tx if r["resourceType"] == "Task"), None)
        if task is not None:
            fhir.update({**task, "lastModified": "2026-12-07T08:00:00+01:00"})
            changed += 1
    return changed


def run_child(mode: str, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", CHILD, mode], env=env, capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--referrals", type=int, default=10_000)
    parser.add_argument("--weeks", type=int, default=10, help="template sets, each on its own clock")
    parser.add_argument("--batch", type=int, default=50, help="journeys per FHIR transaction")
    parser.add_argument("--fhir", choices=("sandbox", "hapi"), default="sandbox")
    args = parser.parse_args()

    if args.fhir == "hapi":
        from adapter.dev.hapi import start_hapi

        server: Any = start_hapi()
    else:
        server = start_sandbox(0)
    try:
        with FhirClient(server.base_url, retries=2, timeout=120, headers={"Cache-Control": "no-cache"}) as fhir:
            t = time.perf_counter()
            made = generated(args.referrals, args.weeks)
            generate_s = time.perf_counter() - t
            install_directory(fhir)
            t = time.perf_counter()
            versions = write(fhir, made, args.batch)
            write_s = time.perf_counter() - t
            with tempfile.TemporaryDirectory() as work:
                env = {
                    **os.environ,
                    "MMR_FHIR_BASE_URL": server.base_url,
                    "MMR_FLOW_DB": str(Path(work) / "flow.duckdb"),
                    "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
                }
                rebuild = run_child("rebuild", env)
                changed = a_days_changes(fhir, made)
                refresh = run_child("refresh", env)
    finally:
        server.stop()

    print(f"| flow store, {args.referrals} referrals on the {args.fhir} | figure |")
    print("|---|---|")
    print(f"| journeys generated (routine, then cloned) | {generate_s:.1f} s |")
    print(f"| resource versions written | {versions} in {write_s:.0f} s |")
    print(f"| rebuild | {rebuild['seconds']:.1f} s, peak {rebuild['peak_mb']:.0f} MB |")
    print(f"| rows loaded by the rebuild | {json.dumps(rebuild['loaded'])} |")
    day = f"{refresh['seconds']:.1f} s, peak {refresh['peak_mb']:.0f} MB"
    print(f"| refresh after a day's changes ({changed} Tasks) | {day} |")
    print(f"| rows loaded by the refresh | {json.dumps(refresh['loaded'])} |")


if __name__ == "__main__":
    main()
