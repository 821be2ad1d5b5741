"""The redaction every log line goes through: personnummer out, identifiers operators need kept."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

import adapter
from adapter.logs import REDACTED, bind_correlation, configure, log, scrub


@pytest.mark.parametrize(
    "text",
    ["191212121212", "19121212-1212", "121212-1212", "1212121212", "121212+1212", "20010101-2380", "198112739803"],
)  # the last: a samordningsnummer (day 73)
def test_personnummer_and_samordningsnummer_are_redacted(text: str) -> None:
    assert scrub(f"patient {text} referred") == f"patient {REDACTED} referred"


@pytest.mark.parametrize("text", ["SE2321000255-SML1R1", "correlation 9f3e1234567890ab", "ts 20261201204512"])
def test_hsa_ids_and_other_long_numbers_that_are_no_date_are_kept(text: str) -> None:
    assert scrub(text) == text


def test_sensitive_keys_are_dropped_whatever_they_hold() -> None:
    assert scrub({"name": "Tolvan", "nested": [{"address": "Storgatan 1"}], "status": "active"}) == {
        "name": REDACTED,
        "nested": [{"address": REDACTED}],
        "status": "active",
    }


def _lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("level", ["debug", "info", "warning", "error"])
def test_any_field_name_is_a_field_even_the_loggers_own_argument_names(
    level: str, capsys: pytest.CaptureFixture[str]
) -> None:
    configure("DEBUG", json=True)
    getattr(log, level)("event ignored", event="changed Task/1/_history/2", message="m", level="x", logger="y")
    (line,) = _lines(capsys)
    assert line["message"] == "m"  # a field wins over the text, as any field does; nothing raises
    assert (line["event"], line["logger"]) == ("changed Task/1/_history/2", "y")


def test_the_bound_event_label_survives_every_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure("INFO", json=True)
    bind_correlation("c0ffee", event="changed Task/7/_history/3", attempt=1)
    log.info("event processed", outcome="applied")
    logging.getLogger("celery.worker").warning("a library line")
    lines = _lines(capsys)
    assert [(r["message"], r["event"], r["correlation_id"]) for r in lines] == [
        ("event processed", "changed Task/7/_history/3", "c0ffee"),
        ("a library line", "changed Task/7/_history/3", "c0ffee"),
    ]


def test_nothing_in_the_adapter_logs_around_the_collision_proof_logger() -> None:
    """Every module logs through ``adapter.logs.log``; structlog's own loggers take ``event`` positionally."""
    own_logger = re.compile(
        r"structlog(\.stdlib)?\.(get_logger|wrap_logger)"
        r"|from structlog(\.stdlib)? import .*get_logger"
    )
    planted = [
        "log = structlog.get_logger()",
        "structlog.stdlib.get_logger(__name__)",
        "from structlog import get_logger",
        "structlog.wrap_logger(x)",
    ]
    assert all(own_logger.search(line) for line in planted)  # the check can fail
    offenders = [
        str(p)
        for p in Path(adapter.__file__).parent.rglob("*.py")
        if p.name != "logs.py" and own_logger.search(p.read_text())
    ]
    assert offenders == []


def test_at_debug_celerys_pool_still_never_logs_task_arguments() -> None:
    configure("DEBUG", json=True)
    assert not logging.getLogger("celery.pool").isEnabledFor(logging.DEBUG)
    assert logging.getLogger("celery.worker").isEnabledFor(logging.DEBUG)
