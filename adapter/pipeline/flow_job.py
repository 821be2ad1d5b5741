"""beat's flow job: refresh the flow store from the FHIR server, compute the figures at now, and
keep the operators' now-gauges in Redis, where the API's ``/metrics`` reads them.

The gauges come from the store (a cache derived from the FHIR record), never from counters kept
beside the record: what an operator is alerted on is what a manager's report says. The samples
(``adapter/flow/gauges.py``, pure) replace the last ones whole; until the first run there are none.

The store and the figures are issue 24's other pieces (``adapter/operations/flow.py``,
``adapter/flow/figures.py``, the ``flow_db`` and ``care_guarantee_days`` settings), built in
parallel: they are reached by name here, against the contract, until they are merged.
"""

from __future__ import annotations

import importlib
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from adapter.config import Settings
from adapter.flow import gauges
from adapter.pipeline.state import State

STOCKHOLM = ZoneInfo("Europe/Stockholm")


def run(settings: Settings, state: State, at: datetime) -> int:
    """Refresh the store, compute the figures at ``at`` (the month so far as their period: the
    gauges read only the snapshot's figures) and keep their gauge samples; returns how many."""
    import duckdb

    operations: Any = importlib.import_module("adapter.operations.flow")
    figures: Any = importlib.import_module("adapter.flow.figures")
    operations.refresh(settings)
    path = Path(getattr(settings, "flow_db", None) or settings.state_dir / "flow.duckdb")
    today = at.astimezone(STOCKHOLM).date()
    with duckdb.connect(str(path), read_only=True) as con:
        result = figures.compute(
            con, at, today.replace(day=1), today, guarantee_days=int(getattr(settings, "care_guarantee_days", 90))
        )
    found = gauges.samples(result)
    state.flow.set([sample.to_json() for sample in found])
    return len(found)
