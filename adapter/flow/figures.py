"""The flow figures: the SQL files of ``mappings/figures/`` run over the store, one dict out.

The rules are data (``mappings/figures/*.sql``, DuckDB's dialect, reading only the tables of
``schema.sql``), so a region's analyst can read and rerun each figure in any DuckDB without this
package; this module only binds the parameters, runs the files and shapes their rows into the
figures dict the CLI, the page, the Measures and the gauges share (issue 24's contract). It writes
nothing but temporary tables, so a read-only connection to the store is enough.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from functools import cache
from typing import Any

import duckdb

from adapter.mappings import flow_rules, mappings_dir
from adapter.workflow.calendar import STOCKHOLM, local

HOLD_REASONS = tuple(flow_rules().hold_reasons)  # mappings/flow.yaml: waiting for the referrer, the patient
# Medians and percentiles are interpolated (DuckDB's quantile_cont): floats, null when nothing counted.
_FLOATS = frozenset({"review_median_working_days", "first_visit_median_days", "first_visit_p90_days"})
_PARAMETER = re.compile(r"\$([a-z_]+)")
_COMMENT = re.compile(r"--[^\n]*")
_STATEMENT_END = re.compile(r";\s*$", re.MULTILINE)


@cache
def sql(name: str) -> str:
    """The text of ``mappings/figures/NAME.sql``."""
    return (mappings_dir() / "figures" / f"{name}.sql").read_text(encoding="utf-8")


def _run(con: duckdb.DuckDBPyConnection, name: str, values: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Run each statement of a figure file with the parameters it names (DuckDB refuses extra ones)."""
    rows: list[tuple[Any, ...]] = []
    for statement in _STATEMENT_END.split(sql(name)):
        code = _COMMENT.sub("", statement).strip()  # a comment may name a parameter it does not bind
        if not code:
            continue
        used = {key: values[key] for key in dict.fromkeys(_PARAMETER.findall(code))}
        rows = con.execute(code, used).fetchall()
    return rows


def _snapshot(con: duckdb.DuckDBPyConnection, at: datetime) -> None:
    _run(con, "base", {"at": at})


def empty(organization: str | None, name: str, kind: str) -> dict[str, Any]:
    """One organisation's figures with nothing counted: every key of the figures object, the one
    place that names them (the page, the gauges and the Measures read these keys)."""
    return {
        "organization": organization,
        "name": name,
        "kind": kind,
        "reviews_decided": 0,
        "reviews_within_deadline": 0,
        "review_median_working_days": None,
        "reviews_overdue_now": 0,
        "waiting_now": 0,
        "waiting_0_30": 0,
        "waiting_31_60": 0,
        "waiting_61_90": 0,
        "waiting_over_90": 0,
        "waiting_patient_chosen": 0,
        "waiting_medical": 0,
        "first_visits": 0,
        "first_visit_median_days": None,
        "first_visit_p90_days": None,
        "first_visit_max_days": None,
        "first_visits_within_guarantee": 0,
        "on_hold_median_days": dict.fromkeys(HOLD_REASONS),
        "organisations_per_referral": {},
        "re_referrals_after_rejection": 0,
        "nobody_responsible": [],
    }


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _fill(rows: list[tuple[Any, ...]], columns: tuple[str, ...], scopes: dict[str | None, dict[str, Any]]) -> None:
    """Copy a figure file's per-scope rows (scope first, then ``columns``) into the scopes they name."""
    for scope, *values in rows:
        if scope in scopes:
            for column, value in zip(columns, values, strict=True):
                scopes[scope][column] = _float(value) if column in _FLOATS else value


def compute(
    con: duckdb.DuckDBPyConnection,
    at: datetime,
    start: date,
    end: date,
    clinic: str | None = None,
    guarantee_days: int = 90,
) -> dict[str, Any]:
    """The figures at the snapshot ``at`` for the period ``start``..``end`` (dates, inclusive).

    ``clinic``: one organisation's HSA id (a clinic, the unit or a site) instead of all of them; the
    region stays over everything. Raises ``ValueError`` for an HSA id the directory does not list.
    """
    at = local(at)
    directory = con.execute(
        "SELECT hsa_id, name, kind FROM directory WHERE kind IN ('clinic', 'unit', 'site') ORDER BY ord, hsa_id"
    ).fetchall()
    if clinic is not None and clinic not in {hsa for hsa, _, _ in directory}:
        raise ValueError(f"{clinic} is no specialist clinic, MMRpv unit or site of the directory")
    scopes: dict[str | None, dict[str, Any]] = {hsa: empty(hsa, name, kind) for hsa, name, kind in directory}
    scopes[None] = empty(None, "Region", "region")
    values: dict[str, Any] = {"at": at, "from": start, "to": end, "guarantee_days": guarantee_days}
    _snapshot(con, at)
    _fill(
        _run(con, "reviews", values),
        ("reviews_decided", "reviews_within_deadline", "review_median_working_days", "reviews_overdue_now"),
        scopes,
    )
    _fill(
        _run(con, "waiting", values),
        (
            "waiting_now",
            "waiting_0_30",
            "waiting_31_60",
            "waiting_61_90",
            "waiting_over_90",
            "waiting_patient_chosen",
            "waiting_medical",
        ),
        scopes,
    )
    _fill(
        _run(con, "first_visits", values),
        (
            "first_visits",
            "first_visit_median_days",
            "first_visit_p90_days",
            "first_visit_max_days",
            "first_visits_within_guarantee",
        ),
        scopes,
    )
    _fill(_run(con, "re_referrals", values), ("re_referrals_after_rejection",), scopes)
    for scope, reason, median in _run(con, "on_hold", values):
        if scope in scopes and reason in HOLD_REASONS:
            scopes[scope]["on_hold_median_days"][reason] = _float(median)
    for scope, organisations, referrals in sorted(_run(con, "organisations", values), key=lambda r: r[1]):
        if scope in scopes:
            scopes[scope]["organisations_per_referral"][str(organisations)] = referrals
    for scope, identifier in _run(con, "nobody", values):
        if scope in scopes:
            scopes[scope]["nobody_responsible"].append(identifier)
    weekly = [
        {"organization": org, "week": week, "decided": decided, "within_deadline": within}
        for org, week, decided, within in _run(con, "weekly_reviews", values)
        if clinic is None or org == clinic
    ]
    steps = _run(con, "waiting_steps", values)
    by_step = [{"step": step, "age": age, "referrals": referrals} for step, age, referrals in steps]
    region = scopes.pop(None)
    return {
        "at": at.isoformat(),
        "from": start.isoformat(),
        "to": end.isoformat(),
        "guarantee_days": guarantee_days,
        "organisations": [figures for hsa, figures in scopes.items() if clinic is None or hsa == clinic],
        "region": region,
        "weekly_reviews": weekly,
        "waiting_by_step": by_step,
        "nobody_responsible": list(region["nobody_responsible"]),
    }


def waiting_beyond_guarantee(
    con: duckdb.DuckDBPyConnection, at: datetime, guarantee_days: int = 90
) -> dict[str, list[str]]:
    """The business identifiers of the referrals waiting beyond the care guarantee at ``at``, per
    organisation (HSA id) where they wait: what the subject-list MeasureReport names. The figures
    count them only in buckets; a list of names is asked for on its own, by who publishes it."""
    _snapshot(con, local(at))
    found: dict[str, list[str]] = {}
    for scope, identifier in _run(con, "waiting_beyond", {"at": local(at), "guarantee_days": guarantee_days}):
        if scope is not None:
            found.setdefault(str(scope), []).append(str(identifier))
    return found


def owner_chain(con: duckdb.DuckDBPyConnection, identifier: str, at: datetime | None = None) -> list[dict[str, Any]]:
    """Who held the referral ``identifier`` (business identifier), in turn, and for how many days.

    ``to`` is ``None`` while the organisation still holds it; its ``days`` then run to ``at``
    (default: now). Empty for a referral the store does not hold.
    """
    at = local(at or datetime.now(STOCKHOLM))
    _snapshot(con, at)
    return [
        {
            "organization": organization,
            "name": name,
            "from": local(since).isoformat(),
            "to": local(until).isoformat() if until else None,
            "days": days,
        }
        for organization, name, since, until, days in _run(con, "owner_chain", {"identifier": identifier, "at": at})
    ]


__all__ = ["compute", "empty", "owner_chain", "sql", "waiting_beyond_guarantee"]
