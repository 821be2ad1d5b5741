"""How long a full garbage collection stops the API process, with and without ``gc.freeze()``.

Builds the API as ``mmr-adapter serve`` does (settings from a throwaway environment; nothing is
served, nothing connects) and times ``gc.collect()`` over what exists after start-up: the pause
every full collection adds to the requests in flight. ``adapter.intake.app`` freezes that heap
when the app starts serving. Run: ``python bench/gcpause.py``.
"""

from __future__ import annotations

import gc
import os
import statistics
import time


def full_collection_ms(times: int = 5) -> float:
    pauses = []
    for _ in range(times):
        started = time.perf_counter()
        gc.collect()
        pauses.append((time.perf_counter() - started) * 1000)
    return statistics.median(pauses)


def main() -> None:
    os.environ.update(
        {
            "MMR_FHIR_BASE_URL": "http://127.0.0.1:9/fhir",
            "MMR_WEBHOOK_TOKEN": "gc-pause-" + "x" * 16,
            "MMR_REDIS_URL": "redis://127.0.0.1:6379/12",
            "MMR_LOG_LEVEL": "WARNING",
        }
    )
    from adapter.intake.api import app_from_settings

    app_from_settings()
    print(f"objects tracked by the GC after start-up: {len(gc.get_objects())}")
    print(f"full collection, median of 5: {full_collection_ms():.1f} ms")
    gc.freeze()
    print(f"after gc.freeze() ({gc.get_freeze_count()} objects frozen): {full_collection_ms():.1f} ms")


if __name__ == "__main__":
    main()
