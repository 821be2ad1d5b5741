"""Soak: the adapter in the real world's weather, bounded in time and kept on loopback.

N referrals reach the adapter in the shapes HAPI notifies them (see ``SHAPES``: rest-hook ``PUT``
with the resource, rest-hook without payload, an R4 backport topic notification, id-only), beside
unrelated traffic (9 of every 10 notifications by default; some of it as HAPI's delete messages).
Every referral's notification is delivered 1-5 times and one in ten never; failed deliveries are
retried for 60 s, as HAPI does.
Meanwhile the worker is SIGKILLed every 20 s (and started again, as a supervisor would), the FHIR
server disappears for 60 s, Redis restarts (append-only file, as compose runs it) and so does the
API. Then the clock is moved past every review deadline.

It reports:

* lost: referrals without a review Task;
* doubled: referrals with more than one review Task or more than one overdue notice;
* silent: referrals whose overdue notice never came although the clock is past their deadline,
  and timers still due and unfired at the end (``mmr_timers_due``);
* acked without effect: events the API accepted (202) that no worker outcome accounts for;
* dead letters, and the longest gap between two completed reconciliations outside the FHIR
  outage (aim: at most two reconciliation intervals).

Run ``python bench/soak.py [--referrals N]``; it stops by itself within ``--minutes`` (10). Prints
a Markdown table and writes ``bench/results/soak.json``. Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import redis

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the sibling modules, when run as a script
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests.support.shapes: HAPI's bodies

from stack import LOGS, RESULTS, TOKEN, BenchError, adapter_env, spawn, start_api, start_worker, stop, wait_until
from workload import install_directory, referral_body, review_code

from adapter.dev.sandbox import free_port, start_sandbox
from adapter.fhir.client import FhirClient
from adapter.mappings import codes
from adapter.pipeline.state import State
from adapter.polling import poll
from tests.support.redis_server import PrivateRedis
from tests.support.shapes import r4_backport

RECONCILE_INTERVAL = 10.0
SETTINGS = {  # short intervals, so a bounded run sees many of each; production defaults otherwise
    "MMR_TEST_CLOCK": "true",
    "MMR_RECONCILE_INTERVAL": str(RECONCILE_INTERVAL),
    "MMR_TIMER_INTERVAL": "5",
    "MMR_SWEEP_INTERVAL": "60",
    "MMR_MAX_ATTEMPTS": "12",
    "MMR_RETRY_BACKOFF": "1",
    "MMR_RETRY_BACKOFF_MAX": "20",
    "MMR_VISIBILITY_TIMEOUT": "60",
    "MMR_LOCK_TIMEOUT": "10",
    "MMR_LOG_LEVEL": "WARNING",
}
LOAD_START = 20.0  # seconds after the start by when the parts are up
NOISE_TYPES = ("Appointment", "Communication", "DocumentReference", "QuestionnaireResponse", "Task", "CarePlan")
# How a referral's notification comes, and how often: HAPI's classic rest-hook with payload (its
# default), a rest-hook channel without payload (an empty POST: search), and a topic-based R4
# backport notification with id-only content (the worker reads the resource).
SHAPES = (("rest-hook", 0.7), ("rest-hook-empty", 0.1), ("topic-id-only", 0.2))


@dataclass
class Report:
    referrals: int = 0
    notifications_sent: int = 0
    accepted: int = 0
    never_delivered: int = 0
    lost: int = 0
    doubled: int = 0
    silent: int = 0
    timers_due_at_end: int = 0
    acked_without_effect: int = 0
    dead_letters: int = 0
    longest_reconciliation_gap_s: float = 0.0  # outside the FHIR outage
    longest_gap_with_outage_s: float = 0.0
    redis_unusable_s: float = 0.0  # from its shutdown until its append-only file is loaded
    # (began, seconds) of the three longest, on the faults' clock, to set beside the faults' times
    longest_gaps: list[tuple[float, float]] = field(default_factory=list)
    reconciliation_interval_s: float = RECONCILE_INTERVAL
    faults: list[str] = field(default_factory=list)
    shapes: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


class Proxy:
    """``bench/fhir_proxy.py`` on a fixed port, so the FHIR server can vanish and come back where it was."""

    def __init__(self, target: str) -> None:
        self.target, self.port = target, free_port()
        self.base = f"http://127.0.0.1:{self.port}/fhir"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        script = str(Path(__file__).with_name("fhir_proxy.py"))
        self.process = spawn("soak-proxy", [script, "--target", self.target, "--port", str(self.port)])
        wait_until(self._listens, 20, "the proxy to listen")

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)

    def _listens(self) -> bool:
        try:
            return httpx.get(f"{self.base}/metadata", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False


def noise_body(rtype: str) -> dict[str, Any]:
    """Someone else's resource, as HAPI would notify it: no link to any MMR referral."""
    patient = {"reference": f"Patient/other-{uuid.uuid4().hex[:8]}"}
    body: dict[str, Any] = {
        "resourceType": rtype,
        "id": uuid.uuid4().hex[:16],
        "meta": {"versionId": "1"},
        "status": "completed",
    }
    if rtype == "Task":
        body.update(status="requested", intent="order", code={"text": "lab order"}, **{"for": patient})
    elif rtype == "Appointment":
        body.update(status="booked", participant=[{"actor": patient, "status": "accepted"}])
    elif rtype in ("CarePlan", "DocumentReference"):
        body.update(status="active" if rtype == "CarePlan" else "current", subject=patient)
    else:
        body["subject"] = patient
    return body


class Deliverer:
    """Sends notifications as HAPI does: a failed delivery is retried for 60 s, then dropped."""

    def __init__(self, api_url: str) -> None:
        self.api_url = api_url
        self.client = httpx.Client(
            timeout=10,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/fhir+json; charset=UTF-8"},
        )
        self.lock = threading.Lock()
        self.sent = self.accepted = 0
        self.event_numbers = itertools.count(1)  # the topic's, one per notification as HAPI counts them
        self.shapes: dict[str, int] = {}

    def deliver(self, body: dict[str, Any], shape: str = "rest-hook") -> None:
        url = f"{self.api_url}/notify/{body['resourceType']}/{body['id']}"
        if shape == "rest-hook":
            method, content = "PUT", json.dumps(body).encode()
        elif shape == "rest-hook-delete":
            method, content = "DELETE", b""
        elif shape == "rest-hook-empty":
            method, url, content = "POST", f"{self.api_url}/notify", b""
        else:
            focus = f"{body['resourceType']}/{body['id']}"
            method, url, content = (
                "POST",
                f"{self.api_url}/notify",
                r4_backport("soak-topic", next(self.event_numbers), focus),
            )
        with self.lock:
            self.shapes[shape] = self.shapes.get(shape, 0) + 1
        deadline = time.monotonic() + 60
        while True:
            with self.lock:
                self.sent += 1
            try:
                if self.client.request(method, url, content=content).status_code == 202:
                    with self.lock:
                        self.accepted += 1
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                return
            time.sleep(1.0)


def review_tasks_by_referral(fhir: FhirClient) -> dict[str, int]:
    counts: dict[str, int] = {}
    for task in fhir.search("Task", [("code", review_code()), ("_count", "200")]):
        focus = str((task.get("focus") or {}).get("reference") or "").removeprefix("ServiceRequest/")
        if task.get("resourceType") == "Task" and focus:
            counts[focus] = counts.get(focus, 0) + 1
    return counts


def overdue_by_referral(fhir: FhirClient) -> dict[str, int]:
    counts: dict[str, int] = {}
    category = f"{codes().system('notification-type')}|overdue"
    for message in fhir.search("Communication", [("category", category), ("_count", "200")]):
        for about in message.get("basedOn") or ():
            rid = str(about.get("reference") or "").removeprefix("ServiceRequest/")
            counts[rid] = counts.get(rid, 0) + 1
    return counts


class GapWatch(threading.Thread):
    """Samples when reconciliations complete; the longest gap between two is the liveness measure."""

    def __init__(self, redis_url: str) -> None:
        super().__init__(daemon=True)
        self.redis_url, self.completions, self.stopping = redis_url, [time.time()], threading.Event()

    def run(self) -> None:
        client = redis.Redis.from_url(self.redis_url, decode_responses=True, socket_connect_timeout=1, socket_timeout=1)
        while not self.stopping.wait(1.0):
            try:
                last = client.get("mmr:reconciled-at")
            except redis.exceptions.RedisError:
                continue
            if last and float(last) > self.completions[-1]:
                self.completions.append(float(last))

    def longest_gaps(self, outage: tuple[float, float] | None = None, n: int = 3) -> list[tuple[float, float]]:
        """The ``n`` longest times without a completed reconciliation and when each began, leaving out
        gaps that overlap the FHIR outage (no reconciliation can complete without the server)."""
        moments = [*self.completions, time.time()]
        return sorted(
            ((b - a, a) for a, b in itertools.pairwise(moments) if outage is None or b < outage[0] or a > outage[1]),
            reverse=True,
        )[:n] or [(0.0, moments[0])]


def soak(referrals: int, noise_per_referral: int, minutes: float, load_seconds: float = 200.0) -> Report:
    started = time.monotonic()
    hard_deadline = started + minutes * 60 - 30
    report = Report(referrals=referrals)
    rng = random.Random(20261202)
    folder = Path(tempfile.mkdtemp(prefix="mmr-soak-"))
    sandbox = start_sandbox(0)
    store = PrivateRedis(folder, fsync="everysec", load_timeout=120)
    proxy = Proxy(sandbox.base_url)
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        store.start()
        proxy.start()
        fhir = FhirClient(sandbox.base_url, retries=2)
        install_directory(fhir)
        api_port = free_port()
        api_url = f"http://127.0.0.1:{api_port}"
        env = {**adapter_env(proxy.base, store.url, "mmr-soak", api_url), **SETTINGS}
        processes["api"] = start_api(env, api_port)
        processes["worker"] = start_worker(env, "soak-worker")
        beat_args = ["-m", "adapter.cli", "beat", "--schedule-file", str(folder / "beat-schedule")]
        processes["beat"] = spawn("soak-beat", beat_args, env)
        starters = {
            "api": lambda: start_api(env, api_port),
            "worker": lambda: start_worker(env, "soak-worker"),
            "beat": lambda: spawn("soak-beat", beat_args, env),
        }
        gaps = GapWatch(store.url)
        gaps.start()

        # The faults, on a schedule of their own while the load runs.
        stopping = threading.Event()

        def attempt(what: str, action: Callable[[], object]) -> bool:
            """One fault or restart; if it fails (another fault is under way), the next tick tries again."""
            try:
                action()
                return True
            except Exception as exc:
                report.faults.append(f"{what} failed once ({type(exc).__name__}), tried again")
                return False

        def faults() -> None:
            plan = [(40, "fhir-outage"), (100, "fhir-back"), (130, "redis-restart"), (160, "api-restart")]
            t0, kills = time.monotonic(), 0
            faults_began[0] = time.time()
            while not (stopping.is_set() and not plan):  # the load is done and so is every planned fault
                time.sleep(1.0)
                elapsed = time.monotonic() - t0
                for name, process in list(processes.items()):  # the supervisor: restart what exited
                    if process.poll() is not None and attempt(f"restarting {name}", lambda n=name: restart(n)):
                        report.faults.append(f"{elapsed:.0f}s {name} exited {process.returncode}, restarted")
                if plan and elapsed >= plan[0][0] and attempt(plan[0][1], actions[plan[0][1]]):
                    report.faults.append(f"{elapsed:.0f}s {plan.pop(0)[1]}")
                if elapsed >= 20 * (kills + 1) and attempt("worker SIGKILL", kill_worker):
                    kills += 1
                    report.faults.append(f"{elapsed:.0f}s worker SIGKILL")

        def restart(name: str) -> None:
            processes[name] = starters[name]()

        def kill_worker() -> None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(processes["worker"].pid, 9)
            processes["worker"].wait()
            # The kill is done whether or not the restart works: a failed restart is the supervisor's
            # to repeat, never a reason to kill the next worker a second later.
            attempt("restarting worker", lambda: restart("worker"))

        def restart_redis() -> None:
            redis_outage[0] = time.time()
            store.stop()
            store.start()
            redis_outage[1] = time.time()

        def restart_api() -> None:
            stop(processes["api"])
            restart("api")

        outage, redis_outage, faults_began = [0.0, 0.0], [0.0, 0.0], [0.0]

        def fhir_outage() -> None:
            outage[0] = time.time()
            proxy.stop()

        def fhir_back() -> None:
            proxy.start()
            outage[1] = time.time()

        actions: dict[str, Callable[[], object]] = {
            "fhir-outage": fhir_outage,
            "fhir-back": fhir_back,
            "redis-restart": restart_redis,
            "api-restart": restart_api,
        }

        fault_thread = threading.Thread(target=faults, daemon=True)
        fault_thread.start()

        # The load: each referral written to the FHIR server, then notified 0-5 times among noise.
        deliverer = Deliverer(api_url)
        ids: list[str] = []
        with ThreadPoolExecutor(8) as pool:
            for i in range(referrals):
                key = f"S-{uuid.uuid4().hex[:12]}"
                patient = fhir.update(
                    {"resourceType": "Patient", "id": f"p-{key}", "name": [{"family": "Soaksson", "given": ["Test"]}]}
                )
                sr = fhir.create(referral_body(patient["id"], key))
                ids.append(sr["id"])
                copies = 0 if rng.random() < 0.1 else rng.randint(1, 5)
                report.never_delivered += copies == 0
                names, weights = zip(*SHAPES, strict=True)
                deliveries = [(sr, shape) for shape in rng.choices(names, weights, k=copies)]
                deliveries += [
                    (noise_body(rng.choice(NOISE_TYPES)), "rest-hook-delete" if rng.random() < 0.1 else "rest-hook")
                    for _ in range(noise_per_referral)
                ]
                rng.shuffle(deliveries)
                for body, shape in deliveries:
                    pool.submit(deliverer.deliver, body, shape)
                # Spread the referrals over the fault window, so every fault lands in the middle of traffic.
                pause = started + LOAD_START + (i + 1) * load_seconds / referrals - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
        stopping.set()
        fault_thread.join(timeout=120)
        report.notifications_sent, report.accepted = deliverer.sent, deliverer.accepted
        referral_ids = set(ids)

        # Whatever is missing when a phase's time is up is counted below, not waited for.
        poll(
            lambda: referral_ids <= set(review_tasks_by_referral(fhir)),
            max(hard_deadline - 90 - time.monotonic(), 1),
            2.0,
        )
        # Past every deadline: the overdue notices must all come, once, and every due timer fire.
        state = State(redis.Redis.from_url(store.url, decode_responses=True))
        state.clock.set(datetime.now(UTC) + timedelta(days=30))
        poll(
            lambda: (
                referral_ids <= set(overdue_by_referral(fhir)) and not state.timers.due_count(state.clock.now(True))
            ),
            max(hard_deadline - time.monotonic(), 1),
            2.0,
        )
        time.sleep(10)  # long enough for a doubled notice to show, if one were coming
        gaps.stopping.set()

        reviews, overdue = review_tasks_by_referral(fhir), overdue_by_referral(fhir)
        report.lost = sum(1 for r in referral_ids if r not in reviews)
        report.doubled = sum(1 for r in referral_ids if reviews.get(r, 0) > 1 or overdue.get(r, 0) > 1)
        report.silent = sum(1 for r in referral_ids if r in reviews and r not in overdue)
        report.timers_due_at_end = state.timers.due_count(state.clock.now(True))
        report.shapes = dict(deliverer.shapes)
        events, _ = state.metrics.events_and_latency()
        # Each accepted notification is one event (every shape the soak sends carries one); each
        # must end in an outcome of its own (applied, nothing, duplicate, ignored, dead-lettered).
        # Only events that came in through the API are counted: not the timers', sweep's or
        # reconciliation's, which would hide a lost one.
        processed = sum(state.metrics.delivered_outcomes().values())
        referral_events = sum(int(v) for k, v in events.items() if k.endswith("|ServiceRequest"))
        report.acked_without_effect = max(0, report.accepted - processed)
        report.dead_letters = state.dlq.size()
        longest = gaps.longest_gaps((outage[0], outage[1]))
        report.longest_reconciliation_gap_s = round(longest[0][0], 1)
        report.longest_gaps = [(round(began - faults_began[0], 1), round(gap, 1)) for gap, began in longest]
        report.longest_gap_with_outage_s = round(gaps.longest_gaps()[0][0], 1)
        report.redis_unusable_s = round(redis_outage[1] - redis_outage[0], 1)
        report.seconds = round(time.monotonic() - started, 1)
        print(f"(worker outcomes: {processed} in all, {referral_events} about referrals)", file=sys.stderr)
        return report
    finally:
        for process in processes.values():
            stop(process)
        proxy.stop()
        if store.answers():
            store.stop()
        sandbox.stop()
        shutil.rmtree(folder, ignore_errors=True)


def table(report: Report) -> str:
    rows = [
        ("referrals", report.referrals),
        ("notifications sent (with HAPI's retries)", report.notifications_sent),
        ("accepted (202)", report.accepted),
        ("referrals never notified (found by reconciliation)", report.never_delivered),
        ("notifications by shape (first deliveries)", ", ".join(f"{k} {v}" for k, v in report.shapes.items())),
        ("lost", report.lost),
        ("doubled", report.doubled),
        ("silent", report.silent),
        ("timers due and unfired at the end", report.timers_due_at_end),
        ("events acked without effect", report.acked_without_effect),
        ("dead letters", report.dead_letters),
        (
            "longest reconciliation gaps",
            ", ".join(f"{gap} s from {began} s on" for began, gap in report.longest_gaps)
            + f" (interval {report.reconciliation_interval_s:.0f} s); {report.longest_gap_with_outage_s} s across "
            f"the FHIR outage; Redis unusable {report.redis_unusable_s} s in its restart",
        ),
        ("faults", "; ".join(report.faults)),
        ("duration", f"{report.seconds} s"),
    ]
    return "\n".join(["| measure | result |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--referrals", type=int, default=1000, help="referrals to soak (default 1000)")
    parser.add_argument("--noise", type=int, default=9, help="unrelated notifications per referral (default 9)")
    parser.add_argument("--minutes", type=float, default=10.0, help="stop by itself within this (default 10)")
    args = parser.parse_args(argv)
    if shutil.which("redis-server") is None:
        raise SystemExit("soak: redis-server is not installed (apt-get install -y redis-server)")
    LOGS.mkdir(parents=True, exist_ok=True)
    try:
        report = soak(args.referrals, args.noise, args.minutes)
    except BenchError as exc:
        raise SystemExit(f"soak: {exc}") from None
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "soak.json").write_text(json.dumps(asdict(report), indent=2))
    print(table(report))


if __name__ == "__main__":
    main()
