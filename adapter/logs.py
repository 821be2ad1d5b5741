"""Structured logs with a correlation id per event, and never a name or personnummer in a line.

Redaction is a processor at the end of the chain, so it also covers what a library or a careless
``log.info(..., resource=...)`` puts in.

Log fields can never collide with the logger's own arguments: :data:`log` takes the message as a
positional-only argument and hands the fields on as one mapping, so ``log.info("x", event=...)``
is a field like any other. A line's text is its ``message``; ``event`` is the label of the event it
is about (bound once per event with :func:`bind_correlation`).
"""

from __future__ import annotations

import logging
import re
import sys
import uuid
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog
from structlog.typing import Processor

# A personnummer or samordningsnummer, with or without century and separator: ten or twelve digits
# whose date part is a plausible date (day + 60 for a samordningsnummer). The check digit is not
# tested, so a mistyped number is redacted too; an HSA-id such as SE2321000255 (month 21) is not.
PERSONNUMMER = re.compile(r"(?<!\d)(?:19|20)?\d{2}(\d{2})(\d{2})[-+]?\d{4}(?!\d)")
SENSITIVE_KEYS = frozenset(
    {
        "name",
        "given",
        "family",
        "personnummer",
        "birthdate",
        "birth_date",
        "address",
        "telecom",
        "patient_name",
        "text",
        "payload",
        "resource",
        "body",
    }
)
REDACTED = "[redacted]"


def _personnummer(match: re.Match[str]) -> str:
    month, day = int(match.group(1)), int(match.group(2))
    plausible = 1 <= month <= 12 and (1 <= day <= 31 or 61 <= day <= 91)
    return REDACTED if plausible else match.group(0)


def scrub(value: Any) -> Any:
    """Replace personnummer-shaped digits in strings, recursively; drop sensitive keys' values."""
    if isinstance(value, str):
        return PERSONNUMMER.sub(_personnummer, value)
    if isinstance(value, dict):
        return {k: REDACTED if str(k).lower() in SENSITIVE_KEYS else scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    return value


def _redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
    return {k: REDACTED if k.lower() in SENSITIVE_KEYS else scrub(v) for k, v in event_dict.items()}


FIELDS = "_mmr_fields"  # where :class:`Log` hands a line's fields to structlog, out of every argument's way


def _message_and_fields(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog's positional ``event`` is the line's text: call it ``message``, then spread the fields."""
    fields = event_dict.pop(FIELDS, None) or {}
    out = {"message": event_dict.pop("event", None), **event_dict}
    out.update(fields)
    return out


def configure(level: str = "INFO", json: bool = True) -> None:
    """Configure structlog and route the standard library's logging through the same redaction."""
    shared: list[Processor] = [
        _message_and_fields,  # before the context merge, so a bound ``event`` label is not overwritten
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        _redact,
    ]
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=renderer, foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared]
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # celery.app.trace says "succeeded" and "Retry in Ns" for every task at INFO, celery.worker.strategy
    # "received" (a third of a busy worker's lines, 50 µs each in the consumer process); the adapter's own
    # "event processed" and "will retry" lines say it once, at the event's level (debug when ignored).
    for noisy in ("httpx", "httpcore", "uvicorn.access", "celery.app.trace", "celery.worker.strategy"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # At DEBUG, Celery's pool logs each task's arguments (the envelope, resource included) as one string
    # that key-based redaction cannot see into: never below INFO.
    logging.getLogger("celery.pool").setLevel(max(logging.getLevelName(level), logging.INFO))


class Log:
    """The project's logger: ``log.info("message", **fields)``; any field name is allowed."""

    def __init__(self, name: str) -> None:
        self._logger = structlog.get_logger(name)

    def _emit(self, level: str, message: str, fields: Mapping[str, Any]) -> None:
        getattr(self._logger, level)(message, **{FIELDS: dict(fields)})

    def debug(self, message: str, /, **fields: Any) -> None:
        self._emit("debug", message, fields)

    def info(self, message: str, /, **fields: Any) -> None:
        self._emit("info", message, fields)

    def warning(self, message: str, /, **fields: Any) -> None:
        self._emit("warning", message, fields)

    def error(self, message: str, /, **fields: Any) -> None:
        self._emit("error", message, fields)

    def exception(self, message: str, /, **fields: Any) -> None:
        self._emit("exception", message, fields)


def new_correlation_id() -> str:
    return uuid.uuid4().hex[:16]


def bind_correlation(correlation_id: str, **fields: Any) -> None:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(correlation_id=correlation_id, **fields)


log = Log("mmr")
