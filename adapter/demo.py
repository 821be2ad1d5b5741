"""``mmr-adapter demo``: the whole adapter in one process, fed one example referral.

It starts the sandbox FHIR server, the API and a Celery worker in this process, installs the
directory and the Subscriptions, posts a referral as an EHR would, and narrates what the adapter
does. With Redis reachable it takes the real path (Redis broker and state); without, it falls back
to Celery's in-process broker and an in-memory store, and says so.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


def redis_reachable(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except (redis.exceptions.RedisError, OSError):
        return False


def wait(predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    raise TimeoutError("the adapter did not get there in time")


@contextmanager
def in_process_stack(console: Console, redis_url: str) -> Iterator[dict[str, Any]]:
    """Sandbox, API (uvicorn thread) and worker (Celery thread), torn down on exit."""
    import uvicorn

    from adapter.sandbox import free_port, start_sandbox

    sandbox = start_sandbox(0)
    port = free_port()
    token = secrets.token_urlsafe(24)
    os.environ.update({"MMR_FHIR_BASE_URL": sandbox.base_url, "MMR_REDIS_URL": redis_url,
                       "MMR_WEBHOOK_TOKEN": token, "MMR_PUBLIC_URL": f"http://127.0.0.1:{port}",
                       "MMR_QUEUE": f"mmr-demo-{uuid.uuid4().hex[:6]}", "MMR_LOG_LEVEL": "WARNING"})
    from celery.contrib.testing.worker import start_worker

    from adapter.api import app_from_settings
    from adapter.pipeline import worker

    if redis_url.startswith("memory://"):
        worker.app.conf.broker_url = "memory://"
        logging.getLogger("kombu.connection").setLevel(logging.ERROR)  # "no hostname" is expected here
    server = uvicorn.Server(uvicorn.Config(app_from_settings(), host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait(lambda: server.started)
    try:
        with start_worker(worker.app, pool="solo", perform_ping_check=False, shutdown_timeout=10,
                          queues=[worker.settings().queue], loglevel="WARNING"):
            yield {"sandbox": sandbox, "api": f"http://127.0.0.1:{port}", "token": token}
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sandbox.stop()


def example_referral(patient_id: str) -> dict[str, Any]:
    from adapter.mappings import codes, directory

    c, clinic = codes(), directory().clinics[1]
    return {
        "resourceType": "ServiceRequest",
        "identifier": [{"system": "https://ehr.example.se/remiss", "value": f"DEMO-{uuid.uuid4().hex[:6].upper()}"}],
        "status": "active", "intent": "order",
        "category": [{"coding": [c.referral_category]}],
        "code": {"coding": [c.referral_code]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "requester": {"display": "Dr. Remittent, Vårdcentralen Exempel"},
        "performer": [{"reference": f"Organization/{clinic.hsa_id}", "display": clinic.name}],
        "reasonCode": [{"text": "Långvarig smärta i ländrygg sedan 2 år"}],
    }


def run_demo(console: Console | None = None, redis_url: str | None = None) -> int:
    from adapter.cli_support import fhir_client
    from adapter.config import load_settings
    from adapter.setup import run_setup

    console = console or Console()
    redis_url = redis_url or os.environ.get("MMR_REDIS_URL") or DEFAULT_REDIS
    console.rule("[bold]MMR adapter demo")
    if redis_reachable(redis_url):
        console.print(f"Redis at {redis_url} answers: the real path (Redis broker, locks and state).")
    else:
        console.print(f"[yellow]No Redis at {redis_url}: falling back to an in-process broker (memory://) "
                      "and an in-memory store. Start Redis for the real path.[/]")
        redis_url = "memory://"
    steps = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console)
    with steps:
        t = steps.add_task("starting the sandbox FHIR server, the API and a worker", total=None)
        with in_process_stack(console, redis_url) as stack:
            steps.update(t, description=f"stack up: FHIR {stack['sandbox'].base_url}, API {stack['api']}",
                         completed=1, total=1)
            settings = load_settings()
            fhir = fhir_client(settings)
            t = steps.add_task("setup: directory and Subscriptions", total=None)
            report = run_setup(fhir, notify_url=settings.notify_url, token=stack["token"])
            steps.update(t, description=f"setup: {len(report.written)} resources in place, subscribed to "
                                        f"{settings.notify_url}", completed=1, total=1)
            t = steps.add_task("the referrer sends a referral (Patient + ServiceRequest)", total=None)
            patient = fhir.create({"resourceType": "Patient", "name": [{"text": "Demo Patient"}]})
            sr = fhir.create(example_referral(patient["id"]))
            steps.update(t, description=f"referral {sr['identifier'][0]['value']} sent as "
                                        f"ServiceRequest/{sr['id']}", completed=1, total=1)
            t = steps.add_task("waiting for the adapter to register its arrival", total=None)
            tasks = wait(lambda: fhir.search("Task", {"focus": f"ServiceRequest/{sr['id']}"}))
            review = tasks[0]
            steps.update(t, description=f"arrival registered: review Task/{review['id']} is {review['status']}, "
                                        f"owner {review['owner'].get('display')}", completed=1, total=1)
            steps.stop()
            console.print()
            console.print(f"The referral's journey (mmr-adapter status {sr['identifier'][0]['value']}):")
            from adapter.status import journey_lines

            for line in journey_lines(fhir, sr["id"]):
                console.print(f"  {line}")
            fhir.close()
    console.rule("[bold green]demo done")
    return 0
