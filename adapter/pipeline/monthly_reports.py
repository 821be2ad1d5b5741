"""The monthly MeasureReports, published by beat from the first working day of a month for the month before.

Beat runs :func:`publish_if_due` daily. It is idempotent twice over: before the month's first
working day it does nothing, and from then on it asks the server whether the month's reports
already exist (the region's first summary report: a publish is one transaction, so one report
stands for all) before refreshing the flow store and computing the figures. A day missed (beat
down, the store busy) is caught up the next day; ``mmr-adapter flow --publish`` does it by hand.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from adapter.operations import flow

if TYPE_CHECKING:
    from adapter.config import Settings
    from adapter.fhir.client import FhirClient
    from adapter.operations.publish import Published


def month_to_publish(today: date) -> flow.Period | None:
    """The month whose reports are due: the month before, from this month's first working day on."""
    if today < flow.first_working_day(today.year, today.month):
        return None
    return flow.month_before(today)


def published(fhir: FhirClient, period: flow.Period) -> bool:
    """Whether the month's reports are on the server (any one of a publish's transaction will do)."""
    from adapter.flow import measures
    from adapter.mappings import measure_definitions

    first = next(m for m in measure_definitions() if "summary" in m.reports)
    ident = measures.identifier_value(None, first.id, "summary", period)
    return bool(fhir.search("MeasureReport", {"_id": measures.report_id(ident)}))


def publish_if_due(settings: Settings, today: date, fhir: FhirClient) -> Published | None:
    """Beat's daily check: refresh the store, compute and publish the month before when it is due
    and not on the server yet; None when nothing was due."""
    period = month_to_publish(today)
    if period is None or published(fhir, period):
        return None
    flow.refresh(settings, today=today)
    return flow.publish(settings, period, fhir=fhir)
