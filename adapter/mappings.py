"""Typed access to the data in ``mappings/``: codes, the organisation directory, rules and texts.

The workflow never hard-codes a code, an HSA-id or a text; it asks this module, so a region can
change its directory or wording without touching Python.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Any, overload

import yaml

HSA_SYSTEM = "urn:oid:1.2.752.29.4.19"


def mappings_dir() -> Path:
    """Where the mapping files live: ``MMR_MAPPINGS_DIR`` or the repository's ``mappings/``."""
    return Path(os.environ.get("MMR_MAPPINGS_DIR") or Path(__file__).resolve().parent.parent / "mappings")


@cache
def load(name: str) -> dict[str, Any]:
    """Load ``mappings/<name>.yaml`` once per process."""
    with (mappings_dir() / f"{name}.yaml").open(encoding="utf-8") as fh:
        return yaml.safe_load(fh) or {}


# ---------------------------------------------------------------- codes


@dataclass(frozen=True)
class Codes:
    """Code systems and identifier systems, with the canonical base filled in."""

    raw: dict[str, Any]

    @cached_property
    def base(self) -> str:
        return self.raw["canonical_base"].rstrip("/")

    @overload
    def fill(self, value: str) -> str: ...
    @overload
    def fill(self, value: dict[str, Any]) -> dict[str, Any]: ...

    def fill(self, value: Any) -> Any:
        """``value`` with the canonical base put in for ``{base}``: a string, or every string in a list or
        mapping read from YAML (``mappings/``, ``profiles/``), so no data hard-codes the base."""
        if isinstance(value, str):
            return value.replace("{base}", self.base)
        if isinstance(value, list):
            return [self.fill(v) for v in value]
        if isinstance(value, dict):
            return {k: self.fill(v) for k, v in value.items()}
        return value

    def system(self, code_system: str) -> str:
        """The URL of one of our code systems, e.g. ``system("task-type")``."""
        return self.fill(self.raw["code_systems"][code_system]["url"])

    def display(self, code_system: str, code: str, lang: str = "sv") -> str:
        concept = self.raw["code_systems"][code_system]["concepts"][code]
        return concept.get(lang) or concept["sv"]

    def coding(self, code_system: str, code: str, lang: str = "sv") -> dict[str, str]:
        """A Coding of one of our concepts; raises ``KeyError`` for an unknown code."""
        return {"system": self.system(code_system), "code": code, "display": self.display(code_system, code, lang)}

    def concept(self, code_system: str, code: str, lang: str = "sv") -> dict[str, Any]:
        """A CodeableConcept of one of our concepts."""
        return {"coding": [self.coding(code_system, code, lang)]}

    def identifier_system(self, kind: str) -> str:
        """The business-identifier system for resources of ``kind`` the adapter creates."""
        return f"{self._identifier_base}/{kind}"

    @cached_property
    def _identifier_base(self) -> str:
        return self.fill(self.raw["identifier_systems"]["adapter"])

    @property
    def personnummer_system(self) -> str:
        return self.raw["identifier_systems"]["personnummer"]

    @property
    def referral_category(self) -> dict[str, str]:
        return dict(self.raw["referral"]["category"])

    @property
    def referral_code(self) -> dict[str, str]:
        c = self.raw["referral"]["code"]
        return {**c, "system": self.fill(c["system"])}

    @property
    def sdc_task_code(self) -> dict[str, str]:
        return dict(self.raw["external"]["sdc_task_code"])


@cache
def codes() -> Codes:
    return Codes(load("codes"))


# ---------------------------------------------------------------- organisation directory


@dataclass(frozen=True)
class Unit:
    """An organisation, site or person of the directory, identified by its HSA-id."""

    key: str
    hsa_id: str
    name: str
    ort: str = ""

    @property
    def identifier(self) -> dict[str, str]:
        return {"system": HSA_SYSTEM, "value": self.hsa_id}

    def reference(self, resource_type: str) -> dict[str, Any]:
        """A logical reference by HSA-id: valid on any server, resolved by setup's directory."""
        return {"type": resource_type, "identifier": self.identifier, "display": self.name}


@dataclass(frozen=True)
class Clinic(Unit):
    reviewers: tuple[Unit, ...] = ()


@dataclass(frozen=True)
class Directory:
    clinics: tuple[Clinic, ...]
    mmrpv: Unit
    mmrpv_admin: Unit
    sites: tuple[Unit, ...]
    coordinator: Unit  # owns a referral nobody in the directory can own (it cannot be routed)

    def clinic_by_hsa(self, hsa_id: str | None) -> Clinic | None:
        return next((c for c in self.clinics if c.hsa_id == hsa_id), None)

    def site(self, key: str) -> Unit:
        return next(s for s in self.sites if s.key == key)

    def site_by_hsa(self, hsa_id: str | None) -> Unit | None:
        return next((s for s in self.sites if s.hsa_id == hsa_id), None)

    def known(self, hsa_id: str | None) -> bool:
        """Any unit, site or reviewer of the directory (a referral addressed to one that is no clinic)."""
        units = [*self.clinics, self.mmrpv, self.mmrpv_admin, *self.sites, self.coordinator]
        units += [r for c in self.clinics for r in c.reviewers]
        return any(u.hsa_id == hsa_id for u in units)


@cache
def directory() -> Directory:
    raw = load("organisations")
    clinics = tuple(
        Clinic(
            key=c["key"],
            hsa_id=c["hsa_id"],
            name=c["name"],
            ort=c.get("ort", ""),
            reviewers=tuple(
                Unit(key=r["hsa_id"], hsa_id=r["hsa_id"], name=r["name"]) for r in c.get("reviewers") or ()
            ),
        )
        for c in raw["specialist_clinics"]
    )
    unit = raw["mmrpv_unit"]
    admin = unit["administrative_function"]
    return Directory(
        clinics=clinics,
        mmrpv=Unit(key=unit["key"], hsa_id=unit["hsa_id"], name=unit["name"]),
        mmrpv_admin=Unit(key="mmrpv-admin", hsa_id=admin["hsa_id"], name=admin["name"]),
        sites=tuple(Unit(key=s["key"], hsa_id=s["hsa_id"], name=s["name"], ort=s["ort"]) for s in unit["sites"]),
        coordinator=Unit(
            key="coordinator", hsa_id=raw["referral_coordinator"]["hsa_id"], name=raw["referral_coordinator"]["name"]
        ),
    )


# ---------------------------------------------------------------- Task state tables


@dataclass(frozen=True)
class TaskStateRow:
    """One (status, businessStatus) a Task may be at: who writes it, what it means, what comes next."""

    statuses: tuple[str, ...]
    business: tuple[str, ...]
    by: str
    means: str
    next: str
    records: str
    final: bool
    waits_for: str | None = None  # open, and the next step is the open Task of this kind's, if any
    ends: bool = False  # final, and nothing follows it: the referral's journey is over


@dataclass(frozen=True)
class TaskStateTable:
    """The rows of one Task kind, and the final business status each final status settles to."""

    kind: str
    code: str
    profile: str
    rows: tuple[TaskStateRow, ...]
    settle: dict[str, str]

    def row(self, status: str | None, business: str | None) -> TaskStateRow | None:
        return next((r for r in self.rows if status in r.statuses and business in r.business), None)


def _tuple(value: Any) -> tuple[str, ...]:
    return tuple(value) if isinstance(value, list) else (str(value),)


@cache
def task_state_tables() -> tuple[TaskStateTable, ...]:
    """``mappings/task-states.yaml``, in the file's order (the routine's).

    Data, read here so that the workflow (which follows the tables) and the docs build (which
    shows them in ``profiles/README.md``) read the same thing without one importing the other.
    """
    return tuple(
        TaskStateTable(
            kind,
            str(t["code"]),
            str(t["profile"]),
            tuple(
                TaskStateRow(
                    _tuple(r["status"]),
                    _tuple(r["business"]),
                    str(r["by"]),
                    str(r["means"]),
                    str(r.get("next", "")),
                    str(r.get("records", "")),
                    bool(r.get("final", False)),
                    str(r["waits_for"]) if r.get("waits_for") else None,
                    bool(r.get("ends", False)),
                )
                for r in t["rows"]
            ),
            dict(t.get("settle") or {}),
        )
        for kind, t in load("task-states").items()
    )


# ---------------------------------------------------------------- Measures (flow figures as FHIR)


@dataclass(frozen=True)
class StratifierDef:
    """A stratifier beside ``organisation``: strata named by figures keys, or by a figures object's keys."""

    code: str
    description: str
    strata: tuple[tuple[str, str], ...] = ()  # (stratum value, figures key)
    strata_from: str | None = None  # a figures object whose keys are the strata


@dataclass(frozen=True)
class MeasureGroupDef:
    code: str
    description: str
    populations: tuple[tuple[str, str | None], ...]  # (measure-population code, figures key or None: not counted)
    score: str | None = None  # "ratio", a figures key (dotted into an object), or None: the count is the result
    unit: tuple[str, str] | None = None  # (human unit, UCUM code) of a score that is not a ratio
    stratifiers: tuple[StratifierDef, ...] = ()


@dataclass(frozen=True)
class MeasureDef:
    """One figure of ``mmr-adapter flow`` as a FHIR Measure (``mappings/measures.yaml``)."""

    id: str
    title: str
    title_sv: str
    description: str
    scoring: str
    type: str
    improvement: str
    clock: str
    source: str
    reports: tuple[str, ...]
    groups: tuple[MeasureGroupDef, ...]


@cache
def measure_definitions() -> tuple[MeasureDef, ...]:
    """``mappings/measures.yaml``, in the file's order.

    The profiles build makes the Measures from it and ``adapter/flow/measures.py`` fills the
    MeasureReports from it, so what a Measure says and what its reports count are one table.
    """
    return tuple(
        MeasureDef(
            id=str(m["id"]),
            title=str(m["title"]),
            title_sv=str(m["title_sv"]),
            description=str(m["description"]),
            scoring=str(m["scoring"]),
            type=str(m["type"]),
            improvement=str(m["improvement"]),
            clock=str(m["clock"]),
            source=str(m["source"]),
            reports=_tuple(m["reports"]),
            groups=tuple(
                MeasureGroupDef(
                    code=str(g["code"]),
                    description=str(g["description"]),
                    populations=tuple(
                        (str(k), str(v) if v is not None else None) for k, v in (g.get("populations") or {}).items()
                    ),
                    score=str(g["score"]) if g.get("score") else None,
                    unit=(str(g["unit"]["unit"]), str(g["unit"]["code"])) if g.get("unit") else None,
                    stratifiers=tuple(
                        StratifierDef(
                            code=str(s["code"]),
                            description=str(s["description"]),
                            strata=tuple((str(k), str(v)) for k, v in (s.get("strata") or {}).items()),
                            strata_from=str(s["strata_from"]) if s.get("strata_from") else None,
                        )
                        for s in g.get("stratifiers") or ()
                    ),
                )
                for g in m["groups"]
            ),
        )
        for m in load("measures")["measures"]
    )


# ---------------------------------------------------------------- flow: the clock rules


@dataclass(frozen=True)
class WaitingReason:
    """A waiting the care guarantee does not count, as a unit records it on a cancelled Appointment."""

    key: str  # patient-chosen | medical: the store's mmr_appointment.waiting_reason
    system: str
    code: str
    hl7: str  # HL7 appointment-cancellation-reason code beside it
    source: str


@dataclass(frozen=True)
class FlowRules:
    """``mappings/flow.yaml``: the clock rules the flow figures count by, each with its source."""

    guarantee_days: int
    forwarding_restarts_clock: bool
    waiting_reasons: tuple[WaitingReason, ...]
    hl7_cancellation_reason: str
    hold_reasons: dict[str, str]  # reason -> the review Task's businessStatus while on hold
    sources: dict[str, str]  # rule -> its one-line source

    def waiting_reason(self, key: str) -> WaitingReason:
        return next(r for r in self.waiting_reasons if r.key == key)


@cache
def flow_rules() -> FlowRules:
    raw = load("flow")
    c = codes()
    reasons = tuple(
        WaitingReason(key, c.fill(str(r["system"])), str(r["code"]), str(r["hl7"]), str(r["source"]))
        for key, r in raw["waiting_reasons"].items()
    )
    sources = {k: str(v["source"]) for k, v in raw.items() if isinstance(v, dict) and "source" in v}
    sources |= {f"waiting_reasons.{r.key}": r.source for r in reasons}
    sources |= {f"hold_reasons.{k}": str(v["source"]) for k, v in raw["hold_reasons"].items()}
    return FlowRules(
        guarantee_days=int(raw["care_guarantee"]["days"]),
        forwarding_restarts_clock=bool(raw["forwarding"]["restarts_clock"]),
        waiting_reasons=reasons,
        hl7_cancellation_reason=str(raw["hl7_cancellation_reason"]),
        hold_reasons={k: str(v["business_status"]) for k, v in raw["hold_reasons"].items()},
        sources=sources,
    )
