"""The package's MMR ViewDefinitions (``profiles/views/``): valid, shareable, and right on what is really written.

Every view validates with the runner's own check and follows the ShareableViewDefinition profile
(url, name, fhirVersion, every column's type). Then each runs over the resources of the fixed
journeys (``tests/support/journeys.py``: what the real routine writes, version by version, and what
the units write as the cookbook says) and gives the rows the flow store's tables are made of.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from adapter.conformance.package import package
from adapter.flow import store
from adapter.flow.viewdef import View, parse_view
from adapter.mappings import HSA_SYSTEM, codes, directory, flow_rules, task_state_tables
from adapter.operations.setup import directory_resources
from tests.support.journeys import HBG, LUND, Journey, by_name, journeys

VIEWS = sorted(store.views_dir().glob("ViewDefinition-*.json"))
SHAREABLE_TYPES = {"string", "code", "id", "uri", "dateTime", "instant", "date", "integer", "boolean", "decimal"}


@pytest.fixture(scope="module")
def fixed() -> list[Journey]:
    return journeys("v")


def every_version(found: list[Journey]) -> list[dict[str, Any]]:
    """Every version each journey wrote, numbered as a server numbers them."""
    numbers: dict[str, int] = {}
    out = []
    for journey in found:
        for tx in journey.transactions:
            for r in tx.resources:
                key = f"{r['resourceType']}/{r['id']}"
                numbers[key] = numbers.get(key, 0) + 1
                out.append({**r, "meta": {"versionId": str(numbers[key]), "lastUpdated": tx.at.isoformat()}})
    return out


def current(found: list[Journey]) -> list[dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for r in every_version(found):
        latest[f"{r['resourceType']}/{r['id']}"] = r
    return list(latest.values())


def rows(table: str, resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return list(store.view(table).rows(resources))


@pytest.mark.parametrize("path", VIEWS, ids=lambda p: p.name)
def test_every_view_validates_and_is_shareable(path: Path) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    parse_view(data)  # raises ViewError naming the element
    assert data["url"] == f"{codes().base}/ViewDefinition/{data['id']}"
    assert path.name == f"ViewDefinition-{data['id']}.json"
    assert data["name"] and data["fhirVersion"] == ["4.0.1"]

    def columns(select: dict[str, Any]) -> list[dict[str, Any]]:
        found = list(select.get("column") or ())
        for inner in [*(select.get("select") or ()), *(select.get("unionAll") or ())]:
            found += columns(inner)
        return found

    every = [c for s in data["select"] for c in columns(s)]
    assert every and all(c.get("type") in SHAREABLE_TYPES for c in every), [c["name"] for c in every]


def test_each_table_of_the_schema_from_fhir_has_its_view_with_the_tables_columns() -> None:
    assert {p.name for p in VIEWS} == {f for f, _, _ in store.VIEWS.values()}
    con = store.open_store(":memory:")
    for table in store.TABLES:
        view: View = store.view(table)
        assert view.resource == store.VIEWS[table][1]
        assert sorted(view.columns) == sorted(store.columns(con, table)), table


def test_the_views_constants_are_the_adapters_codes() -> None:
    c = codes()
    expected = {
        "own": c.identifier_system("task"),
        "business": c.system("business-status"),
        "parameter": c.system("task-parameter"),
        "level": c.system("level"),
        "service": c.system("service"),
        "waiting": c.system("waiting-reason"),
        "hsa": HSA_SYSTEM,
    }
    for table in store.TABLES:
        for name, value in store.view(table).constants.items():
            assert value == expected[name], (table, name)


def test_the_task_views_kinds_are_the_task_state_tables() -> None:
    data = json.loads((store.views_dir() / store.VIEWS["mmr_task_version"][0]).read_text(encoding="utf-8"))
    branches = data["select"][1]["unionAll"]
    kinds = {b["column"][0]["path"].strip("'"): b["forEach"] for b in branches}
    assert list(kinds) == [t.kind for t in task_state_tables()]
    for table in task_state_tables():
        assert f"code = '{table.code}'" in kinds[table.kind]


def test_a_referral_is_mmr_by_its_code_or_its_category(fixed: list[Journey]) -> None:
    sr = next(r for r in current(fixed) if r["resourceType"] == "ServiceRequest")
    by_code = {**sr, "id": "by-code", "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "1"}]}]}
    by_category = {**sr, "id": "by-category", "code": {"coding": [{"system": "http://loinc.org", "code": "x"}]}}
    neither = {**by_code, "id": "neither", "code": by_category["code"]}
    unnamed = {**sr, "id": "unnamed", "identifier": None}
    found = {r["referral"]: r for r in rows("mmr_referral", [by_code, by_category, neither, unnamed])}
    assert set(found) == {"by-code", "by-category", "unnamed"}
    assert found["unnamed"]["identifier"] == "sr-unnamed"  # the adapter's referral key


def test_the_referral_view_over_the_journeys(fixed: list[Journey]) -> None:
    found = {r["identifier"]: r for r in rows("mmr_referral", current(fixed))}
    assert set(found) == {j.key for j in fixed}
    sv = by_name(fixed, "sv")
    assert found[sv.key] == {
        "referral": sv.referral,
        "identifier": sv.key,
        "status": "active",
        "authored_on": "2026-03-02T08:00:00+01:00",
        "performer": LUND,
        "subject": sv.patient,
        "last_updated": "2026-03-02T08:00:00+01:00",  # the referral's one version, as the server stamps it
    }


def test_the_task_view_gives_every_version_of_our_tasks_only(fixed: list[Journey]) -> None:
    versions = every_version(fixed)
    ours = [r for r in versions if r["resourceType"] == "Task"]
    foreign = {
        **ours[0],
        "id": "someone-elses",
        "identifier": [{"system": "https://ehr.example.se/task", "value": "1"}],
    }
    found = rows("mmr_task_version", [*versions, foreign])
    assert len(found) == len(ours)
    assert "someone-elses" not in {r["task"] for r in found}
    assert {r["kind"] for r in found} == {"review", "booking", "intake", "questionnaire"}
    # the patient asked: the review on hold for the patient, the questionnaire Task the patient's, until answered
    asked = by_name(fixed, "asked")
    assert [
        (r["kind"], r["status"], r["business_status"], r["owner_type"], r["changed_at"])
        for r in found
        if r["referral"] == asked.referral
    ] == [
        ("review", "on-hold", "awaiting-patient", "PractitionerRole", "2026-03-10T10:00:00+01:00"),
        ("questionnaire", "requested", "awaiting-patient", "Patient", "2026-03-10T10:00:00+01:00"),
        ("review", "received", "recommended", "PractitionerRole", "2026-03-14T12:01:00+01:00"),
        ("questionnaire", "completed", "answered", "Patient", "2026-03-14T12:01:00+01:00"),
    ]
    # on hold for the referrer from arrival until the supplement; the other one still on hold
    supplement = by_name(fixed, "supplement")
    held = [
        (r["status"], r["business_status"], r["owner_type"], r["changed_at"])
        for r in found
        if r["referral"] == supplement.referral
    ]
    assert held == [
        ("on-hold", "awaiting-supplement", "PractitionerRole", "2026-03-05T10:00:00+01:00"),
        ("received", "recommended", "PractitionerRole", "2026-03-09T10:01:00+01:00"),
    ]
    still = by_name(fixed, "held")
    assert [(r["status"], r["business_status"]) for r in found if r["referral"] == still.referral] == [
        ("on-hold", "awaiting-supplement")
    ]
    # the forwarded referral's intake Task is the MMRpv unit's; its booking the administrative function's
    pv = by_name(fixed, "pv")
    owners = {(r["kind"], r["owner"], r["owner_type"]) for r in found if r["referral"] == pv.referral}
    assert ("intake", directory().mmrpv.hsa_id, "Organization") in owners
    assert ("booking", directory().mmrpv_admin.hsa_id, "Organization") in owners


def test_an_owner_set_by_hand_without_its_type_is_typed_by_its_reference(fixed: list[Journey]) -> None:
    task = next(r for r in current(fixed) if r["resourceType"] == "Task")
    by_hand = {**task, "owner": {"reference": "PractitionerRole/SE2321000255-SML1R1"}}
    patient = {**task, "id": "t2", "owner": {"reference": "Patient/p1"}}
    found = {r["task"]: (r["owner"], r["owner_type"]) for r in rows("mmr_task_version", [by_hand, patient])}
    assert found == {task["id"]: ("SE2321000255-SML1R1", "PractitionerRole"), "t2": ("p1", "Patient")}


def test_the_appointment_and_careplan_views_over_the_journeys(fixed: list[Journey]) -> None:
    found = rows("mmr_appointment", current(fixed))
    by_journey = {next(j.name for j in fixed if j.referral == r["referral"]): r for r in found}
    # the clinic's own visit names its clinician (the view); the store then counts it for the clinic
    assert by_journey["sv"]["status"] == "fulfilled" and by_journey["sv"]["organization"] is None
    assert by_journey["sv"]["practitioner_role"] == "SE2321000255-SML1R1"
    assert by_journey["pv"]["location"] == HBG and by_journey["pv"]["start"] == "2026-04-14T09:00:00+02:00"
    assert by_journey["chosen"]["status"] == "cancelled" and by_journey["chosen"]["waiting_reason"] == "patient-chosen"
    plans = rows("mmr_careplan", current(fixed))
    pv = by_name(fixed, "pv")
    assert [(p["referral"], p["status"], p["period_start"]) for p in plans] == [
        (pv.referral, "active", "2026-04-14T09:00:00+02:00")
    ]


def test_every_clock_rule_has_a_one_line_source_and_the_waiting_codes_are_published() -> None:
    rules = flow_rules()
    assert set(rules.sources) >= {"care_guarantee", "forwarding", "review_deadline"}
    assert all(source.strip() and "\n" not in source for source in rules.sources.values())
    assert rules.guarantee_days == 90 and rules.forwarding_restarts_clock is False
    published = package().get(codes().system("waiting-reason"))
    assert published is not None
    assert {c["code"] for c in published["concept"]} == {r.code for r in rules.waiting_reasons}
    assert {r.system for r in rules.waiting_reasons} == {codes().system("waiting-reason")}
    assert set(rules.hold_reasons.values()) <= {
        b
        for t in task_state_tables()
        if t.kind == "review"
        for r in t.rows
        if "on-hold" in r.statuses
        for b in r.business
    }


def test_the_directory_views_over_what_setup_installs() -> None:
    installed = directory_resources()
    d = directory()
    organizations = {r["hsa_id"]: r for r in rows("mmr_organization", installed)}
    assert set(organizations) == {
        *(c.hsa_id for c in d.clinics),
        d.mmrpv.hsa_id,
        d.mmrpv_admin.hsa_id,
        d.coordinator.hsa_id,
    }
    assert organizations[LUND] == {
        "organization": LUND,
        "hsa_id": LUND,
        "name": next(c.name for c in d.clinics if c.hsa_id == LUND),
    }
    roles = {r["role"]: r["organization"] for r in rows("mmr_practitioner_role", installed)}
    assert roles == {r.hsa_id: c.hsa_id for c in d.clinics for r in c.reviewers}
    sites = rows("mmr_location", installed)
    assert sites == [{"location": s.hsa_id, "hsa_id": s.hsa_id, "organization": d.mmrpv.hsa_id} for s in d.sites]
