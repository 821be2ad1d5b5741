"""The API process wired from settings: ``uvicorn --factory adapter.intake.api:app_from_settings``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import redis
import redis.asyncio
from fastapi import FastAPI
from kombu.exceptions import OperationalError
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from adapter.config import REQUIRED_FOR_FHIR, REQUIRED_FOR_INTAKE, Settings, load_settings
from adapter.intake.app import Check, Detail, Limits, QueueUnavailable, create_app
from adapter.logs import configure
from adapter.pipeline import delivery
from adapter.pipeline.envelope import Envelope
from adapter.pipeline.state import State
from adapter.wiring import auth_mode, health_client


def readiness_checks(settings: Settings) -> dict[str, Check]:
    """``/health``'s checks: async, one short attempt each.

    The FHIR server counts as up when ``GET metadata`` answers 200; with client-credentials auth
    the check sends no token and any answer below 500 counts.
    """
    timeout = settings.health_timeout
    in_process = settings.redis_url.startswith("memory://")  # the demo's store without Redis: always there
    store = (
        None
        if in_process
        else redis.asyncio.Redis.from_url(
            settings.redis_url, socket_connect_timeout=timeout, socket_timeout=timeout, retry=Retry(NoBackoff(), 0)
        )
    )
    anonymous = auth_mode(settings) == "client-credentials"
    fhir = health_client(settings)

    async def redis_ready() -> bool:
        return store is None or bool(await store.ping())

    async def fhir_ready() -> bool:
        reply = await fhir.get(f"{settings.fhir_base}/metadata", params={"_summary": "true"})
        return reply.status_code < 500 if anonymous else reply.status_code == 200

    return {"redis": redis_ready, "fhir": fhir_ready}


def health_details(settings: Settings, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> dict[str, Detail]:
    """``/health``'s details: the adapter's Subscriptions the server has not taken up or has given up,
    and those of its own (by their mark) that deliver to another endpoint than this adapter's
    (``adapter.pipeline.delivery``). Not with client-credentials auth, where reading them needs a token."""
    if auth_mode(settings) == "client-credentials":
        return {}
    fhir = health_client(settings)

    async def subscriptions() -> str | None:
        reply = await fhir.get(
            f"{settings.fhir_base}/Subscription",
            headers={"Cache-Control": "no-cache"},
            params={"_count": "200"},  # all of them: ours are known by their mark, not by where they deliver
        )
        reply.raise_for_status()
        found = [e.get("resource") or {} for e in reply.json().get("entry") or () if isinstance(e, dict)]
        return delivery.problems(delivery.ours(found, settings.notify_url), now(), notify_url=settings.notify_url)

    return {"subscriptions": subscriptions}


def app_from_settings() -> FastAPI:
    settings = load_settings(require=REQUIRED_FOR_FHIR + REQUIRED_FOR_INTAKE)
    configure(settings.log_level, settings.log_json)
    from adapter.pipeline import worker

    state = State.from_url(settings.redis_url)

    def enqueue(envelopes: tuple[Envelope, ...]) -> None:
        try:
            worker.enqueue_notification(envelopes)
        except (OperationalError, redis.exceptions.RedisError, OSError) as exc:
            raise QueueUnavailable(type(exc).__name__) from exc

    assert settings.webhook_token is not None
    limits = Limits(
        max_body_bytes=settings.max_body_bytes,
        max_events=settings.max_events,
        body_timeout=settings.body_timeout,
        health_cache=settings.health_cache,
        health_timeout=settings.health_timeout,
    )
    operator = settings.operator_token.get_secret_value() if settings.operator_token else None
    return create_app(
        token=settings.webhook_token.get_secret_value(),
        enqueue=enqueue,
        state=state,
        queue_depth=lambda: worker.queue_depth(state.r, settings.queue),
        queue_view=lambda: worker.queue_view(state.r, settings.queue),
        checks=readiness_checks(settings),
        details=health_details(settings),
        limits=limits,
        operator_token=operator,
    )
