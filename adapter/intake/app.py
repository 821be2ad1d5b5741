"""The FastAPI application: ``/notify`` (every HAPI shape), ``/health``, ``/metrics`` and ``/docs``.

A notification is answered 2xx only once its events are on the Redis queue, all of them (the
``enqueue`` callback queues a notification whole or not at all); if they cannot be queued the
answer is 503, so the FHIR server delivers again. Bad input gets a 4xx with an OperationOutcome
naming the element and the problem, never a value from the request, and nothing is queued.

Topic-based notifications are posted by HAPI as a transaction and their reply parsed as a
Bundle, so a topic notification that was accepted is answered with a ``transaction-response``
Bundle; classic rest-hook notifications get an OperationOutcome. A refusal is an
OperationOutcome for both: that is what a FHIR server answers a failed transaction with, and HAPI
retries any failed delivery for 60 s whatever the body says.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import html
import re
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from adapter import __version__
from adapter.fhir.outcome import operation_outcome
from adapter.intake.metrics import IntakeMetrics, PipelineCollector, QueueView
from adapter.intake.notifications import MAX_EVENTS, BadNotification, Parsed, parse_delete, parse_post, parse_put
from adapter.logs import bind_correlation, log, new_correlation_id
from adapter.pipeline.envelope import Envelope
from adapter.pipeline.state import State

FHIR_JSON = "application/fhir+json"
# A caller's X-Request-Id is reused only as HAPI keeps it in meta.source (at most 16 letters, digits,
# ".", "_", "-"), so the id naming an event in our logs names the versions it wrote; nor may it inject.
SAFE_ID = re.compile(r"[A-Za-z0-9._-]{1,16}")
Enqueue = Callable[[tuple[Envelope, ...]], None]  # queue all of one notification's events or none
Check = Callable[[], Awaitable[bool]]
# A /health detail: None when all is well, else one line for the operator (never readiness).
Detail = Callable[[], Awaitable[str | None]]


class QueueUnavailable(Exception):
    """The queue did not take the events (Redis down): the sender must retry."""


@dataclass(frozen=True)
class Limits:
    """What one request may cost the API (docs/configuration.md)."""

    max_body_bytes: int = 1_048_576
    max_events: int = MAX_EVENTS
    body_timeout: float = 10.0  # seconds to receive the whole body once the headers are in
    health_cache: float = 5.0  # seconds a /health answer is reused
    health_timeout: float = 2.0  # seconds each readiness check may take


def outcome_response(
    status: int, text: str, code: str = "invalid", expression: str | None = None, **headers: str
) -> JSONResponse:
    severity = "information" if status < 400 else "error"
    return JSONResponse(
        operation_outcome(text, severity=severity, code=code, expression=expression),
        status_code=status,
        media_type=FHIR_JSON,
        headers=headers,
    )


def transaction_response(status: int) -> JSONResponse:
    """What HAPI's transaction client can parse: an (empty) transaction-response Bundle."""
    return JSONResponse(
        {"resourceType": "Bundle", "type": "transaction-response"}, status_code=status, media_type=FHIR_JSON
    )


@asynccontextmanager
async def frozen_heap(_: FastAPI) -> AsyncIterator[None]:
    """Keep what exists at start-up (modules, mappings, the app) out of the cyclic GC while serving.

    It lives as long as the process; a full collection walking it stops the event loop for
    50-100 ms, long enough to push /notify's p99 past 20 ms (see bench/README.md).
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class Readiness:
    """``/health``'s checks, run concurrently with a timeout each, at most once per ``ttl`` seconds.

    A flood of /health calls costs one round of checks per period: callers arriving while a round
    runs wait for it instead of starting their own.
    """

    def __init__(self, checks: Mapping[str, Check | Detail], ttl: float, timeout: float) -> None:
        self.checks, self.ttl, self.timeout = dict(checks), ttl, timeout
        self._lock = asyncio.Lock()
        self._at = float("-inf")
        self._result: dict[str, str] = {}

    async def result(self) -> dict[str, str]:
        async with self._lock:
            if time.monotonic() - self._at >= self.ttl:
                names = list(self.checks)
                values = await asyncio.gather(*(self._one(self.checks[n]) for n in names))
                self._result, self._at = dict(zip(names, values, strict=True)), time.monotonic()
            return self._result

    async def _one(self, check: Check | Detail) -> str:
        try:
            async with asyncio.timeout(self.timeout):
                answer = await check()
                return answer if isinstance(answer, str) else "ok" if answer in (True, None) else "down"
        except TimeoutError:
            return "down: timeout"
        except Exception as exc:
            return f"down: {type(exc).__name__}"


def _origin(exc: BaseException) -> str:
    """Where an unexpected exception was raised (file:line): enough to find the bug, no content."""
    frames = traceback.extract_tb(exc.__traceback__)
    return f"{frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else "?"


# Every answer /notify gives, per method, as the OpenAPI document lists them (a test elicits each).
_NOTIFY_REFUSALS = {
    400: "Bad input: the OperationOutcome names the element (issue.expression) and the problem, never a "
    "value from the request. Nothing is queued.",
    401: "Missing or wrong bearer token (MMR_WEBHOOK_TOKEN).",
    408: "The body did not arrive within MMR_BODY_TIMEOUT seconds.",
    413: "The body is larger than MMR_MAX_BODY_BYTES, or carries more than MMR_MAX_EVENTS events.",
    415: "The body is not JSON (application/fhir+json or application/json).",
    431: "The request head is larger than MMR_MAX_HEADER_BYTES; the connection is closed.",
    500: "The adapter failed on this notification (a bug, logged); the server delivers again.",
    503: "The queue (Redis) did not take the events (Retry-After), or more than MMR_MAX_CONCURRENCY requests "
    "were being served (then uvicorn's plain-text answer): deliver again.",
}
QUEUED = "Every event of the notification is queued (a topic notification gets a transaction-response Bundle)."
NOTIFY_ANSWERS: dict[str, dict[int, str]] = {
    "post": {
        200: "A handshake or heartbeat, acknowledged; nothing is queued.",
        202: QUEUED,
        **_NOTIFY_REFUSALS,
    },
    "put": {202: QUEUED, **_NOTIFY_REFUSALS},
    "delete": {
        202: QUEUED,
        **{k: v for k, v in _NOTIFY_REFUSALS.items() if k != 415},
    },  # a DELETE's body is not read as FHIR
}
_OUTCOME_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A FHIR R4 OperationOutcome",
    "required": ["resourceType", "issue"],
    "properties": {
        "resourceType": {"type": "string", "enum": ["OperationOutcome"]},
        "issue": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["severity", "code"],
                "properties": {
                    "severity": {"type": "string", "enum": ["fatal", "error", "warning", "information"]},
                    "code": {"type": "string"},
                    "diagnostics": {"type": "string"},
                    "expression": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}
_BUNDLE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An empty FHIR R4 transaction-response Bundle (what HAPI parses a topic notification's reply as)",
    "required": ["resourceType", "type"],
    "properties": {
        "resourceType": {"type": "string", "enum": ["Bundle"]},
        "type": {"type": "string", "enum": ["transaction-response"]},
    },
}
_OUTCOME_REF = {"$ref": "#/components/schemas/OperationOutcome"}


def _notify_response(status: int, description: str) -> dict[str, Any]:
    schema = (
        {"oneOf": [_OUTCOME_REF, {"$ref": "#/components/schemas/TransactionResponse"}]}
        if status < 300
        else _OUTCOME_REF
    )
    return {"description": description, "content": {FHIR_JSON: {"schema": schema}}}


def _openapi_document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document with /notify's real answers: FastAPI knows only a default 200 and a 422 that
    this API never gives (a request that does not fit a route is answered 400)."""
    from fastapi.openapi.utils import get_openapi

    spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    for path, operations in spec.get("paths", {}).items():
        for method, operation in operations.items():
            operation["responses"].pop("422", None)
            if path.startswith("/notify") and method in NOTIFY_ANSWERS:
                operation["responses"] = {
                    str(status): _notify_response(status, text) for status, text in NOTIFY_ANSWERS[method].items()
                }
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas.update({"OperationOutcome": _OUTCOME_SCHEMA, "TransactionResponse": _BUNDLE_SCHEMA})
    return spec


def _docs_page(spec: dict[str, Any]) -> str:
    """A plain page listing the endpoints and their answers: no script, nothing loaded from elsewhere."""

    def answers(op: dict[str, Any]) -> str:
        return "<br>".join(
            f"{html.escape(code)}: {html.escape(r.get('description', ''))}"
            for code, r in op.get("responses", {}).items()
        )

    rows = "".join(
        f"<tr><td>{html.escape(method.upper())}</td><td><code>{html.escape(path)}</code></td>"
        f"<td>{html.escape(op.get('summary', ''))}</td><td>{answers(op)}</td></tr>"
        for path, ops in spec.get("paths", {}).items()
        for method, op in ops.items()
    )
    title = html.escape(spec.get("info", {}).get("title", "API"))
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{title}</title></head><body>"
        f"<h1>{title}</h1><table><tr><th>method</th><th>path</th><th>what</th><th>answers</th></tr>{rows}</table>"
        f"<p>The OpenAPI document: <a href='openapi.json'>openapi.json</a>.</p></body></html>"
    )


def create_app(
    *,
    token: str,
    enqueue: Enqueue,
    state: State,
    queue_depth: Callable[[], int],
    checks: Mapping[str, Check],
    queue_view: QueueView | None = None,
    details: Mapping[str, Detail] | None = None,
    limits: Limits | None = None,
    operator_token: str | None = None,
) -> FastAPI:
    """Build the API. Every dependency is passed in, so tests and the demo wire real parts their way.

    ``checks`` are /health's readiness checks (async: /health never waits in /notify's thread
    pool); ``queue_view`` adds the oldest queued event's age and the events in progress to /metrics;
    ``details`` are reported beside them without deciding readiness (the Subscriptions).
    With ``operator_token``, /metrics, /docs and /openapi.json need it as a bearer token.
    """
    limits = limits or Limits()
    app = FastAPI(
        title="MMR adapter",
        version=__version__,
        description="A path under /notify that is none of these answers 404, a method it does not take 405, "
        "both with an OperationOutcome.",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=frozen_heap,
    )
    registry = CollectorRegistry()
    metrics = IntakeMetrics(registry)
    registry.register(PipelineCollector(state, queue_depth, queue_view))
    readiness = Readiness({**(details or {}), **checks}, limits.health_cache, limits.health_timeout)
    expected = f"Bearer {token}".encode()
    operator = f"Bearer {operator_token}".encode() if operator_token else None

    def authorised(request: Request, wanted: bytes) -> bool:
        return hmac.compare_digest(request.headers.get("authorization", "").encode(), wanted)

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limits.max_body_bytes:
            raise BadNotification(413, f"The body exceeds {limits.max_body_bytes} bytes", "too-costly")
        chunks, size = [], 0
        try:
            async with asyncio.timeout(limits.body_timeout):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limits.max_body_bytes:
                        raise BadNotification(413, f"The body exceeds {limits.max_body_bytes} bytes", "too-costly")
                    chunks.append(chunk)
        except TimeoutError:
            raise BadNotification(408, f"The body did not arrive within {limits.body_timeout:g} s", "timeout") from None
        except ClientDisconnect:
            raise BadNotification(400, "The client went away before the body was complete", "incomplete") from None
        return b"".join(chunks)

    async def accept(request: Request, parse: Callable[[bytes], Parsed]) -> Response:
        started = time.perf_counter()
        caller_id = request.headers.get("x-request-id", "")
        correlation = caller_id if SAFE_ID.fullmatch(caller_id) else new_correlation_id()
        bind_correlation(correlation)
        if not authorised(request, expected):
            metrics.rejected.labels("401").inc()
            log.info("notification refused", status=401, reason="missing or wrong bearer token")
            return outcome_response(401, "Missing or wrong bearer token", "login", **{"WWW-Authenticate": "Bearer"})
        try:
            parsed = parse(await read_body(request))
        except BadNotification as exc:
            metrics.rejected.labels(str(exc.status)).inc()
            log.info("notification refused", status=exc.status, reason=exc.text)
            return outcome_response(exc.status, exc.text, exc.code, exc.expression)
        except Exception as exc:  # a bug, never bad input: logged as one JSON line, no traceback, no content
            metrics.rejected.labels("500").inc()
            log.error("notification failed", error=type(exc).__name__, origin=_origin(exc))
            return outcome_response(500, "The adapter failed on this notification; the failure is logged", "exception")
        envelopes = tuple(replace(env, correlation_id=correlation) for env in parsed.envelopes)
        try:
            if envelopes:
                await run_in_threadpool(enqueue, envelopes)
        except QueueUnavailable as exc:
            metrics.rejected.labels("503").inc()
            log.warning("queue unavailable", error=str(exc))
            return outcome_response(
                503, "The queue is unavailable; deliver again later", "transient", **{"Retry-After": "5"}
            )
        metrics.received.labels(parsed.shape).inc()
        metrics.accept_seconds.observe(time.perf_counter() - started)
        status = 200 if parsed.acknowledge_only else 202
        if not parsed.acknowledge_only:
            log.info("notification queued", shape=parsed.shape, events=[e.label for e in envelopes])
        if parsed.topic:
            return transaction_response(status)
        if parsed.acknowledge_only:
            return outcome_response(200, f"{parsed.shape} acknowledged", "informational")
        return outcome_response(202, f"{len(envelopes)} event(s) queued", "informational")

    def content_type(request: Request) -> str | None:
        return request.headers.get("content-type")

    @app.post("/notify", summary="Ping, topic notification Bundle, or a posted resource")
    async def notify_post(request: Request) -> Response:
        return await accept(request, lambda body: parse_post(body, content_type(request), max_events=limits.max_events))

    @app.put("/notify/{resource_type}/{resource_id}", summary="Rest-hook with payload: create or update")
    async def notify_put(resource_type: str, resource_id: str, request: Request) -> Response:
        return await accept(request, lambda body: parse_put(resource_type, resource_id, body, content_type(request)))

    @app.delete("/notify/{resource_type}/{resource_id}", summary="Rest-hook with payload: delete")
    async def notify_delete(resource_type: str, resource_id: str, request: Request) -> Response:
        return await accept(request, lambda _body: parse_delete(resource_type, resource_id))

    @app.get("/health", summary="Ready when Redis and the FHIR server answer")
    async def health() -> Response:
        result = await readiness.result()
        checks_now = {name: result[name] for name in checks}
        ready = all(v == "ok" for v in checks_now.values())
        body: dict[str, Any] = {"status": "ready" if ready else "unavailable", "checks": checks_now}
        if details:
            body["details"] = {name: result[name] for name in details}
        return JSONResponse(body, status_code=200 if ready else 503)

    def operator_refused(request: Request) -> Response | None:
        if operator is None or authorised(request, operator):
            return None
        return outcome_response(401, "Missing or wrong operator token", "login", **{"WWW-Authenticate": "Bearer"})

    @app.get("/metrics", summary="Prometheus metrics")
    def prometheus(request: Request) -> Response:
        return operator_refused(request) or Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    document: dict[str, Any] = {}

    def openapi_document() -> dict[str, Any]:
        if not document:  # after every route is in place
            document.update(_openapi_document(app))
        return document

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request) -> Response:
        return operator_refused(request) or JSONResponse(openapi_document())

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> Response:
        return operator_refused(request) or HTMLResponse(_docs_page(openapi_document()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        code = "not-found" if exc.status_code == 404 else "not-supported" if exc.status_code == 405 else "invalid"
        return outcome_response(exc.status_code, str(exc.detail), code)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> Response:
        # Outside /notify (say /metrics with Redis gone). Starlette re-raises after answering, and
        # uvicorn logs the traceback through the JSON logs (serve runs it with log_config=None).
        log.error("request failed", error=type(exc).__name__, origin=_origin(exc))
        return outcome_response(500, "The adapter failed on this request; the failure is logged", "exception")

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> Response:
        return outcome_response(400, "Invalid request: the path or query does not fit this endpoint")

    return app
