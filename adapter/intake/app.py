"""The FastAPI application: ``/notify`` (every HAPI shape), ``/health`` and ``/metrics``.

A notification is answered 202 only once its events are on the Redis queue; if they cannot be
queued the answer is 503, so the FHIR server delivers again. Bad input gets a 4xx with an
OperationOutcome and nothing is queued.
"""

from __future__ import annotations

import gc
import hmac
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from adapter.fhir.outcome import operation_outcome
from adapter.intake.notifications import BadNotification, Parsed, parse_delete, parse_post, parse_put
from adapter.logs import bind_correlation, log, new_correlation_id
from adapter.metrics import IntakeMetrics, PipelineCollector
from adapter.pipeline.envelope import Envelope
from adapter.pipeline.state import State

FHIR_JSON = "application/fhir+json"
SAFE_ID = re.compile(r"[^A-Za-z0-9._-]")  # a caller's X-Request-Id may not inject into our logs
Enqueue = Callable[[Envelope], None]


class QueueUnavailable(Exception):
    """The queue did not take the event (Redis down): the sender must retry."""


def outcome_response(status: int, text: str, code: str = "invalid", expression: str | None = None,
                     **headers: str) -> JSONResponse:
    severity = "information" if status < 400 else "error"
    return JSONResponse(operation_outcome(text, severity=severity, code=code, expression=expression),
                        status_code=status, media_type=FHIR_JSON, headers=headers)


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


def create_app(*, token: str, enqueue: Enqueue, state: State, queue_depth: Callable[[], int],
               fhir_ready: Callable[[], bool], max_body_bytes: int = 1_048_576) -> FastAPI:
    """Build the API. Every dependency is passed in, so tests and the demo wire real parts their way."""
    app = FastAPI(title="MMR adapter", version="0.1.0", docs_url="/docs", redoc_url=None, lifespan=frozen_heap)
    registry = CollectorRegistry()
    metrics = IntakeMetrics(registry)
    registry.register(PipelineCollector(state, queue_depth))
    expected = f"Bearer {token}".encode()

    def authorised(request: Request) -> bool:
        return hmac.compare_digest(request.headers.get("authorization", "").encode(), expected)

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_body_bytes:
            raise BadNotification(413, f"The body exceeds {max_body_bytes} bytes", "too-costly")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body_bytes:
                raise BadNotification(413, f"The body exceeds {max_body_bytes} bytes", "too-costly")
            chunks.append(chunk)
        return b"".join(chunks)

    async def accept(request: Request, parse: Callable[[bytes], Parsed]) -> Response:
        started = time.perf_counter()
        if not authorised(request):
            metrics.rejected.labels("401").inc()
            return outcome_response(401, "Missing or wrong bearer token", "login", **{"WWW-Authenticate": "Bearer"})
        try:
            parsed = parse(await read_body(request))
        except BadNotification as exc:
            metrics.rejected.labels(str(exc.status)).inc()
            log.info("notification refused", status=exc.status, reason=exc.text)
            return outcome_response(exc.status, exc.text, exc.code, exc.expression)
        correlation = SAFE_ID.sub("", request.headers.get("x-request-id", ""))[:64] or new_correlation_id()
        bind_correlation(correlation)
        try:
            for env in parsed.envelopes:
                await run_in_threadpool(enqueue, replace(env, correlation_id=correlation))
        except QueueUnavailable as exc:
            metrics.rejected.labels("503").inc()
            log.warning("queue unavailable", error=str(exc))
            return outcome_response(503, "The queue is unavailable; deliver again later", "transient",
                                    **{"Retry-After": "5"})
        metrics.received.labels(parsed.shape).inc()
        metrics.accept_seconds.observe(time.perf_counter() - started)
        if parsed.acknowledge_only:
            return outcome_response(200, f"{parsed.shape} acknowledged", "informational")
        log.info("notification queued", shape=parsed.shape, events=[e.label for e in parsed.envelopes])
        return outcome_response(202, f"{len(parsed.envelopes)} event(s) queued", "informational")

    @app.post("/notify", summary="Ping, topic notification Bundle, or a posted resource")
    async def notify_post(request: Request) -> Response:
        return await accept(request, lambda body: parse_post(body, request.headers.get("content-type")))

    @app.put("/notify/{resource_type}/{resource_id}", summary="Rest-hook with payload: create or update")
    async def notify_put(resource_type: str, resource_id: str, request: Request) -> Response:
        return await accept(request, lambda body: parse_put(resource_type, resource_id, body,
                                                            request.headers.get("content-type")))

    @app.delete("/notify/{resource_type}/{resource_id}", summary="Rest-hook with payload: delete")
    async def notify_delete(resource_type: str, resource_id: str, request: Request) -> Response:
        return await accept(request, lambda _body: parse_delete(resource_type, resource_id))

    @app.get("/health", summary="Ready when Redis and the FHIR server answer")
    def health() -> Response:
        checks: dict[str, Any] = {}
        try:
            checks["redis"] = "ok" if state.ping() else "down"
        except Exception as exc:
            checks["redis"] = f"down: {type(exc).__name__}"
        try:
            checks["fhir"] = "ok" if fhir_ready() else "down"
        except Exception as exc:
            checks["fhir"] = f"down: {type(exc).__name__}"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ready" if ready else "unavailable", "checks": checks},
                            status_code=200 if ready else 503)

    @app.get("/metrics", summary="Prometheus metrics")
    def prometheus() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        code = "not-found" if exc.status_code == 404 else "not-supported" if exc.status_code == 405 else "invalid"
        return outcome_response(exc.status_code, str(exc.detail), code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> Response:
        return outcome_response(400, f"Invalid request: {exc.errors()[0].get('msg')}")

    return app

