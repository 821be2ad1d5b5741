"""Structured logs with a correlation id per event, and never a name or personnummer in a line.

Redaction is a processor at the end of the chain, so it also covers what a library or a careless
``log.info(..., resource=...)`` puts in.
"""

from __future__ import annotations

import logging
import re
import sys
import uuid
from typing import Any

import structlog

# A personnummer or samordningsnummer, with or without century and separator: ten or twelve digits
# whose date part is a plausible date (day + 60 for a samordningsnummer). The check digit is not
# tested, so a mistyped number is redacted too; an HSA-id such as SE2321000255 (month 21) is not.
PERSONNUMMER = re.compile(r"(?<!\d)(?:19|20)?\d{2}(\d{2})(\d{2})[-+]?\d{4}(?!\d)")
SENSITIVE_KEYS = frozenset({"name", "given", "family", "personnummer", "birthdate", "birth_date", "address",
                            "telecom", "patient_name", "text", "payload", "resource", "body"})
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


def _redact(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    return {k: REDACTED if k.lower() in SENSITIVE_KEYS else scrub(v) for k, v in event_dict.items()}


def configure(level: str = "INFO", json: bool = True) -> None:
    """Configure structlog and route the standard library's logging through the same redaction."""
    shared = [
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
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processor=renderer, foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared]))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def new_correlation_id() -> str:
    return uuid.uuid4().hex[:16]


def bind_correlation(correlation_id: str, **fields: Any) -> None:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(correlation_id=correlation_id, **fields)


log = structlog.get_logger("mmr")
