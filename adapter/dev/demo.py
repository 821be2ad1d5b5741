"""``mmr-adapter demo``: the whole adapter in one process, fed one example referral.

It starts the sandbox FHIR server, the API and a Celery worker in this process, installs the
directory, the profiles and the Subscriptions, posts the published example referral Bundle as an
EHR would, and then plays each other party in turn (the reviewer, the MMRpv unit, the patient
app) while narrating what the adapter does, up to the discharge summary and the scheduled
follow-up.

Redis: it never writes into one it did not start or was not told to use (a Redis answering on
the usual port may be someone else's, and ``MMR_REDIS_URL`` may be a production adapter's). With
``redis-server`` on the PATH it starts its own on a free loopback port, without persistence, and
removes it when it ends: the real path (Redis broker, locks and state). Without, Celery's
in-process broker and an in-memory store. ``--redis-url`` names another on purpose. It says
which.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta
from typing import Any

import redis
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from adapter.conformance.package import example
from adapter.fhir.client import FhirClient
from adapter.polling import poll_or_raise
from adapter.workflow.calendar import STOCKHOLM
from adapter.workflow.mmrpv.common import carries_out, unit_ref

IN_PROCESS = "memory://"


def redis_reachable(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except (redis.exceptions.RedisError, OSError):
        return False


@contextmanager
def private_redis(server: str) -> Iterator[str]:
    """A redis-server of the demo's own on a free loopback port, nothing persisted; stopped and its
    folder removed on exit."""
    from adapter.dev.sandbox import free_port

    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    with tempfile.TemporaryDirectory(prefix="mmr-demo-redis-") as folder:
        process = subprocess.Popen(
            [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", folder],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        try:

            def up() -> bool:
                if process.poll() is not None:
                    raise RuntimeError(f"redis-server exited with code {process.returncode} on port {port}")
                return redis_reachable(url)

            poll_or_raise(up, 10.0, what=f"redis-server on 127.0.0.1:{port}")
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def choose_redis(console: Console, stack: ExitStack, redis_url: str | None) -> str | None:
    """The Redis the demo will use, said aloud; ``None`` (after one line) when the one named does not answer."""
    if redis_url is None:
        server = shutil.which("redis-server")
        if server is None:
            console.print(
                "[yellow]redis-server is not installed: an in-process broker (memory://) and an in-memory "
                "store. Install Redis for the real path.[/]"
            )
            return IN_PROCESS
        url = stack.enter_context(private_redis(server))
        console.print(
            f"Started a redis-server of its own at {url}, removed when the demo ends: the real path "
            "(Redis broker, locks and state). --redis-url uses another."
        )
        return url
    if redis_url.startswith(IN_PROCESS):
        console.print("An in-process broker (memory://) and an in-memory store, as asked.")
        return IN_PROCESS
    if not redis_reachable(redis_url):
        console.print(f"No Redis answers at {redis_url} (--redis-url).", style="red", markup=False)
        return None
    console.print(f"Redis at {redis_url}, as asked (--redis-url): the real path; the demo's keys stay there.")
    return redis_url


@contextmanager
def in_process_stack(console: Console, redis_url: str) -> Iterator[dict[str, Any]]:
    """Sandbox, API (uvicorn thread) and worker (Celery thread), torn down on exit."""
    import uvicorn

    from adapter.dev.sandbox import free_port, start_sandbox

    sandbox = start_sandbox(0)
    port = free_port()
    token = secrets.token_urlsafe(24)
    os.environ.update(
        {
            "MMR_FHIR_BASE_URL": sandbox.base_url,
            "MMR_REDIS_URL": redis_url,
            "MMR_WEBHOOK_TOKEN": token,
            "MMR_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "MMR_QUEUE": f"mmr-demo-{uuid.uuid4().hex[:6]}",
            "MMR_LOG_LEVEL": "WARNING",
        }
    )
    from celery.contrib.testing.worker import start_worker

    from adapter.intake.api import app_from_settings
    from adapter.pipeline import worker

    if redis_url.startswith("memory://"):
        worker.app.conf["broker_url"] = "memory://"  # the same as the attribute, which the stubs call read-only
        logging.getLogger("kombu.connection").setLevel(logging.ERROR)  # "no hostname" is expected here
    server = uvicorn.Server(uvicorn.Config(app_from_settings(), host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    poll_or_raise(lambda: server.started, 30.0, what="the API to start")
    try:
        with start_worker(
            worker.app,
            pool="solo",
            perform_ping_check=False,
            shutdown_timeout=10,
            queues=[worker.settings().queue],
            loglevel="WARNING",
        ):
            yield {"sandbox": sandbox, "api": f"http://127.0.0.1:{port}", "token": token}
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sandbox.stop()


class Journey:
    """The demo's actors (referrer, reviewer, MMRpv unit, patient app) and what they watch for."""

    def __init__(self, fhir: FhirClient, steps: Progress) -> None:
        self.fhir, self.steps = fhir, steps
        self.sr: dict[str, Any] = {}

    def step(self, waiting: str, predicate: Callable[[], Any], done: Callable[[Any], str]) -> Any:
        task = self.steps.add_task(waiting, total=None)
        value = poll_or_raise(predicate, 30.0, what=waiting)
        self.steps.update(task, description=done(value), completed=1, total=1)
        return value

    def tasks(self) -> dict[str, dict[str, Any]]:
        """The referral's Tasks by code (the last booking round wins)."""
        found = self.fhir.search("Task", {"focus": f"ServiceRequest/{self.sr['id']}"})
        return {code_of(t.get("code")): t for t in sorted(found, key=lambda t: t.get("authoredOn", ""))}

    def task_at(self, code: str, *business: str) -> dict[str, Any] | None:
        task = self.tasks().get(code)
        return task if task and code_of(task.get("businessStatus")) in business else None

    def messages(self, kind: str) -> list[dict[str, Any]]:
        return [
            m
            for m in self.fhir.search("Communication", {"based-on": f"ServiceRequest/{self.sr['id']}"})
            if code_of((m.get("category") or [{}])[0]) == kind
        ]


def code_of(concept: dict[str, Any] | None) -> str:
    return next((c.get("code", "") for c in (concept or {}).get("coding") or ()), "")


def output(task: dict[str, Any], code: str) -> str:
    found: dict[str, Any] = next((o for o in task.get("output") or () if code_of(o.get("type")) == code), {})
    return code_of(found.get("valueCodeableConcept")) or (found.get("valueReference") or {}).get("display", "")


def walk(j: Journey) -> None:
    """Referral, review, forwarding, the MMRpv unit, the programme and the discharge, narrated."""
    from adapter.mappings import codes

    c = codes()
    bundle = example("Bundle-mmr-example-referral-bundle.json")
    j.fhir.transaction(bundle)
    ident = next(
        e["resource"]["identifier"][0] for e in bundle["entry"] if e["resource"]["resourceType"] == "ServiceRequest"
    )
    j.sr = j.fhir.search("ServiceRequest", {"identifier": f"{ident['system']}|{ident['value']}"})[0]
    j.step(
        "the referrer sends the example referral Bundle",
        lambda: True,
        lambda _: (
            f"referrer: referral {j.sr['identifier'][0]['value']} posted as one transaction "
            "(Patient, referrer, Consent, ServiceRequest)"
        ),
    )
    review = j.step(
        "the adapter registers the arrival and reviews",
        lambda: j.task_at("referral-review", "recommended", "awaiting-patient", "awaiting-supplement"),
        lambda t: (
            f"adapter: review Task {t['status']} / {code_of(t['businessStatus'])}, "
            f"owner {t['owner'].get('display')}, due {t['restriction']['period']['end'][:16]}"
        ),
    )
    if code_of(review["businessStatus"]) == "awaiting-patient":
        questionnaire = j.step(
            "the adapter asks the patient",
            lambda: j.tasks().get("complete-questionnaire"),
            lambda t: "adapter: questionnaire Task for the patient",
        )
        answer = {
            **example("QuestionnaireResponse-mmr-example-intake-response.json"),
            "subject": j.sr["subject"],
            "basedOn": [questionnaire["focus"]],
        }  # R4: basedOn a CarePlan or ServiceRequest
        answer.pop("id")
        answer.pop("author", None)
        j.fhir.create(answer)
        review = j.step(
            "the patient app answers",
            lambda: j.task_at("referral-review", "recommended"),
            lambda t: "patient app: answered; adapter: review resumed",
        )
    level = output(review, "recommendation")
    j.step("the recommendation", lambda: level, lambda lv: f"adapter: recommends {lv} from the four criteria")
    decided = [
        *(review.get("output") or ()),
        {"type": c.concept("task-parameter", "decision"), "valueCodeableConcept": c.concept("level", level)},
    ]
    j.fhir.update(
        {**review, "output": decided, "businessStatus": c.concept("business-status", "decided")},
        if_match=review["meta"]["versionId"],
    )
    kind = "VID" if level == "MMRpv" else "BEK"
    j.step(
        f"the reviewer decides {level}",
        lambda: len(j.messages(kind)) >= 2,
        lambda _: f"reviewer: decided {level}; adapter: {kind} to referrer and patient",
    )
    if level != "MMRpv":
        return
    booking = j.step(
        "the MMRpv unit registers the arrival",
        lambda: j.task_at("booking", "awaiting-booking"),
        lambda t: (
            f"adapter: intake received, care commitment made, booking Task for "
            f"{t['owner'].get('display')} (suggested: {t['input'][0]['valueReference']['display']})"
        ),
    )
    site = booking["input"][0]["valueReference"]
    start = (datetime.now(STOCKHOLM) + timedelta(days=14)).replace(hour=9, minute=0, second=0, microsecond=0)
    j.fhir.create(
        {
            "resourceType": "Appointment",
            "status": "booked",
            "start": start.isoformat(),
            "end": (start + timedelta(hours=6)).isoformat(),
            "basedOn": [{"reference": f"ServiceRequest/{j.sr['id']}"}],
            "participant": [{"actor": j.sr["subject"], "status": "accepted"}, {"actor": site, "status": "accepted"}],
        }
    )
    j.step(
        "the administrative function books",
        lambda: len(j.messages("BEK")) >= 2,
        lambda _: f"unit: booked at {site['display']}; adapter: BEK with time and place to referrer and patient",
    )
    plan = j.step(
        "the programme",
        lambda: next(
            (
                p
                for p in j.fhir.search("CarePlan", {"subject": j.sr["subject"]["reference"]})
                if carries_out(p, f"ServiceRequest/{j.sr['id']}")
            ),
            None,
        ),
        lambda p: f"adapter: programme CarePlan with {len(p.get('activity') or ()) - 1} activities",
    )
    j.fhir.update({**plan, "status": "completed"})  # the programme ran to its planned end
    j.fhir.create(
        {
            "resourceType": "DocumentReference",
            "status": "current",
            "type": {"coding": [{"system": "http://loinc.org", "code": "18842-5"}]},
            "subject": j.sr["subject"],
            "author": [unit_ref()],  # the unit: R4 takes no Location
            "content": [{"attachment": {"contentType": "text/plain", "title": "Epikris"}}],
            "context": {"related": [{"reference": f"ServiceRequest/{j.sr['id']}"}]},
        }
    )
    j.step(
        "the programme ends and the unit writes the discharge summary",
        lambda: j.task_at("mmrpv-intake", "discharged") and j.tasks().get("follow-up"),
        lambda t: (
            "adapter: summary and PAL meeting offer to the referrer; follow-up due "
            f"{t['restriction']['period']['start'][:10]}"
        ),
    )


def run_demo(console: Console | None = None, redis_url: str | None = None) -> int:
    """The demo; 0 when the journey completed, 2 when the Redis named (``redis_url``) does not answer."""
    from adapter.pipeline.state import State

    console = console or Console()
    console.rule("[bold]MMR adapter demo")
    previous = signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM cleans up as Ctrl-C does: no redis-server left
    try:
        with ExitStack() as resources:
            chosen = choose_redis(console, resources, redis_url)
            if chosen is None:
                return 2
            if chosen == IN_PROCESS:
                try:
                    State.from_url(chosen)  # before anything starts: one line if fakeredis is not installed
                except RuntimeError as exc:
                    console.print(str(exc), style="red", markup=False)
                    return 1
            _walk_through(console, chosen)
    finally:
        signal.signal(signal.SIGTERM, previous)
    console.rule("[bold green]demo done")
    return 0


def _walk_through(console: Console, redis_url: str) -> None:
    from adapter.config import load_settings
    from adapter.operations.setup import run_setup
    from adapter.wiring import fhir_client

    steps = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console)
    with steps:
        t = steps.add_task("starting the sandbox FHIR server, the API and a worker", total=None)
        with in_process_stack(console, redis_url) as stack:
            steps.update(
                t, description=f"stack up: FHIR {stack['sandbox'].base_url}, API {stack['api']}", completed=1, total=1
            )
            settings = load_settings()
            fhir = fhir_client(settings)
            t = steps.add_task("setup: directory, profiles and Subscriptions", total=None)
            report = run_setup(fhir, notify_url=settings.notify_url, token=stack["token"])
            steps.update(
                t,
                description=f"setup: {len(report.written)} resources in place, subscribed to {settings.notify_url}",
                completed=1,
                total=1,
            )
            journey = Journey(fhir, steps)
            walk(journey)
            steps.stop()
            key = journey.sr["identifier"][0]["value"]
            console.print()
            console.print(f"The referral's journey (mmr-adapter status {key}):")
            from adapter.operations.status import journey_lines

            for line in journey_lines(fhir, journey.sr["id"]):
                console.print(f"  {line}")
            fhir.close()
