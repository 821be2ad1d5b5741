"""Bad input gets a 4xx with an OperationOutcome and nothing is queued; an unreachable queue a 503.

The API here is the real application served over HTTP, enqueueing into real Redis on a queue no
worker reads, so what was queued can be counted.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import redis
import uvicorn

from adapter.intake.app import Check, Limits, QueueUnavailable, create_app
from adapter.pipeline.envelope import Envelope
from adapter.pipeline.state import State
from adapter.sandbox import free_port
from tests.conftest import REDIS_URL, TOKEN, unique, wait_for
from tests.shapes import r4_backport

LIMIT = 64 * 1024
SR = {"resourceType": "ServiceRequest", "id": "sr1", "meta": {"versionId": "1"}, "status": "active",
      "intent": "order", "subject": {"reference": "Patient/p1"}}


@dataclass
class Intake:
    url: str
    queue: str
    r: redis.Redis

    def queued(self) -> int:
        return int(self.r.llen(self.queue))

    def send(self, method: str, path: str = "", body: bytes | None = None, *, token: str | None = TOKEN,
             content_type: str = "application/fhir+json") -> httpx.Response:
        headers = {"Content-Type": content_type}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.request(method, f"{self.url}/notify{path}", content=body, headers=headers, timeout=10)


def serve(app: object, **options: object) -> tuple[str, uvicorn.Server]:
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **options)  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, daemon=True).start()
    wait_for(lambda: server.started, what="the API to listen")
    return f"http://127.0.0.1:{port}", server


def always(value: bool) -> Check:
    async def check() -> bool:
        return value

    return check


def intake(redis_url: str, fhir_ok: bool = True, *, limits: Limits | None = None, operator_token: str | None = None,
           **options: object) -> tuple[Intake, uvicorn.Server]:
    """The real API enqueueing with the real publish (``enqueue_notification``) on a queue of its own."""
    from adapter.pipeline.worker import app as celery
    from adapter.pipeline.worker import enqueue_notification

    queue = unique("mmr-intake")
    r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    conn = celery.connection_for_write(redis_url)

    def enqueue(envelopes: tuple[Envelope, ...]) -> None:
        try:
            enqueue_notification(envelopes, queue=queue, connection=conn,
                                 retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.1})
        except Exception as exc:
            raise QueueUnavailable(type(exc).__name__) from exc

    api = create_app(token=TOKEN, enqueue=enqueue, state=State(r), queue_depth=lambda: r.llen(queue),
                     checks={"redis": always(True), "fhir": always(fhir_ok)},
                     limits=limits or Limits(max_body_bytes=LIMIT), operator_token=operator_token)
    url, server = serve(api, **options)
    return Intake(url, queue, r), server


@pytest.fixture(scope="module")
def lone() -> Iterator[Intake]:
    it, server = intake(REDIS_URL)
    yield it
    server.should_exit = True
    it.r.delete(it.queue)


def test_a_good_notification_is_queued_once(lone: Intake) -> None:
    before = lone.queued()
    reply = lone.send("PUT", "/ServiceRequest/sr1", json.dumps(SR).encode())
    assert reply.status_code == 202
    assert lone.queued() == before + 1  # queued before the answer, not after


@pytest.mark.parametrize(("case", "status", "words"), [
    ("no token", 401, "bearer token"),
    ("wrong token", 401, "bearer token"),
    ("not JSON", 400, "not valid JSON"),
    ("XML", 415, "not supported"),
    ("Bundle of the wrong type", 400, "history or subscription-notification"),
    ("Bundle without a status entry", 400, "first entry"),
    ("body type differs from path", 400, "differs from the path"),
    ("oversized body", 413, "exceeds"),
    ("unknown path", 404, "Not Found"),
    ("wrong method", 405, "Method Not Allowed"),
])
def test_bad_input_gets_a_4xx_operation_outcome_and_nothing_is_queued(lone: Intake, case: str, status: int,
                                                                       words: str) -> None:
    send = {
        "no token": lambda: lone.send("PUT", "/ServiceRequest/sr1", json.dumps(SR).encode(), token=None),
        "wrong token": lambda: lone.send("PUT", "/ServiceRequest/sr1", json.dumps(SR).encode(), token=TOKEN + "x"),
        "not JSON": lambda: lone.send("POST", "", b"{this is not json"),
        "XML": lambda: lone.send("POST", "", b"<Bundle/>", content_type="application/fhir+xml"),
        "Bundle of the wrong type": lambda: lone.send("POST", "", json.dumps(
            {"resourceType": "Bundle", "type": "searchset", "entry": []}).encode()),
        "Bundle without a status entry": lambda: lone.send("POST", "", json.dumps(
            {"resourceType": "Bundle", "type": "history", "entry": [{"resource": SR}]}).encode()),
        "body type differs from path": lambda: lone.send("PUT", "/Task/sr1", json.dumps(SR).encode()),
        "oversized body": lambda: lone.send("PUT", "/ServiceRequest/sr1", json.dumps(
            {**SR, "note": [{"text": "x" * LIMIT}]}).encode()),
        "unknown path": lambda: lone.send("POST", "/elsewhere/deeper/still"),
        "wrong method": lambda: lone.send("GET", ""),
    }[case]
    before = lone.queued()
    reply = send()
    assert reply.status_code == status
    outcome = reply.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert words in outcome["issue"][0]["diagnostics"]
    assert lone.queued() == before


def test_handshake_is_acknowledged_and_queues_nothing(lone: Intake) -> None:
    before = lone.queued()
    reply = lone.send("POST", "", r4_backport("s1", 0, None, kind="handshake"))
    assert reply.status_code == 200 and lone.queued() == before


def test_unreachable_queue_answers_503_so_the_server_delivers_again() -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    it, server = intake(dead)
    try:
        started = time.monotonic()
        reply = it.send("PUT", "/ServiceRequest/sr1", json.dumps(SR).encode())
        assert reply.status_code == 503
        assert reply.headers["Retry-After"]
        assert reply.json()["issue"][0]["code"] == "transient"
        assert time.monotonic() - started < 10  # answered promptly, not after a long hang
    finally:
        server.should_exit = True


def test_health_is_unavailable_when_the_fhir_server_is_down() -> None:
    it, server = intake(REDIS_URL, fhir_ok=False)
    try:
        reply = httpx.get(f"{it.url}/health")
        assert reply.status_code == 503
        assert reply.json()["checks"] == {"redis": "ok", "fhir": "down"}
    finally:
        server.should_exit = True
