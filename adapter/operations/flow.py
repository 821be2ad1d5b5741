"""The work of ``mmr-adapter flow`` and of beat's flow jobs, without printing: bring the flow store
up to date from the FHIR server, read the figures from it, publish a month's MeasureReports.

The store (``adapter/flow/store.py``) is a cache of the FHIR record; this is the shell around it:
the settings say which server, which file and which care guarantee, the clock says which days.
The command, the operators' gauges and the monthly reports all go through here, so they read the
same store the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

import duckdb

from adapter.config import Settings
from adapter.flow import figures as flow_figures
from adapter.flow import store
from adapter.wiring import fhir_client
from adapter.workflow.calendar import STOCKHOLM, is_working_day

if TYPE_CHECKING:
    from adapter.fhir.client import FhirClient
    from adapter.operations.publish import Published

Period = tuple[date, date]


class StoreUnavailable(Exception):
    """The flow store cannot be read: not made yet (``missing``), or busy or broken; one line."""

    def __init__(self, line: str, missing: bool = False) -> None:
        super().__init__(line)
        self.missing = missing


def refresh(settings: Settings, rebuild: bool = False, today: date | None = None) -> store.Result:
    """Read what changed on the server since the store's checkpoint (everything with ``rebuild``, or
    when the store has no checkpoint or one of another server) into ``settings.flow_path``.
    Raises :class:`StoreUnavailable` when another process holds the file."""
    try:
        con = store.open_store(settings.flow_path)
    except duckdb.Error as exc:
        raise StoreUnavailable(f"cannot write the flow store {settings.flow_path} ({_first_line(exc)})") from None
    try:
        # Not ``fresh``: its ``no-store`` makes HAPI answer a search synchronously, one page and no
        # ``next`` link (100 of 10 000 referrals read). Every search already says ``no-cache``, past
        # HAPI's 60 s search cache.
        with fhir_client(settings) as client:
            day = today or datetime.now(STOCKHOLM).date()
            return store.rebuild(con, client, day) if rebuild else store.refresh(con, client, day)
    finally:
        con.close()


@contextmanager
def reading(settings: Settings) -> Iterator[duckdb.DuckDBPyConnection]:
    """The store, read-only. DuckDB lets one process write a file at a time: while a refresh writes
    (beat's, or another command's), a reader is refused at once, and says so in one line."""
    path = settings.flow_path
    if not path.exists():
        raise StoreUnavailable(
            f"no flow store at {path}: run `mmr-adapter flow --rebuild` to make it from the FHIR server", missing=True
        )
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        raise StoreUnavailable(
            f"cannot read the flow store {path} (a refresh may be writing it): {_first_line(exc)}"
        ) from None
    try:
        yield con
    finally:
        con.close()


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def figures(settings: Settings, at: datetime, start: date, end: date, clinic: str | None = None) -> dict[str, Any]:
    """The figures at the snapshot ``at`` for the period ``start``..``end``, with the region's care
    guarantee (``MMR_CARE_GUARANTEE_DAYS``). Raises ``ValueError`` for a clinic the directory lacks."""
    with reading(settings) as con:
        return flow_figures.compute(con, at, start, end, clinic, settings.care_guarantee_days)


def owner_chain(settings: Settings, identifier: str, at: datetime) -> list[dict[str, Any]]:
    with reading(settings) as con:
        return flow_figures.owner_chain(con, identifier, at)


def month_before(day: date) -> Period:
    """The last whole month before ``day``: 2027-01-01 and 2027-01-15 both give December 2026."""
    end = day.replace(day=1) - timedelta(days=1)
    return end.replace(day=1), end


def end_of(period: Period) -> datetime:
    """A period's snapshot: midnight after its last day, Swedish time, so its last day counts whole."""
    return datetime.combine(period[1] + timedelta(days=1), time(0), tzinfo=STOCKHOLM)


def first_working_day(year: int, month: int) -> date:
    day = date(year, month, 1)
    while not is_working_day(day):
        day += timedelta(days=1)
    return day


def publish(
    settings: Settings,
    period: Period,
    at: datetime | None = None,
    fhir: FhirClient | None = None,
    found: dict[str, Any] | None = None,
) -> Published:
    """Publish the period's MeasureReports (``adapter/operations/publish.py``: idempotent), the
    figures read from the store at ``at`` (default: the period's end) unless the caller already
    has them (``found``: the command printing them too), with the subject list of the referrals
    waiting beyond the guarantee then. The store is not refreshed here: the caller decides (the
    command with ``--refresh``, beat always)."""
    from adapter.operations.publish import publish as write_reports

    at = at or end_of(period)
    with reading(settings) as con:
        if found is None:
            found = flow_figures.compute(con, at, period[0], period[1], guarantee_days=settings.care_guarantee_days)
        beyond = flow_figures.waiting_beyond_guarantee(con, at, settings.care_guarantee_days)
    return write_reports(settings, found, period, waiting_beyond=beyond, fhir=fhir)
