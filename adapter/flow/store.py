"""The flow store: the MMR views' rows and the adapter's own tables in one DuckDB file.

A cache derived from the FHIR server, never a source of truth (``adapter/flow/schema.sql`` holds
its tables): :func:`rebuild` makes it anew from the server, :func:`refresh` reads only what
changed since its checkpoint and must end where a rebuild would. Both run the package's MMR
ViewDefinitions (``profiles/views/``) with the embedded runner, so what lands here is exactly what
the same views give on any SQL on FHIR engine.

What it reads, and why so:

* current versions of ServiceRequest, Appointment, CarePlan, Organization, PractitionerRole and
  Location, by search with paging (a rebuild) or by their type's history since the checkpoint (a
  refresh: history shows deletions too, which a ``_lastUpdated`` search cannot);
* every version of every Task from ``Task/_history`` (``_since`` the checkpoint on a refresh, the
  epoch on a rebuild: see :data:`HISTORY_FROM`): the
  owner chains and the time on hold are in the versions, not in the current Task. HAPI and the
  sandbox both serve type-level history with ``_since`` and ``next`` paging.

The checkpoint is the server's time when a refresh began (its answer's ``meta.lastUpdated``, else
its ``Date``), less :data:`OVERLAP` on the next refresh: a transaction still committing while the
last refresh read is read again, and reading twice is harmless (every load is an upsert by key).
A refresh against another server than the checkpoint's rebuilds.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import cache
from pathlib import Path
from typing import Any

import duckdb

from adapter.conformance.package import profiles_dir
from adapter.fhir.client import FhirClient
from adapter.flow.viewdef import View, parse_view
from adapter.mappings import directory, task_state_tables
from adapter.workflow.calendar import is_working_day

SCHEMA = Path(__file__).with_name("schema.sql")
PAGE = 1000  # resources per page asked for (HAPI may give fewer; next links are followed)
OVERLAP = timedelta(minutes=5)
CHUNK = 5000  # rows per insert
# A rebuild reads Task/_history "since" the epoch, never without _since: HAPI (its default history
# count mode, CACHED_ONLY_WITHOUT_OFFSET) caches the total of a history read without _since for a
# while and stops paging at that stale total, so a rebuild soon after another one lost the oldest
# versions (history lists the newest first). With _since it pages to the end, as a refresh does.
HISTORY_FROM = "1970-01-01T00:00:00Z"
CALENDAR_FROM = date(2015, 1, 1)

# table -> (the view's file in profiles/views/, the resource type it reads, its key column)
VIEWS: dict[str, tuple[str, str, str]] = {
    "mmr_organization": ("ViewDefinition-mmr-organization.json", "Organization", "organization"),
    "mmr_practitioner_role": ("ViewDefinition-mmr-practitioner-role.json", "PractitionerRole", "role"),
    "mmr_location": ("ViewDefinition-mmr-location.json", "Location", "location"),
    "mmr_referral": ("ViewDefinition-mmr-referral.json", "ServiceRequest", "referral"),
    "mmr_appointment": ("ViewDefinition-mmr-appointment.json", "Appointment", "appointment"),
    "mmr_careplan": ("ViewDefinition-mmr-careplan.json", "CarePlan", "careplan"),
    "mmr_task_version": ("ViewDefinition-mmr-task-version.json", "Task", "task"),
}
TABLES = tuple(VIEWS)


@dataclass
class Result:
    """What a refresh did: whether it rebuilt, the view rows it loaded per table, the new checkpoint."""

    rebuilt: bool
    checkpoint: str
    loaded: dict[str, int] = field(default_factory=dict)
    deleted: int = 0


def views_dir() -> Path:
    return profiles_dir() / "views"


@cache
def view(table: str) -> View:
    """The MMR view that fills ``table``, validated."""
    return parse_view(json.loads((views_dir() / VIEWS[table][0]).read_text(encoding="utf-8")))


# ---------------------------------------------------------------- the file


def open_store(path: Path | str) -> duckdb.DuckDBPyConnection:
    """The store at ``path`` (``:memory:`` for none), its tables created when missing; days are
    Europe/Stockholm days in every query on the connection."""
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path))
    con.execute("SET TimeZone = 'Europe/Stockholm'")
    con.execute(SCHEMA.read_text(encoding="utf-8"))
    return con


def meta(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    return {k: v for k, v in con.execute("SELECT key, value FROM flow_meta").fetchall()}


# ---------------------------------------------------------------- rebuild and refresh


@contextmanager
def _transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """All of a load or none: a reader (another process, once this one lets go) sees the old store
    or the new, never half of each."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def rebuild(con: duckdb.DuckDBPyConnection, client: FhirClient, today: date) -> Result:
    """Everything anew from the server, in one transaction (a reader sees the old store or the new)."""
    with _transaction(con):
        checkpoint = server_time(client)
        for table in TABLES:
            con.execute(f"DELETE FROM {table}")
        result = Result(rebuilt=True, checkpoint=checkpoint)
        for table in TABLES:
            if table == "mmr_task_version":
                result.loaded[table] = _load_history(con, client, HISTORY_FROM)
            else:
                resource_type = VIEWS[table][1]
                result.loaded[table] = upsert(con, table, view(table).rows(search_all(client, resource_type)))
        _finish(con, client.base_url, today, checkpoint)
    return result


def load(
    con: duckdb.DuckDBPyConnection,
    resources: Iterable[Mapping[str, Any]],
    task_versions: Iterable[Mapping[str, Any]],
    today: date,
    source: str = "memory",
) -> Result:
    """The store anew from resources at hand instead of a server: the current version of every
    resource, and every version of every Task (each with its ``meta.versionId``). The same views and
    the same finishing as :func:`rebuild`, so the figures of a store loaded from a region's bulk
    export (or a test's own record of what it wrote) are the figures a server's store gives. No
    checkpoint is kept: a later :func:`refresh` against a server rebuilds from it."""
    by_type: dict[str, list[Mapping[str, Any]]] = {}
    for resource in resources:
        by_type.setdefault(str(resource.get("resourceType")), []).append(resource)
    with _transaction(con):
        for table in TABLES:
            con.execute(f"DELETE FROM {table}")
        con.execute("DELETE FROM flow_meta")
        result = Result(rebuilt=True, checkpoint="")
        for table in TABLES:
            rows = task_versions if table == "mmr_task_version" else by_type.get(VIEWS[table][1], [])
            result.loaded[table] = upsert(con, table, view(table).rows(rows))
        _finish(con, source, today, None)
    return result


def refresh(con: duckdb.DuckDBPyConnection, client: FhirClient, today: date, overlap: timedelta = OVERLAP) -> Result:
    """What changed on the server since the checkpoint (less ``overlap``); a rebuild when there is
    none, or it was another server's."""
    known = meta(con)
    if "checkpoint" not in known or known.get("server") != client.base_url:
        return rebuild(con, client, today)
    since = (datetime.fromisoformat(known["checkpoint"]) - overlap).isoformat()
    with _transaction(con):
        checkpoint = server_time(client)
        result = Result(rebuilt=False, checkpoint=checkpoint)
        for table in TABLES:
            if table == "mmr_task_version":
                result.loaded[table] = _load_history(con, client, since)
                continue
            latest: dict[str, Mapping[str, Any] | None] = {}
            for entry in history(client, VIEWS[table][1], since):
                rid, version, resource = entry
                # history lists the newest first (FHIR's http page); a higher known version wins anyway
                if rid not in latest or _newer(version, latest[rid]):
                    latest[rid] = (
                        resource if resource is not None else {"meta": {"versionId": version}, "deleted": True}
                    )
            key = VIEWS[table][2]
            gone = list(latest)
            if gone:  # every changed resource's row goes; the current version's row comes back below
                con.execute(f"DELETE FROM {table} WHERE list_contains(?, {key})", [gone])
            current = [r for r in latest.values() if r is not None and not r.get("deleted")]
            result.loaded[table] = upsert(con, table, view(table).rows(current))
        _finish(con, client.base_url, today, checkpoint)
    return result


def _newer(version: str | None, than: Mapping[str, Any] | None) -> bool:
    theirs = _version_number(((than or {}).get("meta") or {}).get("versionId"))
    return bool(theirs) and _version_number(version) > theirs


def _version_number(version: Any) -> int:
    try:
        return int(version)
    except (TypeError, ValueError):
        return 0


def _load_history(con: duckdb.DuckDBPyConnection, client: FhirClient, since: str | None) -> int:
    """Every Task version in ``Task/_history`` (since ``since``); a deletion drops the versions before it.
    Streamed: a page's Tasks become rows and go, so memory does not grow with the history."""
    deletions: list[tuple[str, int]] = []

    def versions() -> Iterator[Mapping[str, Any]]:
        for rid, version, resource in history(client, "Task", since):
            if resource is None:
                deletions.append((rid, _version_number(version)))
            else:
                yield resource

    loaded = upsert(con, "mmr_task_version", view("mmr_task_version").rows(versions()))
    for rid, number in deletions:
        con.execute("DELETE FROM mmr_task_version WHERE task = ? AND version < ?", [rid, number])
    return loaded


def _finish(con: duckdb.DuckDBPyConnection, server: str, today: date, checkpoint: str | None) -> None:
    """What every load ends with: an appointment at a Location counts for the Location's organisation;
    rows about referrals that are not MMR referrals go (the views of Task, Appointment and CarePlan
    cannot see the referral's codes); the adapter's own tables anew; the checkpoint."""
    con.execute(
        "UPDATE mmr_appointment SET organization = l.organization FROM mmr_location l "
        "WHERE mmr_appointment.organization IS NULL AND l.location = mmr_appointment.location"
    )
    con.execute(
        "UPDATE mmr_appointment SET organization = r.organization FROM mmr_practitioner_role r "
        "WHERE mmr_appointment.organization IS NULL AND r.role = mmr_appointment.practitioner_role"
    )
    for table in ("mmr_task_version", "mmr_appointment", "mmr_careplan"):
        con.execute(
            f"DELETE FROM {table} WHERE referral IS NULL OR referral NOT IN (SELECT referral FROM mmr_referral)"
        )
    write_adapter_tables(con, today)
    kept = [["server", server]] + ([["checkpoint", checkpoint]] if checkpoint is not None else [])
    con.executemany("INSERT OR REPLACE INTO flow_meta VALUES (?, ?)", kept)


# ---------------------------------------------------------------- rows


def columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]


def upsert(con: duckdb.DuckDBPyConnection, table: str, rows: Iterable[Mapping[str, Any]]) -> int:
    """Rows (a view's, by column name) into ``table``, replacing any with the same key, :data:`CHUNK`
    rows a statement with a list per column (a row at a time is a hundred times slower in DuckDB);
    of several rows with one key the last wins (history pages may overlap)."""
    names = columns(con, table)
    key = ("task", "version") if table == "mmr_task_version" else (VIEWS[table][2],) if table in VIEWS else None
    kept: dict[Any, list[Any]] = {}
    loaded = 0
    for n, row in enumerate(rows):
        kept[tuple(str(row.get(k)) for k in key) if key else n] = [row.get(name) for name in names]
        if len(kept) >= CHUNK:
            loaded += insert(con, table, names, list(kept.values()), replace=key is not None)
            kept.clear()
    return loaded + insert(con, table, names, list(kept.values()), replace=key is not None)


def insert(con: duckdb.DuckDBPyConnection, table: str, names: list[str], rows: list[list[Any]], replace: bool) -> int:
    if rows:
        lists = ", ".join(f"unnest(${i + 1}) AS {name}" for i, name in enumerate(names))
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        con.execute(
            f"{verb} INTO {table} ({', '.join(names)}) SELECT * FROM (SELECT {lists})",
            [[row[i] for row in rows] for i in range(len(names))],
        )
    return len(rows)


def write_adapter_tables(con: duckdb.DuckDBPyConnection, today: date) -> None:
    """``calendar`` (2015 to two years ahead), ``task_state`` and ``directory`` from the adapter's data."""
    con.execute("DELETE FROM calendar")
    end = date(today.year + 2, today.month, 28 if (today.month, today.day) == (2, 29) else today.day)
    days = [CALENDAR_FROM + timedelta(n) for n in range((end - CALENDAR_FROM).days + 1)]
    insert(con, "calendar", ["day", "working"], [[d, is_working_day(d)] for d in days], replace=False)
    con.execute("DELETE FROM task_state")
    names = ["kind", "status", "business_status", "final", "ends", "waits_for"]
    insert(con, "task_state", names, [list(r) for r in task_state_rows()], replace=False)
    con.execute("DELETE FROM directory")
    insert(con, "directory", ["hsa_id", "name", "kind", "ord"], [list(r) for r in directory_rows()], replace=False)


def task_state_rows() -> Iterator[tuple[str, str, str, bool, bool, str | None]]:
    """``mappings/task-states.yaml``, one row per (kind, status, business status)."""
    for table in task_state_tables():
        for row in table.rows:
            for status in row.statuses:
                for business in row.business:
                    yield table.kind, status, business, row.final, row.ends, row.waits_for


def directory_rows() -> list[tuple[str, str, str, int]]:
    """The clinics, the MMRpv unit, its sites and the coordinator, in the directory's order."""
    d = directory()
    units = [(c, "clinic") for c in d.clinics] + [(d.mmrpv, "unit")] + [(s, "site") for s in d.sites]
    units.append((d.coordinator, "coordinator"))
    return [(u.hsa_id, u.name, kind, i) for i, (u, kind) in enumerate(units)]


# ---------------------------------------------------------------- reading the server


def search_all(client: FhirClient, resource_type: str) -> Iterator[dict[str, Any]]:
    """Every current resource of the type, page by page."""
    for bundle in client.pages(resource_type, {"_count": str(PAGE)}, max_pages=1_000_000):
        for entry in bundle.get("entry") or ():
            resource = entry.get("resource") or {}
            if resource.get("resourceType") == resource_type:
                yield resource


def history(
    client: FhirClient, resource_type: str, since: str | None
) -> Iterator[tuple[str, str | None, dict[str, Any] | None]]:
    """``(id, versionId, resource)`` of every entry of the type's history since ``since``; a deletion
    has no resource (its version read from the request or response)."""
    params = {"_count": str(PAGE)} | ({"_since": since} if since else {})
    for bundle in client.pages(f"{resource_type}/_history", params, max_pages=1_000_000):
        for entry in bundle.get("entry") or ():
            resource = entry.get("resource")
            request = entry.get("request") or {}
            deleted = request.get("method") == "DELETE"
            if isinstance(resource, dict) and resource.get("resourceType") == resource_type and not deleted:
                yield str(resource.get("id")), (resource.get("meta") or {}).get("versionId"), resource
            elif deleted or resource is None:
                rid, version = _deleted(entry, resource_type)
                if rid:
                    yield rid, version, None


def _deleted(entry: Mapping[str, Any], resource_type: str) -> tuple[str | None, str | None]:
    """The id and version of a deletion entry: ``Type/id`` or ``Type/id/_history/n`` in its request, full
    URL or response location; the version from the ETag when the URL has none."""
    response = entry.get("response") or {}
    for url in ((entry.get("request") or {}).get("url"), entry.get("fullUrl"), response.get("location")):
        if not isinstance(url, str) or f"{resource_type}/" not in url:
            continue
        parts = url.split(f"{resource_type}/", 1)[1].split("/")
        version = parts[2] if len(parts) > 2 and parts[1] == "_history" else None
        etag = str(response.get("etag") or "").removeprefix("W/").strip('"')
        return parts[0].split("?")[0], version or etag or None
    return None, None


def server_time(client: FhirClient) -> str:
    """The server's clock now: a small search's ``meta.lastUpdated``, else its ``Date`` header."""
    response = client.request("GET", "ServiceRequest?_count=1&_summary=count")
    stamp = (response.json().get("meta") or {}).get("lastUpdated")
    if isinstance(stamp, str):
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).isoformat()
    header = response.headers.get("date")
    moment = parsedate_to_datetime(header) if header else datetime.now(UTC)
    return moment.astimezone(UTC).isoformat()
