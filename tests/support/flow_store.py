"""A real flow store (DuckDB, ``adapter/flow/schema.sql``) filled with journeys built from a few moments.

The figures read only the store's tables, so their tests write the rows a journey leaves there
directly: one call per Task version (the owner carries over until changed), one per Appointment.
The adapter's own tables (``calendar``, ``task_state``, ``directory``) are filled from the same
sources the store uses: the Swedish calendar, ``mappings/task-states.yaml``, the directory. Moments
are written ``"2026-12-23 10:00"``, Stockholm time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from adapter.mappings import directory, task_state_tables
from adapter.workflow.calendar import STOCKHOLM, is_working_day

SCHEMA = Path(__file__).resolve().parents[2] / "adapter" / "flow" / "schema.sql"
KEEP: Any = object()  # "the owner the previous version had"


def t(moment: str) -> datetime:
    """``"2026-12-23 10:00"`` in Stockholm time."""
    return datetime.fromisoformat(moment).replace(tzinfo=STOCKHOLM)


@dataclass
class Task:
    """One Task of ours; each :meth:`at` writes its next version."""

    store: Store
    key: str
    referral: str
    kind: str
    versions: int = 0
    owner: tuple[str, str] | None = None
    authored: datetime | None = None
    period_end: datetime | None = None

    def at(
        self,
        moment: str,
        status: str,
        business: str,
        owner: Any = KEEP,
        *,
        deadline: str | None = None,
        decided: str | None = None,
        decision: str | None = None,
    ) -> Task:
        """The version written at ``moment``; ``owner`` as ``("Organization", key)`` or None (none)."""
        when = t(moment)
        self.versions += 1
        self.authored = self.authored or when
        if owner is not KEEP:
            self.owner = owner
        if deadline:
            self.period_end = t(deadline)
        owner_type, owner_key = self.owner or (None, None)
        self.store.con.execute(
            "INSERT INTO mmr_task_version VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                self.key,
                self.versions,
                self.referral,
                self.kind,
                status,
                business,
                owner_key,
                owner_type,
                self.authored,
                when,
                self.authored,
                self.period_end,
                None,
                t(decided) if decided else None,
                decision,
                when,
            ],
        )
        return self


@dataclass
class Store:
    """A DuckDB file with the schema, the calendar, the Task states and the region's directory."""

    path: Path
    con: duckdb.DuckDBPyConnection = field(init=False)
    tasks: int = 0

    def __post_init__(self) -> None:
        self.con = duckdb.connect(str(self.path))
        self.con.execute(SCHEMA.read_text(encoding="utf-8"))
        day = date(2025, 1, 1)
        days = []
        while day <= date(2028, 12, 31):
            days.append((day, is_working_day(day)))
            day += timedelta(days=1)
        self.con.executemany("INSERT INTO calendar VALUES (?, ?)", days)
        for table in task_state_tables():
            for row in table.rows:
                for status in row.statuses:
                    for business in row.business:
                        self.con.execute(
                            "INSERT INTO task_state VALUES (?, ?, ?, ?, ?, ?)",
                            [table.kind, status, business, row.final, row.ends, row.waits_for],
                        )
        d = directory()
        entries = [(c, "clinic") for c in d.clinics] + [(d.mmrpv, "unit")] + [(s, "site") for s in d.sites]
        entries.append((d.coordinator, "coordinator"))
        for order, (unit, kind) in enumerate(entries):
            self.con.execute("INSERT INTO directory VALUES (?, ?, ?, ?)", [unit.hsa_id, unit.name, kind, order])
            if kind != "site":  # sites are Locations of the unit, not Organizations
                self.con.execute("INSERT INTO mmr_organization VALUES (?, ?, ?)", [unit.hsa_id, unit.hsa_id, unit.name])
        for clinic in d.clinics:
            for reviewer in clinic.reviewers:
                self.con.execute("INSERT INTO mmr_practitioner_role VALUES (?, ?)", [reviewer.hsa_id, clinic.hsa_id])
        for site in d.sites:
            self.con.execute("INSERT INTO mmr_location VALUES (?, ?, ?)", [site.hsa_id, site.hsa_id, d.mmrpv.hsa_id])
        admin = d.mmrpv_admin  # an Organization of its own (partOf the unit), not in the directory table
        self.con.execute("INSERT INTO mmr_organization VALUES (?, ?, ?)", [admin.hsa_id, admin.hsa_id, admin.name])

    def referral(self, key: str, authored: str, clinic: str, patient: str | None = None, status: str = "active") -> str:
        """A ServiceRequest issued at ``authored`` to ``clinic``; its business identifier is ``key``."""
        self.con.execute(
            "INSERT INTO mmr_referral VALUES (?, ?, ?, ?, ?, ?, ?)",
            [f"sr-{key}", key, status, t(authored), clinic, patient or f"patient-{key}", t(authored)],
        )
        return f"sr-{key}"

    def task(self, referral: str, kind: str) -> Task:
        self.tasks += 1
        return Task(self, f"task-{self.tasks}", referral, kind)

    def appointment(
        self,
        referral: str,
        status: str,
        start: str,
        *,
        site: str | None = None,
        organization: str | None = None,
        waiting_reason: str | None = None,
        updated: str | None = None,
    ) -> None:
        """An Appointment as it stands now: at a site (a Location of the unit) or at an organisation."""
        self.tasks += 1
        self.con.execute(
            "INSERT INTO mmr_appointment VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)",
            [
                f"appt-{self.tasks}",
                referral,
                status,
                t(start),
                site,
                organization or (directory().mmrpv.hsa_id if site else None),
                waiting_reason,
                t(updated or start),
            ],
        )

    def close(self) -> None:
        self.con.close()


def org(hsa_id: str) -> tuple[str, str]:
    return ("Organization", hsa_id)


def role(hsa_id: str) -> tuple[str, str]:
    return ("PractitionerRole", hsa_id)


__all__ = ["KEEP", "Store", "Task", "org", "role", "t"]
