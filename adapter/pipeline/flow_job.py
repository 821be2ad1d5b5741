"""beat's flow job: refresh the flow store from the FHIR server, compute the figures at now, and
keep the operators' now-gauges in Redis, where the API's ``/metrics`` reads them.

The gauges come from the store (a cache derived from the FHIR record), never from counters kept
beside the record: what an operator is alerted on is what a manager's report says. The samples
(``adapter/flow/gauges.py``, pure) replace the last ones whole; until the first run there are none.
"""

from __future__ import annotations

from datetime import datetime

from adapter.config import Settings
from adapter.flow import gauges
from adapter.operations import flow
from adapter.pipeline.state import State
from adapter.workflow.calendar import STOCKHOLM


def run(settings: Settings, state: State, at: datetime) -> int:
    """Refresh the store, compute the figures at ``at`` (the month so far as their period: the
    gauges read only the snapshot's figures) and keep their gauge samples; returns how many."""
    today = at.astimezone(STOCKHOLM).date()
    flow.refresh(settings, today=today)
    found = gauges.samples(flow.figures(settings, at, today.replace(day=1), today))
    state.flow.set([sample.to_json() for sample in found])
    return len(found)
