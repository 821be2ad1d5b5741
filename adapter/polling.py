"""Polling with a deadline: how the demo, the benchmark and the tests wait for the adapter.

Never a bare sleep: ask again every ``interval`` until the answer is truthy or time is up; where
nothing can go on without the answer, :func:`poll_or_raise`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll(predicate: Callable[[], T], timeout: float, interval: float = 0.1) -> T | None:
    """The first truthy value of ``predicate()`` within ``timeout`` seconds, else ``None``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


class TimedOut(TimeoutError):
    """What :func:`poll_or_raise` waited for did not come in time."""


def poll_or_raise(predicate: Callable[[], T], timeout: float, interval: float = 0.1, *, what: str) -> T:
    """The first truthy value of ``predicate()`` within ``timeout`` seconds; :class:`TimedOut`, naming
    ``what`` was waited for, otherwise."""
    value = poll(predicate, timeout, interval)
    if value is None:
        raise TimedOut(f"timed out after {timeout:.0f} s waiting for {what}")
    return value
