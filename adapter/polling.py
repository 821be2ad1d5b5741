"""Polling with a deadline: how the demo, the benchmark and the tests wait for the adapter.

Never a bare sleep: ask again every ``interval`` until the answer is truthy or time is up.
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
