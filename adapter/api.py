"""The API process wired from settings: ``uvicorn --factory adapter.api:app_from_settings``."""

from __future__ import annotations

import redis
from fastapi import FastAPI
from kombu.exceptions import OperationalError

from adapter.cli_support import fhir_client
from adapter.config import REQUIRED_FOR_FHIR, REQUIRED_FOR_INTAKE, load_settings
from adapter.intake.app import QueueUnavailable, create_app
from adapter.logs import configure
from adapter.pipeline.envelope import Envelope
from adapter.pipeline.state import State


def app_from_settings() -> FastAPI:
    settings = load_settings(require=REQUIRED_FOR_FHIR + REQUIRED_FOR_INTAKE)
    configure(settings.log_level, settings.log_json)
    from adapter.pipeline import worker

    state = State.from_url(settings.redis_url)
    fhir = fhir_client(settings)

    def enqueue(env: Envelope) -> None:
        try:
            worker.enqueue(env)
        except (OperationalError, redis.exceptions.RedisError, OSError) as exc:
            raise QueueUnavailable(type(exc).__name__) from exc

    def fhir_ready() -> bool:
        return fhir.request("GET", "metadata?_summary=true").status_code == 200

    assert settings.webhook_token is not None
    return create_app(token=settings.webhook_token.get_secret_value(), enqueue=enqueue, state=state,
                      queue_depth=lambda: worker.queue_depth(state.r, settings.queue), fhir_ready=fhir_ready,
                      max_body_bytes=settings.max_body_bytes)
