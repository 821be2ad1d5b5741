"""Bad input gets a 4xx with an OperationOutcome and nothing is queued; an unreachable queue a 503.

The API here is the real application served over HTTP, enqueueing into real Redis on a queue no
worker reads, so what was queued can be counted.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import redis
import uvicorn

from adapter.dev.sandbox import free_port
from adapter.intake.app import Check, Limits, QueueUnavailable, create_app
from adapter.pipeline.envelope import Envelope
from adapter.pipeline.state import State
from tests.support.shapes import BACKPORT_STATUS, r4_backport, subscription_status
from tests.support.stack import REDIS_URL, TOKEN, unique, wait_for

LIMIT = 64 * 1024
SR = {
    "resourceType": "ServiceRequest",
    "id": "sr1",
    "meta": {"versionId": "1"},
    "status": "active",
    "intent": "order",
    "subject": {"reference": "Patient/p1"},
}


@dataclass
class Intake:
    url: str
    queue: str
    r: redis.Redis

    def queued(self) -> int:
        return int(self.r.llen(self.queue))

    def send(
        self,
        method: str,
        path: str = "",
        body: bytes | None = None,
        *,
        token: str | None = TOKEN,
        content_type: str = "application/fhir+json",
    ) -> httpx.Response:
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


def intake(
    redis_url: str,
    fhir_ok: bool = True,
    *,
    limits: Limits | None = None,
    operator_token: str | None = None,
    **options: object,
) -> tuple[Intake, uvicorn.Server]:
    """The real API enqueueing with the real publish (``enqueue_notification``) on a queue of its own."""
    from adapter.pipeline.worker import app as celery
    from adapter.pipeline.worker import enqueue_notification

    queue = unique("mmr-intake")
    r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    conn = celery.connection_for_write(redis_url)

    def enqueue(envelopes: tuple[Envelope, ...]) -> None:
        try:
            enqueue_notification(
                envelopes,
                queue=queue,
                connection=conn,
                retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.1},
            )
        except Exception as exc:
            raise QueueUnavailable(type(exc).__name__) from exc

    api = create_app(
        token=TOKEN,
        enqueue=enqueue,
        state=State(r),
        queue_depth=lambda: r.llen(queue),
        checks={"redis": always(True), "fhir": always(fhir_ok)},
        limits=limits or Limits(max_body_bytes=LIMIT),
        operator_token=operator_token,
    )
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


@pytest.mark.parametrize(
    ("case", "status", "words"),
    [
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
    ],
)
def test_bad_input_gets_a_4xx_operation_outcome_and_nothing_is_queued(
    lone: Intake, case: str, status: int, words: str
) -> None:
    send = {
        "no token": lambda: lone.send("PUT", "/ServiceRequest/sr1", json.dumps(SR).encode(), token=None),
        "wrong token": lambda: lone.send("PUT", "/ServiceRequest/sr1", json.dumps(SR).encode(), token=TOKEN + "x"),
        "not JSON": lambda: lone.send("POST", "", b"{this is not json"),
        "XML": lambda: lone.send("POST", "", b"<Bundle/>", content_type="application/fhir+xml"),
        "Bundle of the wrong type": lambda: lone.send(
            "POST", "", json.dumps({"resourceType": "Bundle", "type": "searchset", "entry": []}).encode()
        ),
        "Bundle without a status entry": lambda: lone.send(
            "POST", "", json.dumps({"resourceType": "Bundle", "type": "history", "entry": [{"resource": SR}]}).encode()
        ),
        "body type differs from path": lambda: lone.send("PUT", "/Task/sr1", json.dumps(SR).encode()),
        "oversized body": lambda: lone.send(
            "PUT", "/ServiceRequest/sr1", json.dumps({**SR, "note": [{"text": "x" * LIMIT}]}).encode()
        ),
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


# ------------------------------------------------------------------ whole or nothing, and the replies HAPI parses


def messages(it: Intake) -> list[tuple[str, list]]:
    """The queued messages as (task name, positional arguments), oldest first."""
    out = []
    for raw in reversed(it.r.lrange(it.queue, 0, -1)):
        message = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        out.append((message["headers"]["task"], args))
    return out


def topic(*focuses: str, bad_last: bool = False) -> bytes:
    events = [
        {
            "name": "notification-event",
            "part": [
                {"name": "event-number", "valueString": str(n)},
                {"name": "focus", "valueReference": {"reference": ref}},
            ],
        }
        for n, ref in enumerate(focuses, 1)
    ]
    if bad_last:
        events[-1]["part"][1]["valueReference"] = "not an object"
    status = {
        "resourceType": "Parameters",
        "meta": {"profile": [BACKPORT_STATUS]},
        "parameter": [
            {"name": "subscription", "valueReference": {"reference": "Subscription/s1"}},
            {"name": "type", "valueCode": "event-notification"},
            *events,
        ],
    }
    return json.dumps({"resourceType": "Bundle", "type": "history", "entry": [{"resource": status}]}).encode()


@pytest.fixture()
def fresh() -> Iterator[Intake]:
    it, server = intake(REDIS_URL, limits=Limits(max_body_bytes=LIMIT, max_events=5))
    yield it
    server.should_exit = True
    it.r.delete(it.queue)


def test_a_multi_event_notification_is_one_message(fresh: Intake) -> None:
    from adapter.pipeline.worker import FAN_OUT, PROCESS

    reply = fresh.send("POST", "", topic("Task/a", "Task/b", "ServiceRequest/c"))
    assert reply.status_code == 202
    ((task, args),) = messages(fresh)
    assert task == FAN_OUT
    assert [(e["resource_type"], e["resource_id"], e["topic_event"]) for e in args[0]] == [
        ("Task", "a", "Subscription/s1#1"),
        ("Task", "b", "Subscription/s1#2"),
        ("ServiceRequest", "c", "Subscription/s1#3"),
    ]
    assert fresh.send("PUT", "/ServiceRequest/sr1", json.dumps(SR).encode()).status_code == 202
    assert [t for t, _ in messages(fresh)] == [FAN_OUT, PROCESS]  # a single event travels as itself


def test_a_notification_bad_in_its_last_event_queues_none_of_them(fresh: Intake) -> None:
    reply = fresh.send("POST", "", topic("Task/a", "Task/b", "Task/c", bad_last=True))
    assert reply.status_code == 400
    assert reply.json()["issue"][0]["expression"] == ["Bundle.entry[0].resource.parameter[4].part[1].valueReference"]
    assert fresh.queued() == 0


def test_more_events_than_allowed_is_413_and_queues_nothing(fresh: Intake) -> None:
    reply = fresh.send("POST", "", topic(*(f"Task/t{n}" for n in range(6))))
    assert reply.status_code == 413 and reply.json()["issue"][0]["code"] == "too-costly"
    assert fresh.queued() == 0


@pytest.mark.parametrize("depth", [480, 5000])
def test_a_deeply_nested_body_is_400(fresh: Intake, depth: int) -> None:
    body = b'{"resourceType": "Task", "id": "abc", "x": ' + b"[" * depth + b"]" * depth + b"}"
    reply = fresh.send("POST", "", body)
    assert reply.status_code == 400 and "nested deeper" in reply.json()["issue"][0]["diagnostics"]
    assert fresh.queued() == 0


def test_topic_notifications_are_answered_with_a_bundle(lone: Intake) -> None:
    """HAPI parses the reply to a topic notification as a Bundle (else HAPI-1814 and a minute of retries)."""
    for body, status in (
        (r4_backport("s1", 7, "Task/abc", {"resourceType": "Task", "id": "abc"}), 202),
        (subscription_status("s1", 3, "Task/abc", None), 202),
        (r4_backport("s1", 0, None, kind="heartbeat"), 200),
        (subscription_status("s1", 0, None, kind="handshake"), 200),
    ):
        reply = lone.send("POST", "", body)
        assert reply.status_code == status
        assert reply.headers["content-type"].startswith("application/fhir+json")
        assert reply.json() == {"resourceType": "Bundle", "type": "transaction-response"}
    rest_hook = lone.send("PUT", "/ServiceRequest/sr1", json.dumps(SR).encode())
    assert rest_hook.json()["resourceType"] == "OperationOutcome"
    refused = lone.send("POST", "", r4_backport("s1", 0, None, kind="bogus"))
    assert refused.status_code == 400 and refused.json()["resourceType"] == "OperationOutcome"


# ------------------------------------------------------------------ health, metrics, docs


def test_health_is_cached_and_a_silent_fhir_server_is_down_within_the_timeout() -> None:
    """The real readiness checks against a FHIR server that accepts connections and never answers."""
    from adapter.config import load_settings
    from adapter.intake.api import readiness_checks

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    settings = load_settings(
        fhir_base_url=f"http://127.0.0.1:{silent.getsockname()[1]}/fhir", redis_url=REDIS_URL, health_timeout=0.5
    )
    calls = []
    checks = readiness_checks(settings)
    fhir_check = checks["fhir"]

    async def counted() -> bool:
        calls.append(1)
        return await fhir_check()

    r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    api = create_app(
        token=TOKEN,
        enqueue=lambda _: None,
        state=State(r),
        queue_depth=lambda: 0,
        checks={"redis": checks["redis"], "fhir": counted},
        limits=Limits(health_cache=60),
    )
    url, server = serve(api)
    try:
        replies = [httpx.get(f"{url}/health", timeout=10) for _ in range(5)]
        assert [x.status_code for x in replies] == [503] * 5
        checks_seen = replies[0].json()["checks"]
        assert checks_seen["redis"] == "ok" and checks_seen["fhir"] in ("down: timeout", "down: ReadTimeout")
        assert len(calls) == 1  # one round of checks serves every call within MMR_HEALTH_CACHE
    finally:
        server.should_exit = True
        silent.close()


def test_metrics_and_docs_need_the_operator_token_when_one_is_set() -> None:
    operator = "operator-" + uuid.uuid4().hex
    it, server = intake(REDIS_URL, operator_token=operator)
    try:
        for path in ("/metrics", "/docs", "/openapi.json"):
            assert httpx.get(f"{it.url}{path}").status_code == 401, path
            assert httpx.get(f"{it.url}{path}", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 401
            assert httpx.get(f"{it.url}{path}", headers={"Authorization": f"Bearer {operator}"}).status_code == 200
        assert httpx.get(f"{it.url}/health").status_code == 200  # health stays open for the orchestrator
    finally:
        server.should_exit = True


def test_the_docs_page_loads_nothing_from_elsewhere(lone: Intake) -> None:
    page = httpx.get(f"{lone.url}/docs")
    assert page.status_code == 200 and "/notify" in page.text
    assert "<script" not in page.text and "<link" not in page.text
    assert not re.search(r"(src|href)=['\"](https?:)?//", page.text)


def test_metrics_say_redis_answered(lone: Intake) -> None:
    assert re.search(r"^mmr_redis_up 1\.0$", httpx.get(f"{lone.url}/metrics", timeout=10).text, re.M)


def test_metrics_answer_with_redis_gone_and_say_so() -> None:
    """Redis unreachable: /metrics still answers (the API's own series), with ``mmr_redis_up 0`` for an
    alert to fire on, instead of the pipeline's series silently vanishing."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    gone = redis.Redis(port=closed.getsockname()[1], socket_connect_timeout=0.5, decode_responses=True)
    api = create_app(
        token=TOKEN, enqueue=lambda _: None, state=State(gone), queue_depth=lambda: 0, checks={"redis": always(False)}
    )
    url, server = serve(api)
    try:
        reply = httpx.get(f"{url}/metrics", timeout=10)
        assert reply.status_code == 200
        assert re.search(r"^mmr_redis_up 0\.0$", reply.text, re.M), reply.text
        assert "mmr_notify_seconds_bucket" in reply.text and "mmr_queue_depth" not in reply.text
    finally:
        server.should_exit = True
        closed.close()
