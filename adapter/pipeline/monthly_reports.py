"""The monthly MeasureReports, published by beat on the first working day of a month for the month before.

Beat runs :func:`publish_if_due` daily (the lead registers it in ``worker.beat_schedule``). It is
idempotent twice over: on any day but the first working day it does nothing, and on that day it
asks the server whether the month's reports already exist (the region's first summary report: a
publish is one transaction, so one report stands for all) before refreshing the flow store and
computing the figures. A missed day (beat down on the first working day) is caught up by
``mmr-adapter flow --publish``; a beat that runs twice on the day finds the reports and stops.
"""

from __future__ import annotations

import importlib
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from adapter.workflow.calendar import STOCKHOLM, is_working_day

if TYPE_CHECKING:
    from adapter.config import Settings
    from adapter.fhir.client import FhirClient
    from adapter.operations.publish import Published

Period = tuple[date, date]


def month_before(day: date) -> Period:
    end = day.replace(day=1) - timedelta(days=1)
    return end.replace(day=1), end


def first_working_day(year: int, month: int) -> date:
    day = date(year, month, 1)
    while not is_working_day(day):
        day += timedelta(days=1)
    return day


def month_to_publish(today: date) -> Period | None:
    """The month whose reports are due today: the month before, on this month's first working day."""
    if today != first_working_day(today.year, today.month):
        return None
    return month_before(today)


def snapshot(period: Period) -> datetime:
    """The figures' moment for a month: midnight after its last day, Swedish time."""
    return datetime.combine(period[1] + timedelta(days=1), time(0), tzinfo=STOCKHOLM)


def published(fhir: FhirClient, period: Period) -> bool:
    """Whether the month's reports are on the server (any one of a publish's transaction will do)."""
    from adapter.flow import measures
    from adapter.mappings import measure_definitions

    first = next(m for m in measure_definitions() if "summary" in m.reports)
    ident = measures.identifier_value(None, first.id, "summary", period)
    return bool(fhir.search("MeasureReport", {"_id": measures.report_id(ident)}))


def publish_if_due(settings: Settings, today: date, fhir: FhirClient) -> Published | None:
    """Beat's daily check: refresh, compute and publish the month before when today is its day.

    The flow pieces are imported lazily by their contract names (``adapter.operations.flow.refresh``,
    ``adapter.flow.figures.compute``): the worker starts without the flow store's dependencies
    loaded, and only this job pays for them, once a month.
    """
    period = month_to_publish(today)
    if period is None or published(fhir, period):
        return None
    import duckdb

    from adapter.operations.publish import publish

    # By name: the store and the figures are another piece of issue 24 (the contract's names).
    flow = importlib.import_module("adapter.operations.flow")
    flow_figures = importlib.import_module("adapter.flow.figures")
    flow.refresh(settings)
    db = getattr(settings, "flow_db", None) or settings.state_dir / "flow.duckdb"
    guarantee = int(getattr(settings, "care_guarantee_days", 90))
    with duckdb.connect(str(db), read_only=True) as con:
        figures: dict[str, Any] = flow_figures.compute(
            con, snapshot(period), period[0], period[1], guarantee_days=guarantee
        )
    return publish(settings, figures, period, fhir=fhir)
