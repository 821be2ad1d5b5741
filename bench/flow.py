"""The flow store at scale: a full rebuild and a day's incremental refresh over N referrals' journeys.

Generates the fixed journeys of ``tests/support/journeys.py`` (what the real routine writes, every
Task version, the units' bookings, moves, cancellations, rejections, forwarding) on ``--weeks``
different clocks, then clones each set with fresh ids until N referrals, and writes them to a fresh
FHIR server version by version (the same transaction index of many journeys in one FHIR
transaction, so every resource's versions keep their order). Then, each in its own process, what
``adapter.operations.flow.refresh`` does: a rebuild, and after a day's changes (a new version of
one Task in 1 % of the journeys) a refresh; each reports its seconds, the rows it loaded and its
peak memory. The refresh runs without the production overlap (it reads again the five minutes
before its checkpoint, and everything here was written within five minutes). Then the report from
the warm store, as ``mmr-adapter flow --format html`` makes it (``figures.compute`` and the page),
in a fresh process. Last, the MMR views' rows per second on the first ``--view-referrals`` journeys'
resources, the runner as it is beside plain fhirpathpy on the same paths (``bench/views.py``'s
mechanism; fhirpathpy alone would take minutes on all of them). A benchmark, not a test.

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
from datetime import date, datetime
from adapter.config import load_settings
from datetime import timedelta
from adapter.flow import store
from adapter.wiring import fhir_client
settings = load_settings()
started = time.perf_counter()
out = {}
if sys.argv[1] == "report":  # what `mmr-adapter flow --format html` does after its checks
    import duckdb
    from adapter.flow import figures, page
    from adapter.workflow.calendar import STOCKHOLM
    con = duckdb.connect(str(settings.flow_path), read_only=True)
    found = figures.compute(con, datetime(2026, 12, 7, tzinfo=STOCKHOLM), date(2026, 1, 1), date(2026, 11, 30))
    con.close()
    computed = time.perf_counter()
    html = page.render(found)
    out = {"compute_s": computed - started, "render_s": time.perf_counter() - computed, "bytes": len(html),
           "decided": found["region"]["reviews_decided"], "first_visits": found["region"]["first_visits"]}
else:
    con = store.open_store(settings.flow_path)
    with fhir_client(settings) as client:  # as operations.flow.refresh: no-store would make HAPI answer one page
        if sys.argv[1] == "rebuild":
            result = store.rebuild(con, client, date(2026, 12, 7))
        else:  # no overlap: everything here was written within the production overlap's five minutes
            result = store.refresh(con, client, date(2026, 12, 7), overlap=timedelta(0))
    con.close()
    out = {"rebuilt": result.rebuilt, "loaded": result.loaded}
# VmHWM, not ru_maxrss: that one keeps the forking parent's peak across exec
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
seconds, cpu = time.perf_counter() - started, time.process_time()  # CPU since the start, imports included
print(json.dumps({"seconds": seconds, "cpu_s": cpu, "peak_mb": peak / 1024, **out}))
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
    """Transaction i of ``batch`` journeys at a time in one FHIR transaction, i in order; a resource two of
    them write (a patient referred twice) starts the next transaction: HAPI refuses one that holds a
    resource twice (HAPI-0535), and the second version must follow the first."""
    sent = 0
    for start in range(0, len(all_journeys), batch):
        group = all_journeys[start : start + batch]
        for i in range(max(len(j) for j in group)):
            bundle: dict[str, dict[str, Any]] = {}
            for r in [r for j in group if i < len(j) for r in j[i]]:
                key = f"{r['resourceType']}/{r['id']}"
                if key in bundle:
                    sent += send(fhir, list(bundle.values()))
                    bundle = {}
                bundle[key] = r
            sent += send(fhir, list(bundle.values()))
    return sent


def send(fhir: FhirClient, resources: list[dict[str, Any]]) -> int:
    fhir.transaction(puts(fhir.base_url, resources))
    return len(resources)


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
    """``mode`` in a fresh process; its figures, and ``wall_s``: the process's whole life, imports included."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD, mode], env=env, capture_output=True, text=True, check=True)
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "wall_s": time.perf_counter() - started}


def versions_as_stored(all_journeys: list[list[list[dict[str, Any]]]]) -> dict[str, list[dict[str, Any]]]:
    """Per resource type, every version the journeys wrote (numbered as a server numbers them) and the current
    ones: what the store's views read (``Task/_history`` for the Task versions, a search for the rest)."""
    every: list[dict[str, Any]] = []
    numbers: dict[str, int] = {}
    for journey in all_journeys:
        for tx in journey:
            for r in tx:
                key = f"{r['resourceType']}/{r['id']}"
                numbers[key] = numbers.get(key, 0) + 1
                every.append({**r, "meta": {"versionId": str(numbers[key]), "lastUpdated": "2026-12-07T08:00:00Z"}})
    latest = {f"{r['resourceType']}/{r['id']}": r for r in every}
    return {"every": every, "current": list(latest.values())}


def view_rates(all_journeys: list[list[list[dict[str, Any]]]], repeat: int) -> list[str]:
    """The MMR views' rows per second, the runner as it is beside plain fhirpathpy (same rows, or it stops)."""
    from views import plain, timed  # bench/views.py: the engine swap and the clock

    from adapter.flow import store, viewdef

    data = versions_as_stored(all_journeys)
    out = []
    for table, (_, resource_type, _) in store.VIEWS.items():
        every_or_current = data["every" if table == "mmr_task_version" else "current"]
        resources = [r for r in every_or_current if r["resourceType"] == resource_type]
        view = store.view(table)
        if not resources:
            continue  # the directory's views: installed by setup, not by journeys
        runs = {
            name: timed(lambda view=view, resources=resources: list(view.rows(resources)), repeat, nodes)
            for name, nodes in {"compiled": viewdef.nodes, "plain": plain}.items()
        }
        (fast, rows), (slow, same) = runs["compiled"], runs["plain"]
        if json.dumps(rows, sort_keys=True, default=str) != json.dumps(same, sort_keys=True, default=str):
            raise SystemExit(f"{table}: the compiled and the plain runs give different rows")
        out.append(
            f"| {table} | {len(rows)} | {len(rows) / fast:,.0f} | {len(rows) / slow:,.0f} | {slow / fast:.0f}x |"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--referrals", type=int, default=10_000)
    parser.add_argument("--weeks", type=int, default=10, help="template sets, each on its own clock")
    parser.add_argument("--batch", type=int, default=50, help="journeys per FHIR transaction")
    parser.add_argument("--fhir", choices=("sandbox", "hapi"), default="sandbox")
    parser.add_argument("--hapi-heap", default="2g", help="the HAPI fixture's -Xmx: H2 in memory holds every version")
    parser.add_argument("--view-referrals", type=int, default=200, help="journeys the views' rows/s are timed on")
    parser.add_argument("--repeat", type=int, default=3, help="runs per view and engine, the median counts")
    args = parser.parse_args()

    if args.fhir == "hapi":
        from stack import LOGS

        from adapter.dev import hapi

        LOGS.mkdir(parents=True, exist_ok=True)
        hapi.HEAP = args.hapi_heap  # the fixture's 768m is sized for the tests' few resources
        server: Any = hapi.start_hapi(log_path=LOGS / "hapi-flow.log")
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
                if rebuild["loaded"]["mmr_referral"] != len(made):  # a figure over lost data means nothing
                    raise SystemExit(f"the rebuild read {rebuild['loaded']['mmr_referral']} of {len(made)} referrals")
                changed = a_days_changes(fhir, made)
                refresh = run_child("refresh", env)
                report = run_child("report", env)
    finally:
        server.stop()

    print(f"| flow store, {args.referrals} referrals on the {args.fhir} | figure |")
    print("|---|---|")
    print(f"| journeys generated (routine, then cloned) | {generate_s:.1f} s |")
    print(f"| resource versions written | {versions} in {write_s:.0f} s |")
    print(f"| rebuild | {rebuild['seconds']:.1f} s ({rebuild['cpu_s']:.1f} s CPU), peak {rebuild['peak_mb']:.0f} MB |")
    print(f"| rows loaded by the rebuild | {json.dumps(rebuild['loaded'])} |")
    day = f"{refresh['seconds']:.1f} s ({refresh['cpu_s']:.1f} s CPU), peak {refresh['peak_mb']:.0f} MB"
    print(f"| refresh after a day's changes ({changed} Tasks) | {day} |")
    print(f"| rows loaded by the refresh | {json.dumps(refresh['loaded'])} |")
    made_s = f"figures {report['compute_s']:.2f} s + page {report['render_s']:.2f} s"
    print(f"| report from the warm store (html, Jan-Nov) | {made_s}; {report['wall_s']:.1f} s with its process |")
    print(f"| report's region: reviews decided, first visits | {report['decided']}, {report['first_visits']} |")
    print()
    print(f"MMR views on {args.view_referrals} of the journeys (median of {args.repeat} runs)")
    print()
    print("| view | rows | runner (compiled) rows/s | plain fhirpathpy rows/s | ratio |")
    print("|---|---:|---:|---:|---:|")
    for line in view_rates(made[: args.view_referrals], args.repeat):
        print(line)


if __name__ == "__main__":
    main()
