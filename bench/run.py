"""Benchmark the MMR adapter against a FHIR server (the sandbox, or HAPI with --fhir hapi), Redis and real
API and worker processes.

Four phases (see bench/README.md):

1. ``accept``: PUT rest-hook notifications to ``/notify`` at a fixed open-loop rate; latency percentiles.
2. ``e2e``: N new referrals, one notification each, the worker as ``mmr-adapter worker`` runs it; events/s
   until the worker has finished every event, CPU per event of worker, server and API.
3. ``direct``: the same reads and transactions for N other referrals sent straight to the server; the
   ratio of the two rates.
4. ``trips``: FHIR requests per event through a counting proxy: a new referral's first event, the same
   notifications again (redelivery), then a new version no step acts on.

Prints a Markdown table and writes bench/results/latest.json. Everything stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the sibling modules, when run as a script

from load import LoadResult, Request, closed_loop, open_loop
from procstat import CpuMeter, settle, thread_cpu_seconds, thread_cpu_used
from stack import (
    LOGS,
    RESULTS,
    TOKEN,
    BenchError,
    RedisScope,
    adapter_env,
    start_api,
    start_proxy,
    start_worker,
    stop,
    wait_until,
)
from workload import (
    create_referrals,
    install_directory,
    notifications,
    referral_body,
    referral_key,
    review_task_count,
    reviewed_referrals,
    wait_for_reviews,
)

from adapter.dev.hapi import HapiServer, start_hapi
from adapter.dev.sandbox import Sandbox, free_port, start_sandbox
from adapter.fhir.client import FhirClient
from adapter.mappings import load as load_mapping
from adapter.pipeline.runner import Runner, transaction_bundle
from adapter.pipeline.state import State
from adapter.workflow import core
from adapter.workflow.steps import ROUTINE

T = TypeVar("T")
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/fhir+json; charset=UTF-8"}
TARGET_P99_MS = 20.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Benchmark /notify acceptance, end-to-end events/s and FHIR round "
        "trips per event against the sandbox or HAPI (loopback only)."
    )
    p.add_argument("--rate", type=float, default=200.0, help="notifications per second for /notify (default 200)")
    p.add_argument("--seconds", type=float, default=10.0, help="duration of the /notify run (default 10)")
    p.add_argument("--events", type=int, default=200, help="referrals for the end-to-end run (default 200)")
    p.add_argument(
        "--count-events", type=int, default=50, help="referrals for the round-trip count through the proxy (default 50)"
    )
    p.add_argument("--concurrency", type=int, default=64, help="most /notify requests in flight (default 64)")
    p.add_argument(
        "--api-workers",
        type=int,
        default=1,
        help="uvicorn processes of the API (default 1; `mmr-adapter serve --workers`)",
    )
    p.add_argument(
        "--worker-concurrency",
        type=int,
        default=4,
        help="prefork processes of the worker (default 4, as `mmr-adapter worker`)",
    )
    p.add_argument("--deadline", type=float, default=300.0, help="seconds an end-to-end run may take (default 300)")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/12", help="a dedicated Redis db on loopback")
    p.add_argument(
        "--fhir",
        choices=("sandbox", "hapi"),
        default="sandbox",
        help="the FHIR server: the sekmet sandbox, or the HAPI FHIR JPA fixture of hapi/ (default sandbox)",
    )
    p.add_argument(
        "--busy-cores",
        type=int,
        default=0,
        help="processes spinning on the CPU during /notify, a competing load (default 0)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the e2e and direct phases this many times in turn, reporting the last (default 1): "
        "a JVM server is still warming in the first rounds",
    )
    p.add_argument(
        "--pin-server",
        action="store_true",
        help="the FHIR server on core 0, everything else (API, worker, Redis, the bench) on the other "
        "cores, as on separate hosts: whether the adapter keeps up with a server that has its own CPU",
    )
    p.add_argument(
        "--phases", default="accept,e2e,direct,trips", help="comma-separated subset of accept,e2e,direct,trips"
    )
    p.add_argument("--output", default=str(RESULTS / "latest.json"), help="where to write the JSON results")
    args = p.parse_args(argv)
    if not (
        0 < args.rate <= 2000
        and 0 < args.seconds <= 120
        and 0 < args.events <= 5000
        and 0 < args.count_events <= 1000
        and 0 < args.concurrency <= 256
        and 0 < args.api_workers <= 4
        and 0 < args.rounds <= 10
    ):
        p.error(
            "keep the load bounded: rate <= 2000/s, seconds <= 120, events <= 5000, count-events <= 1000, "
            "concurrency <= 256, api-workers <= 4, rounds <= 10"
        )
    return args


# ------------------------------------------------------------------ /notify acceptance


def notify_histogram(api_url: str) -> dict[str, float]:
    """The API's own ``mmr_notify_seconds`` histogram (cumulative buckets, sum, count)."""
    text = httpx.get(f"{api_url}/metrics", timeout=5).text
    out: dict[str, float] = {}
    for m in re.finditer(r'^mmr_notify_seconds_(bucket\{le="([^"]+)"\}|sum|count) (\S+)$', text, re.M):
        out[m.group(2) or m.group(1)] = float(m.group(3))
    return out


def server_side(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """What the handler itself measured (auth, parse, enqueue) for the requests in between."""
    count = after.get("count", 0) - before.get("count", 0)
    if not count:
        return {"count": 0}
    under = {le: round((after[le] - before.get(le, 0)) / count, 4) for le in after if le not in ("sum", "count")}
    return {
        "count": int(count),
        "mean_ms": round((after["sum"] - before.get("sum", 0)) / count * 1000, 2),
        "share_at_or_under_s": under,
    }


def accept_phase(api_url: str, args: argparse.Namespace, meter: CpuMeter) -> dict[str, Any]:
    run = uuid.uuid4().hex[:6]
    total = round(args.rate * args.seconds)
    requests = []
    for i in range(total):  # a referral as HAPI sends it (the resource with its version); nobody consumes these
        sr = {
            **referral_body(f"p-bench-{run}-{i}", f"B-{run}-{i}"),
            "id": f"bench-{run}-{i}",
            "meta": {"versionId": "1"},
        }
        requests.append(Request("PUT", f"{api_url}/notify/ServiceRequest/{sr['id']}", json.dumps(sr).encode()))
    asyncio.run(closed_loop(requests[:20], HEADERS, concurrency=4))  # warm up connections and code paths
    before = notify_histogram(api_url) if args.api_workers == 1 else {}  # one process's histogram per scrape
    meter.start(per_second=True)
    result = asyncio.run(open_loop(requests, args.rate, HEADERS, concurrency=args.concurrency))
    cpu = meter.stop()
    summary = result.summary()
    summary["others_cores_per_second"] = meter.others_per_second  # against p99_ms_per_second
    summary["server_side"] = server_side(before, notify_histogram(api_url)) if before else {"count": 0}
    summary["cpu_seconds"] = cpu
    summary["cpu_ms_per_notification"] = {k: round(v * 1000 / max(result.accepted, 1), 2) for k, v in cpu.items()}
    return summary


# ------------------------------------------------------------------ end to end


def events_done(scope: RedisScope) -> int:
    """Events the worker finished (any outcome), from its counters in Redis."""
    return sum(int(v) for v in scope.client.hgetall("mmr:metrics:events").values())


def enqueue(api_url: str, referrals: list[dict[str, Any]]) -> LoadResult:
    sent = asyncio.run(closed_loop(notifications(api_url, referrals), HEADERS, concurrency=8))
    if sent.errors:
        raise BenchError(f"/notify refused {sent.errors} of {sent.planned} notifications: {dict(sent.statuses)}")
    return sent


def warm_up(fhir: FhirClient, api_url: str, scope: RedisScope, n: int, deadline: float) -> float:
    """Let every worker process handle an event first: a process's first event loads the workflow (slow)."""
    referrals = create_referrals(fhir, n)
    baseline, done_before = review_task_count(fhir), events_done(scope)
    started = time.perf_counter()
    enqueue(api_url, referrals)
    finished = wait_for_reviews(fhir, {sr["id"] for sr in referrals}, baseline, started + deadline)
    wait_until(lambda: events_done(scope) - done_before >= n, 30, "the warm-up events")
    return round(finished - started, 3)


def e2e_run(
    fhir: FhirClient,
    api_url: str,
    scope: RedisScope,
    referrals: list[dict[str, Any]],
    deadline: float,
    meter: CpuMeter | None = None,
    server_pid: int | None = None,
) -> dict[str, Any]:
    """Notify each new referral once, wait until the worker is done with every event, then check
    once that each referral has its review Task. With ``server_pid``, the CPU meter runs on until the
    server has settled: what it does after a write returns (HAPI works on in threads of its own) is the
    events' cost too.

    The wait watches the worker's counters in Redis, not the FHIR server: a count search every
    0.1 s cost HAPI 65 ms of CPU each (3.6 s in 6 s), a third of what it was measured to spend
    per event, and took those cores from the run.
    """
    n = len(referrals)
    done_before = events_done(scope)
    threads = thread_cpu_seconds(server_pid) if server_pid else {}
    if meter:
        meter.start()
    started = time.perf_counter()
    sent = enqueue(api_url, referrals)
    wait_until(lambda: events_done(scope) - done_before >= n, deadline, "the worker to finish the events", 0.02)
    finished = time.perf_counter()
    if meter and server_pid:
        settle(server_pid)
    cpu = meter.stop() if meter else {}
    by_thread = per_thread(threads, server_pid, n) if server_pid else {}
    if missing := {sr["id"] for sr in referrals} - reviewed_referrals(fhir):
        raise BenchError(f"{len(missing)} of {n} referrals have no review Task after their events")
    seconds = finished - started
    return {
        "events": n,
        "seconds": round(seconds, 3),
        "events_per_second": round(n / seconds, 1),
        "enqueue_seconds": round(sent.seconds, 3),
        "cpu_seconds": cpu,
        "cpu_ms_per_event": {k: round(v * 1000 / n, 1) for k, v in cpu.items()},
        "fhir_server_threads_ms_per_event": by_thread,
    }


def per_thread(before: dict[str, float], pid: int, n: int) -> dict[str, float]:
    """The FHIR server's CPU per event by thread group since ``before`` (which of a JVM's threads spent it)."""
    return {k: round(v * 1000 / n, 2) for k, v in thread_cpu_used(before, thread_cpu_seconds(pid)).items()}


def per_event(counts: dict[str, Any], n: int) -> dict[str, Any]:
    kinds: dict[str, int] = counts["kinds"]
    reads = sum(v for k, v in kinds.items() if k in ("read", "search", "search+include", "history/vread"))
    return {
        "events": n,
        "reads_per_event": round(reads / n, 2),
        "batches_per_event": round(kinds.get("batch", 0) / n, 2),
        "searches_in_batches_per_event": round(
            sum(v for k, v in counts["shapes"].items() if k.startswith("batch:")) / n, 2
        ),
        "transactions_per_event": round(kinds.get("transaction", 0) / n, 2),
        "requests_per_event": round(sum(kinds.values()) / n, 2),
        "upstream_ms_per_event": {k: round(v / n, 1) for k, v in counts["upstream_ms"].items()},
        "by_kind": kinds,
        "by_shape": counts["shapes"],
        "statuses": counts["statuses"],
    }


# ------------------------------------------------------------------ orchestration


@contextmanager
def running(start: Callable[[], T], stopper: Callable[[T], None]) -> Iterator[T]:
    thing = start()
    try:
        yield thing
    finally:
        stopper(thing)


@contextmanager
def competing_load(cores: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``cores`` processes that keep a core busy each: what else a shared machine runs."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]
    try:
        yield spinners
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), platform.processor()
    )
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    phases = {p.strip() for p in args.phases.split(",")}
    LOGS.mkdir(parents=True, exist_ok=True)  # the FHIR server's log opens before the first process's
    for old in LOGS.glob("*.log"):
        old.unlink()
    scope = RedisScope(args.redis_url)
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    results: dict[str, Any] = {"machine": machine(), "args": vars(args), "queue": queue}
    port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    with ExitStack() as stack:
        stack.callback(lambda: results.update(redis_keys_deleted=scope.cleanup()))
        start = (lambda: start_hapi(log_path=LOGS / "hapi.out")) if args.fhir == "hapi" else (lambda: start_sandbox(0))
        sandbox: Sandbox | HapiServer = stack.enter_context(running(start, lambda s: s.stop()))
        if args.pin_server:
            pin(sandbox.process.pid, scope.server_pid)
        fhir = stack.enter_context(FhirClient(sandbox.base_url, retries=1))
        install_directory(fhir)
        env = adapter_env(sandbox.base_url, args.redis_url, queue, api_url)
        api = stack.enter_context(running(lambda: start_api(env, port, args.api_workers), stop))
        if "accept" in phases:
            spinners = stack.enter_context(competing_load(args.busy_cores))
            meter = CpuMeter(
                {"api": api.pid},
                {
                    "redis": scope.server_pid,
                    "fhir server": sandbox.process.pid,
                    "load generator": os.getpid(),
                    **{f"competing load {i}": p.pid for i, p in enumerate(spinners)},
                },
            )
            results["accept"] = accept_phase(api_url, args, meter)
            for spinner in spinners:  # before the next phase, whose CPU it would take
                spinner.kill()
                spinner.wait()
            scope.delete(queue)  # nobody consumed it: drop the backlog before a worker starts
        for done in range(args.rounds):  # HAPI's JVM warms for thousands of events: the last round counts
            if "e2e" in phases:
                results["e2e"] = e2e_phase(sandbox, fhir, api_url, scope, env, args, api.pid)
            if "direct" in phases:
                results["direct"] = direct_phase(sandbox, args)
            if args.rounds > 1 and {"e2e", "direct"} & phases:
                results.setdefault("rounds", []).append({k: results[k] for k in ("e2e", "direct") if k in results})
                print(f"round {done + 1} of {args.rounds} done", file=sys.stderr)
        if "trips" in phases:
            results["trips"] = trips_phase(sandbox, fhir, api_url, scope, env, args)
    if (e2e := results.get("e2e")) and (direct := results.get("direct")):
        results["through_adapter_vs_direct"] = round(e2e["events_per_second"] / direct["events_per_second"], 2)
    return results


def pin(server_pid: int, redis_pid: int) -> None:
    """The FHIR server (every thread) on core 0; Redis, this process and what it starts from now on on the rest."""
    cores = os.sched_getaffinity(0)
    if len(cores) < 2 or 0 not in cores:
        raise BenchError("--pin-server needs core 0 and at least one other core")
    rest = ",".join(str(c) for c in sorted(cores - {0}))
    subprocess.run(["taskset", "-a", "-p", "-c", "0", str(server_pid)], check=True, capture_output=True)
    subprocess.run(["taskset", "-a", "-p", "-c", rest, str(redis_pid)], check=True, capture_output=True)
    os.sched_setaffinity(0, cores - {0})


class RecordingClient(FhirClient):
    """A FHIR client that notes every request it sends (method, path, body, headers)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[tuple[str, str, Any, Any]] = []

    def request(
        self, method: str, url: str, *, json: Any = None, headers: Any = None, idempotent: bool = True
    ) -> httpx.Response:
        self.sent.append((method, url, json, headers))
        return super().request(method, url, json=json, headers=headers, idempotent=idempotent)


def direct_phase(server: Sandbox | HapiServer, args: argparse.Namespace) -> dict[str, Any]:
    """The FHIR requests of ``--events`` arrival events, as the worker sends them (its reads, then the
    transaction its plan makes), sent straight to the server by as many clients as the worker has
    processes: what the server sustains for this work without the adapter. The reads and plans are
    made beforehand, untimed, for one set of referrals, and replayed for their twins (the same
    content, another key), so the server reads each referral fresh, as it does for the worker."""
    with RecordingClient(server.base_url, retries=1) as fhir:
        recorded = create_referrals(fhir, args.events, named=True)
        twins = create_referrals(fhir, args.events, named=True)
        options = {"language": "sv", **load_mapping("review")}
        runner = Runner(
            fhir, State.from_url("memory://"), routine=ROUTINE, now=lambda: datetime.now(UTC), options=options
        )
        runner.server_search()  # the CapabilityStatement, once, as a worker process reads it
        jobs = []
        for sr, twin in zip(recorded, twins, strict=True):
            fhir.sent.clear()
            event = core.Event("changed", "ServiceRequest", sr["id"], sr["meta"]["versionId"], sr)  # as notified
            referral = runner.read_referral(sr["id"], event)
            assert referral is not None
            plan = ROUTINE.decide(referral, event, core.Context(now=datetime.now(UTC), options=options))
            if not plan.writes:  # an empty transaction costs the server nothing: the comparison would lie
                raise BenchError(f"the direct phase planned nothing for {sr['id']}: are the steps listed?")
            swap = (referral_key(sr), referral_key(twin))
            jobs.append(
                (
                    [
                        (method, url.replace(*swap), swapped(body, swap), headers)
                        for method, url, body, headers in fhir.sent
                    ],
                    swapped(transaction_bundle(plan, "https://bench.invalid/direct"), swap),
                )
            )
    lanes = [jobs[i :: args.worker_concurrency] for i in range(args.worker_concurrency)]

    def replay(lane: list[tuple[list[tuple[str, str, Any, Any]], dict[str, Any]]]) -> None:
        with FhirClient(server.base_url, retries=1) as client:
            for reads, bundle in lane:
                for method, url, body, headers in reads:
                    client.request(method, url, json=body, headers=headers)
                client.transaction(bundle)

    settle(server.process.pid)
    meter = CpuMeter({}, {"fhir server": server.process.pid, "bench": os.getpid()})
    threads = thread_cpu_seconds(server.process.pid)
    meter.start()
    started = time.perf_counter()
    with ThreadPoolExecutor(len(lanes)) as pool:
        list(pool.map(replay, lanes))
    seconds = time.perf_counter() - started
    settle(server.process.pid)  # its work after the writes is theirs, as in the e2e phase
    cpu = meter.stop()
    by_thread = per_thread(threads, server.process.pid, len(jobs))
    requests = sum(len(reads) + 1 for reads, _ in jobs)
    return {
        "events": len(jobs),
        "clients": len(lanes),
        "seconds": round(seconds, 3),
        "events_per_second": round(len(jobs) / seconds, 1),
        "requests_per_event": round(requests / len(jobs), 2),
        "cpu_seconds": cpu,
        "cpu_ms_per_event": {k: round(v * 1000 / len(jobs), 1) for k, v in cpu.items()},
        "fhir_server_threads_ms_per_event": by_thread,
    }


def swapped(body: Any, swap: tuple[str, str]) -> Any:
    """A request body with one referral's key (in its ids and identifiers) swapped for its twin's."""
    return None if body is None else json.loads(json.dumps(body).replace(*swap))


def e2e_phase(
    sandbox: Sandbox | HapiServer,
    fhir: FhirClient,
    api_url: str,
    scope: RedisScope,
    env: dict[str, str],
    args: argparse.Namespace,
    api_pid: int,
) -> dict[str, Any]:
    with running(lambda: start_worker(env, "worker", args.worker_concurrency), stop) as worker:
        # The referrals first, then the warm-up events, as the direct phase reads before it replays: a
        # JVM server recompiles its read and transaction paths after a burst of creates, and that
        # compiling belongs to whichever phase comes first after the creates, not to the adapter.
        referrals = create_referrals(fhir, args.events)
        warm = 2 * args.worker_concurrency
        cold = warm_up(fhir, api_url, scope, warm, args.deadline)
        meter = CpuMeter(
            {"api": api_pid, "worker": worker.pid},
            {
                "worker main process": worker.pid,
                "fhir server": sandbox.process.pid,
                "redis": scope.server_pid,
                "bench": os.getpid(),
            },
        )
        settle(sandbox.process.pid)  # the server's own work after these writes is not the events'
        run = e2e_run(fhir, api_url, scope, referrals, args.deadline, meter, sandbox.process.pid)
    return {**run, "warm_up_seconds": cold, "warm_up_events": warm}


def trips_phase(
    sandbox: Sandbox | HapiServer,
    fhir: FhirClient,
    api_url: str,
    scope: RedisScope,
    env: dict[str, str],
    args: argparse.Namespace,
) -> dict[str, Any]:
    with running(lambda: start_proxy(sandbox.base_url), lambda p: stop(p[0])) as (_, proxy_base):
        proxied = {**env, "MMR_FHIR_BASE_URL": proxy_base}
        with running(lambda: start_worker(proxied, "worker-proxied", args.worker_concurrency), stop):
            warm_up(fhir, api_url, scope, 2 * args.worker_concurrency, args.deadline)
            control = proxy_base.removesuffix("/fhir") + "/_bench"
            referrals = create_referrals(fhir, args.count_events)
            httpx.post(f"{control}/reset", timeout=5)
            run = e2e_run(fhir, api_url, scope, referrals, args.deadline)
            arrival = {**per_event(proxy_counts(control), len(referrals)), "e2e_through_proxy": run}
            # The same notifications again (HAPI redelivers): the processed-event keys answer, not FHIR.
            again = counted_events(control, api_url, scope, referrals)
            # A new version of each referral that no step acts on: load, decide nothing, write nothing.
            changed = [
                fhir.update({**fhir.read("ServiceRequest", sr["id"]), "note": [{"text": "bench"}]}) for sr in referrals
            ]
            unchanged = counted_events(control, api_url, scope, changed)
    return {**arrival, "redelivered": again, "no_op_update": unchanged}


def proxy_counts(control: str) -> dict[str, Any]:
    time.sleep(0.5)  # let the last responses be counted
    return dict(httpx.get(f"{control}/counts", timeout=5).json())


def counted_events(control: str, api_url: str, scope: RedisScope, resources: list[dict[str, Any]]) -> dict[str, Any]:
    """Notify about ``resources``, wait until the worker finished them all; FHIR requests and outcomes per event."""
    httpx.post(f"{control}/reset", timeout=5)
    before = scope.client.hgetall("mmr:metrics:events")
    enqueue(api_url, resources)
    wait_until(
        lambda: events_done(scope) - sum(int(v) for v in before.values()) >= len(resources),
        60,
        "the worker to finish the events",
    )
    after = scope.client.hgetall("mmr:metrics:events")
    outcomes = {k: int(v) - int(before.get(k, 0)) for k, v in after.items() if int(v) != int(before.get(k, 0))}
    return {**per_event(proxy_counts(control), len(resources)), "outcomes": outcomes}


# ------------------------------------------------------------------ report


def fmt(value: Any, unit: str = "") -> str:
    return "–" if value is None else f"{value}{unit}"


def load_row(cpu: dict[str, float], seconds: float) -> tuple[str, str, str]:
    """How busy the 2 cores were: by our processes, and by anything else running on the machine."""
    ours = cpu.get("machine", 0.0) - cpu.get("others", 0.0)
    return (
        "Cores busy: ours / other processes",
        f"{ours / seconds:.2f} / {cpu.get('others', 0.0) / seconds:.2f}",
        "others ≈ 0 for a clean run",
    )


def table(results: dict[str, Any]) -> str:
    rows = [("Measure", "Value", "Aim")]
    if acc := results.get("accept"):
        lat, side, n = acc["latency_ms"], acc["server_side"], results["args"]["api_workers"]
        rows += [
            (
                "/notify achieved rate (202/s)",
                f"{acc['achieved_rate']} of {results['args']['rate']:g} ({n} API process{'es' if n > 1 else ''})",
                f"{results['args']['rate']:g}/s",
            ),
            (
                "/notify latency p50 / p99 / max",
                f"{lat['p50']} / {lat['p99']} / {lat['max']} ms",
                f"p99 < {TARGET_P99_MS:g} ms",
            ),
            ("/notify errors (non-202)", f"{acc['errors']} of {acc['planned']}", "0"),
            ("/notify handler time, mean (server side)", fmt(side.get("mean_ms"), " ms"), ""),
            ("API CPU per notification", fmt(acc["cpu_ms_per_notification"].get("api"), " ms"), ""),
            load_row(acc["cpu_seconds"], acc["seconds"]),
        ]
        if busy := results["args"].get("busy_cores"):
            rows.append(("Competing load during /notify", f"{busy} process{'es' if busy > 1 else ''} spinning", ""))
    if results["args"].get("pin_server"):
        rows.append(("Cores", "the FHIR server alone on core 0, everything else on the others (--pin-server)", ""))
    if e2e := results.get("e2e"):
        rows += [
            ("End to end events/s", f"{e2e['events_per_second']} ({e2e['events']} in {e2e['seconds']} s)", ""),
            (
                "Warm-up (first event of each worker process)",
                f"{e2e['warm_up_events']} events in {e2e['warm_up_seconds']} s",
                "",
            ),
            (
                f"CPU per event: worker / FHIR server ({results['args']['fhir']}) / API",
                " / ".join(fmt(e2e["cpu_ms_per_event"].get(k), " ms") for k in ("worker", "fhir server", "api")),
                "worker ≤ ½ FHIR server",
            ),
            load_row(e2e["cpu_seconds"], e2e["seconds"]),
        ]
        if jit := e2e.get("fhir_server_threads_ms_per_event", {}).get("JIT compiler"):
            # A JVM server still compiling spends CPU a server that has run for days does not.
            worker, server = e2e["cpu_ms_per_event"].get("worker"), e2e["cpu_ms_per_event"].get("fhir server")
            if worker and server:
                rows.insert(
                    -1,
                    (
                        "CPU per event: worker / FHIR server without its JIT compiler",
                        f"{worker} ms / {round(server - jit, 1)} ms ({round(worker / (server - jit), 2)})",
                        "≤ 0.5",
                    ),
                )
    if direct := results.get("direct"):
        ratio = results.get("through_adapter_vs_direct")
        rows += [
            (
                "Same requests straight to the FHIR server",
                f"{direct['events_per_second']} events/s ({direct['clients']} clients, "
                f"{direct['requests_per_event']} requests per event; FHIR server CPU "
                f"{fmt(direct['cpu_ms_per_event'].get('fhir server'), ' ms')} per event)",
                "",
            ),
            ("Through the adapter ÷ straight", fmt(ratio), "≥ 0.8"),
        ]
        if e2e and len(through := e2e.get("fhir_server_threads_ms_per_event") or {}) > 1:  # a server of threads
            straight = direct.get("fhir_server_threads_ms_per_event") or {}
            top = sorted(set(through) | set(straight), key=lambda k: -max(through.get(k, 0), straight.get(k, 0)))[:4]
            rows.append(
                (
                    "FHIR server threads, ms per event: through / straight",
                    ", ".join(f"{k} {fmt(through.get(k))} / {fmt(straight.get(k))}" for k in top),
                    "",
                )
            )
    if trips := results.get("trips"):
        rows += [
            ("FHIR reads per event (GET)", str(trips["reads_per_event"]), "≤ 1 (with _include/_revinclude)"),
            (
                "FHIR read batches per event",
                f"{trips['batches_per_event']} (holding {trips['searches_in_batches_per_event']} searches)",
                "0",
            ),
            ("FHIR transactions per event", str(trips["transactions_per_event"]), "≤ 1"),
            ("FHIR round trips per event", str(trips["requests_per_event"]), "≤ 2"),
            (
                "FHIR time per event (upstream)",
                ", ".join(f"{k} {v} ms" for k, v in trips["upstream_ms_per_event"].items()),
                "",
            ),
        ]
        for key, what in (("no_op_update", "a new version no step acts on"), ("redelivered", "a redelivery")):
            if other := trips.get(key):
                rows.append(
                    (
                        f"FHIR round trips, {what}",
                        f"{other['requests_per_event']} (reads "
                        f"{other['reads_per_event']}, batches {other['batches_per_event']}, transactions "
                        f"{other['transactions_per_event']})",
                        "≤ 2",
                    )
                )
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def noise(results: dict[str, Any], limit: float = 0.2) -> list[str]:
    """A warning per phase during which other processes kept more than ``limit`` cores busy."""
    out = []
    for phase in ("accept", "e2e"):
        r = results.get(phase) or {}
        if not r.get("cpu_seconds"):
            continue
        busy = r["cpu_seconds"]["others"] / r["seconds"]
        bad = sum(v > limit for v in r.get("others_cores_per_second", ()))
        if busy > limit or bad:
            out.append(
                f"warning: other processes kept {busy:.2f} cores busy during {phase} on average"
                + (f" and more than {limit} in {bad} of its seconds" if bad else "")
                + "; its numbers are noisy, run again on a quiet machine"
            )
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        results = run(args)
    except (BenchError, TimeoutError, subprocess.SubprocessError) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output, "w") as out:
        json.dump(results, out, indent=2)
    print(table(results))
    for line in noise(results):
        print(line, file=sys.stderr)
    print(f"\nJSON: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
