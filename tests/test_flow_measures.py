"""The flow figures as FHIR: the Measures of the package and the MeasureReports ``publish`` writes.

The Measures are checked by the adapter's own validator and by the R4 models; the reports are
built from a figures dict made here in the contract's shape (issue 24), checked number by number
against it, validated by the R4 models and by the FHIR server of the session (the sandbox, or
HAPI's validator with ``MMR_TEST_FHIR=hapi``), and published twice to that server: the second
publish writes nothing and every identifier is held by one report.
"""

from __future__ import annotations

import copy
import json
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.measure import Measure
from fhir.resources.R4B.measurereport import MeasureReport

from adapter.config import Settings
from adapter.conformance.install import conformance_resources, install_resource
from adapter.conformance.package import load_package
from adapter.conformance.validate import validate_resource
from adapter.fhir.client import FhirClient
from adapter.flow import measures
from adapter.mappings import HSA_SYSTEM, codes, measure_definitions
from adapter.operations.publish import publish, transaction
from adapter.pipeline.monthly_reports import month_to_publish, publish_if_due, published
from tests.support.stack import FHIR_SERVER

ROOT = Path(__file__).resolve().parent.parent
MEASURE_FILES = sorted((ROOT / "profiles").glob("Measure-*.json"))
POP = "http://terminology.hl7.org/CodeSystem/measure-population"
PART = codes().system("measure-part")
DATA_ABSENT = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
UNDEFINED = {"_value": {"extension": [{"url": DATA_ABSENT, "valueCode": "not-applicable"}]}}  # no number, no score
SMH, SML = "SE2321000255-SMH1", "SE2321000255-SML1"


def _org(hsa: str | None, name: str, kind: str, **changes: Any) -> dict[str, Any]:
    org: dict[str, Any] = {
        "organization": hsa,
        "name": name,
        "kind": kind,
        "reviews_decided": 12,
        "reviews_within_deadline": 9,
        "review_median_working_days": 2.0,
        "reviews_overdue_now": 1,
        "waiting_now": 30,
        "waiting_0_30": 10,
        "waiting_31_60": 8,
        "waiting_61_90": 7,
        "waiting_over_90": 5,
        "waiting_patient_chosen": 2,
        "first_visits": 8,
        "first_visit_median_days": 41.0,
        "first_visit_p90_days": 80.5,
        "first_visit_max_days": 95,
        "first_visits_within_guarantee": 6,
        "on_hold_median_days": {"referrer": 4.5, "patient": None},
        "organisations_per_referral": {"1": 20, "2": 5, "3": 1},
        "re_referrals_after_rejection": 1,
        "nobody_responsible": ["REM-2026-0007"],
    }
    return {**org, **changes}


def figures(start: date, end: date) -> dict[str, Any]:
    """A figures dict in the contract's shape: two clinics and the region."""
    lund = _org(SML, "Smärtrehabilitering SUS Lund", "clinic", reviews_decided=0, reviews_within_deadline=0)
    lund.update(review_median_working_days=None, nobody_responsible=[], first_visits=3, first_visits_within_guarantee=2)
    lund.update(organisations_per_referral={})
    region = _org(None, "Region", "region", reviews_decided=12, first_visits=11)
    return {
        "at": f"{end.isoformat()}T23:59:59+01:00",
        "from": start.isoformat(),
        "to": end.isoformat(),
        "guarantee_days": 90,
        "organisations": [_org(SMH, "Smärtrehabilitering Hässleholm", "clinic"), lund],
        "region": region,
        "weekly_reviews": [],
        "nobody_responsible": ["REM-2026-0007"],
    }


def _find(reports: list[dict[str, Any]], org: str | None, measure: str, kind: str = "summary") -> dict[str, Any]:
    ident = measures.identifier_value(org, measure, kind, PERIOD)
    (found,) = [r for r in reports if r["identifier"][0]["value"] == ident]
    return found


def _code(part: dict[str, Any]) -> str:
    """A group's or stratifier's code (a stratifier's ``code`` is a list), checked to be ours."""
    (coding,) = (part["code"][0] if isinstance(part["code"], list) else part["code"])["coding"]
    assert coding["system"] == PART
    return str(coding["code"])


def _pops(group: dict[str, Any]) -> dict[str, int | None]:
    return {p["code"]["coding"][0]["code"]: p.get("count") for p in group["population"]}


PERIOD = (date(2026, 11, 1), date(2026, 11, 30))
BEYOND = {SMH: ["https://ehr.example.org/identifier/remiss|REM-2026-0001", "REM-2026-0002"]}


# ---------------------------------------------------------------- the Measures


@pytest.mark.parametrize("path", MEASURE_FILES, ids=lambda p: p.name)
def test_every_measure_is_valid_by_the_adapters_validator_and_the_r4_model(path: Path) -> None:
    resource = json.loads(path.read_text(encoding="utf-8"))
    Measure.model_validate(resource)
    outcome = validate_resource(resource)
    errors = [i for i in outcome["issue"] if i["severity"] in ("error", "fatal")]
    assert errors == []


def test_one_measure_per_definition_each_naming_its_scoring_populations_and_clock() -> None:
    by_id = {json.loads(p.read_text())["id"]: json.loads(p.read_text()) for p in MEASURE_FILES}
    assert sorted(by_id) == sorted(m.id for m in measure_definitions())
    for m in measure_definitions():
        r = by_id[m.id]
        assert r["url"] == measures.measure_url(m.id)
        assert r["scoring"]["coding"][0]["code"] == m.scoring in ("proportion", "continuous-variable", "cohort")
        assert m.clock in r["guidance"] and m.source in r["guidance"]
        for g, rg in zip(m.groups, r["group"], strict=True):
            codes = [p["code"]["coding"][0]["code"] for p in rg["population"]]
            assert [c for c, _ in g.populations] == codes[: len(g.populations)]
            assert (rg["code"]["coding"][0]["system"], rg["code"]["coding"][0]["code"]) == (PART, g.code)
            assert rg["stratifier"][0]["code"]["coding"][0] == {
                "system": PART,
                "code": "organisation",
                "display": "Vårdenhet",
            }
            if m.scoring == "proportion":
                assert {"numerator", "denominator"} <= set(codes)
            if m.scoring == "continuous-variable":
                assert {"measure-population", "measure-observation"} <= set(codes)


def _expressions(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, list):
        return [e for item in node for e in _expressions(item)]
    if not isinstance(node, dict):
        return []
    own = [node] if "language" in node and "description" in node else []
    return own + [e for v in node.values() for e in _expressions(v)]


@pytest.mark.parametrize("path", MEASURE_FILES, ids=lambda p: p.name)
def test_every_criteria_names_its_figure(path: Path) -> None:
    """exp-1 (an Expression has an expression or a reference), which the R4 models do not check."""
    found = _expressions(json.loads(path.read_text(encoding="utf-8")))
    assert found and all(e.get("expression") or e.get("reference") for e in found)


def test_the_measures_are_installed_with_the_package() -> None:
    installed = [r["id"] for r in conformance_resources(load_package()) if r["resourceType"] == "Measure"]
    assert sorted(installed) == sorted(m.id for m in measure_definitions())


# ---------------------------------------------------------------- the reports, pure


def test_reports_are_valid_r4_and_one_per_identifier() -> None:
    reports = measures.reports(figures(*PERIOD), PERIOD, waiting_beyond=BEYOND)
    for r in reports:
        MeasureReport.model_validate(r)
        assert [i for i in validate_resource(r)["issue"] if i["severity"] in ("error", "fatal")] == []
    idents = [r["identifier"][0]["value"] for r in reports]
    assert len(idents) == len(set(idents))
    summaries = sum(1 for m in measure_definitions() if "summary" in m.reports)
    lists = sum(1 for m in measure_definitions() if "subject-list" in m.reports)
    assert len(reports) == 3 * (summaries + lists)  # two clinics and the region


def test_a_proportion_carries_the_dicts_numbers_and_their_ratio() -> None:
    reports = measures.reports(figures(*PERIOD), PERIOD)
    (group,) = _find(reports, SMH, "mmr-reviews-within-deadline")["group"]
    assert _pops(group) == {"initial-population": 12, "denominator": 12, "numerator": 9}
    assert group["measureScore"] == {"value": 0.75}
    (lund,) = _find(reports, SML, "mmr-reviews-within-deadline")["group"]
    assert _pops(lund)["denominator"] == 0 and lund["measureScore"] == UNDEFINED  # no review: no score, never 0


def test_continuous_variables_carry_median_p90_and_max_in_days() -> None:
    reports = measures.reports(figures(*PERIOD), PERIOD)
    groups = {_code(g): g for g in _find(reports, SMH, "mmr-first-visit-waiting-days")["group"]}
    assert {k: g["measureScore"]["value"] for k, g in groups.items()} == {"median": 41, "p90": 80.5, "max": 95}
    assert groups["median"]["measureScore"]["code"] == "d"
    assert _pops(groups["median"])["measure-population"] == 8
    hold = {_code(g): g for g in _find(reports, SMH, "mmr-on-hold-days")["group"]}
    assert hold["referrer"]["measureScore"]["value"] == 4.5
    assert {k: v for k, v in hold["patient"]["measureScore"].items() if k != "unit"} == {
        **UNDEFINED,
        "system": "http://unitsofmeasure.org",
        "code": "d",
    }  # null in the figures
    assert _pops(hold["patient"]) == {"initial-population": None, "measure-population": None}  # named, not counted


def test_cohorts_are_stratified_by_bucket_and_the_region_by_organisation() -> None:
    reports = measures.reports(figures(*PERIOD), PERIOD)
    (waiting,) = _find(reports, SMH, "mmr-waiting")["group"]
    assert _pops(waiting) == {"initial-population": 30}
    own, buckets = waiting["stratifier"]
    assert [_code(own), _code(buckets)] == ["organisation", "days-waited"]
    (itself,) = own["stratum"]  # an organisation's own report: one stratum, the whole population
    assert itself["value"]["coding"][0]["code"] == SMH and _pops(itself) == _pops(waiting)
    assert {s["value"]["text"]: s["population"][0]["count"] for s in buckets["stratum"]} == {
        "0-30": 10,
        "31-60": 8,
        "61-90": 7,
        "over-90": 5,
    }
    (held,) = _find(reports, SMH, "mmr-organisations-per-referral")["group"]
    assert _pops(held) == {"initial-population": 26}
    (region,) = _find(reports, None, "mmr-first-visit-within-guarantee")["group"]
    by_org = next(s for s in region["stratifier"] if _code(s) == "organisation")
    strata = {s["value"]["coding"][0]["code"]: s for s in by_org["stratum"]}
    assert set(strata) == {SMH, SML}
    assert strata[SML]["value"]["coding"][0]["system"] == HSA_SYSTEM
    assert _pops(strata[SML])["denominator"] == 3 and _pops(region)["denominator"] == 11
    assert "reporter" not in _find(reports, None, "mmr-waiting")
    assert _find(reports, SMH, "mmr-waiting")["reporter"]["identifier"] == {"system": HSA_SYSTEM, "value": SMH}


def test_subject_lists_name_referrals_by_business_identifier_only() -> None:
    reports = measures.reports(figures(*PERIOD), PERIOD, waiting_beyond=BEYOND)
    nobody = _find(reports, SMH, "mmr-nobody-responsible", "subject-list")
    (listed,) = nobody["contained"]
    assert nobody["group"][0]["population"][0] == {
        "code": {"coding": [{"system": POP, "code": "initial-population"}]},
        "count": 1,
        "subjectResults": {"reference": "#subjects"},
    }
    assert [e["item"] for e in listed["entry"]] == [
        {"type": "ServiceRequest", "identifier": {"value": "REM-2026-0007"}}
    ]
    (empty,) = _find(reports, SML, "mmr-nobody-responsible", "subject-list")["contained"]
    assert "entry" not in empty and empty["emptyReason"]["coding"][0]["code"] == "nilknown"
    (beyond,) = _find(reports, SMH, "mmr-waiting-beyond-guarantee", "subject-list")["contained"]
    assert [e["item"]["identifier"] for e in beyond["entry"]] == [
        {"value": "REM-2026-0002"},
        {"system": "https://ehr.example.org/identifier/remiss", "value": "REM-2026-0001"},
    ]
    (region,) = _find(reports, None, "mmr-waiting-beyond-guarantee", "subject-list")["group"]
    assert _pops(region) == {"initial-population": 2}
    text = json.dumps(reports, ensure_ascii=False)
    assert '"Patient/' not in text and '"Patient"' not in text  # no Patient reference nor type
    assert "personnummer" not in text


def test_without_the_list_of_who_waits_too_long_no_such_report_is_made() -> None:
    reports = measures.reports(figures(*PERIOD), PERIOD)
    assert not [r for r in reports if "mmr-waiting-beyond-guarantee" in r["measure"]]


def test_the_same_figures_give_the_same_reports_and_another_period_is_refused() -> None:
    f = figures(*PERIOD)
    assert measures.reports(f, PERIOD) == measures.reports(copy.deepcopy(f), PERIOD)
    with pytest.raises(ValueError, match="2026-11-01"):
        measures.reports(f, (date(2026, 10, 1), date(2026, 10, 31)))


def _codings(concepts: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(c["system"], c["code"]) for cc in concepts for c in cc.get("coding") or ()]


def test_every_report_answers_every_group_population_and_stratifier_of_its_measure_by_system_and_code() -> None:
    """What HAPI's validator (MeasureValidator) asks of a report, checked here on any server: each
    group, population and stratifier matched to the Measure's by system and code, none missing,
    a measureScore in every group of a proportion or continuous variable and none in a cohort's."""
    by_url = {m["url"]: m for m in (json.loads(p.read_text()) for p in MEASURE_FILES)}
    checked = 0
    for r in measures.reports(figures(*PERIOD), PERIOD, waiting_beyond=BEYOND):
        m = by_url[r["measure"]]
        assert _codings([g["code"] for g in r["group"]]) == _codings([g["code"] for g in m["group"]])
        for g, mg in zip(r["group"], m["group"], strict=True):
            pops = _codings([p["code"] for p in mg["population"]])
            assert _codings([p["code"] for p in g["population"]]) == [p for p in pops if p[1] != "measure-observation"]
            assert [_codings(s["code"]) for s in g["stratifier"]] == [_codings([s["code"]]) for s in mg["stratifier"]]
            scored = m["scoring"]["coding"][0]["code"] in ("proportion", "continuous-variable")
            assert ("measureScore" in g) == scored
            if scored:
                assert ("value" in g["measureScore"]) != ("_value" in g["measureScore"])
            checked += 1
    assert checked > 3 * len(measure_definitions())


def _empties(node: Any, path: str = "") -> list[str]:
    if node in ([], {}, "", None):
        return [path]
    if isinstance(node, dict):
        return [e for k, v in node.items() for e in _empties(v, f"{path}.{k}")]
    if isinstance(node, list):
        return [e for i, v in enumerate(node) for e in _empties(v, f"{path}[{i}]")]
    return []


def test_no_report_holds_an_empty_element() -> None:
    """FHIR JSON has no empty array or object: a server drops one on write (HAPI did, and the
    stored report then differed from the one sent), and its validator refuses it."""
    reports = measures.reports(figures(*PERIOD), PERIOD, waiting_beyond=BEYOND)
    assert [e for r in reports for e in _empties(r, r["identifier"][0]["value"])] == []


def test_a_stored_report_that_differs_only_by_server_bookkeeping_is_left_alone() -> None:
    """The server adds meta, may renumber contained ids, drops empty elements and writes a decimal
    its own way: none of it is a change worth a version."""
    reports = measures.reports(figures(*PERIOD), PERIOD)
    listed = _find(reports, SMH, "mmr-nobody-responsible", "subject-list")
    stored = json.loads(json.dumps(listed).replace('"#subjects"', '"#1"').replace('"id": "subjects"', '"id": "1"'))
    stored["meta"] = {"versionId": "3", "lastUpdated": "2026-12-01T00:00:00Z"}
    bundle, done = transaction([listed], {listed["id"]: stored})
    assert bundle["entry"] == [] and done.unchanged == [listed["identifier"][0]["value"]]
    sent = copy.deepcopy(listed)  # an empty element a server drops on write, and a decimal it shortens
    sent["group"][0]["population"][0]["extension"] = []
    sent["group"][0]["population"][0]["count"] = 1.0
    bundle, done = transaction([sent], {listed["id"]: stored})
    assert bundle["entry"] == [] and done.unchanged == [listed["identifier"][0]["value"]]
    stored["group"][0]["population"][0]["count"] = 2
    bundle, done = transaction([listed], {listed["id"]: stored})
    (entry,) = bundle["entry"]
    assert entry["request"] == {"method": "PUT", "url": f"MeasureReport/{listed['id']}", "ifMatch": 'W/"3"'}


# ---------------------------------------------------------------- on the server


def _server_errors(fhir: FhirClient, resource: dict[str, Any]) -> list[str]:
    """The server's own ``$validate`` (HAPI's validator with MMR_TEST_FHIR=hapi): its errors."""
    response = httpx.post(
        f"{fhir.base_url}/{resource['resourceType']}/$validate",
        json=resource,
        headers={"Content-Type": "application/fhir+json"},
        timeout=60,
    )
    assert response.status_code in (200, 400, 412, 422), response.text
    return [
        f"{', '.join(i.get('expression') or i.get('location') or ['?'])}: {i.get('diagnostics')}"
        for i in response.json().get("issue") or ()
        if i.get("severity") in ("error", "fatal")
    ]


@pytest.fixture(scope="module")
def measures_installed(fhir: FhirClient) -> None:
    """The Measures and the CodeSystem of their codes on the server, as setup installs them, so the
    reports' canonicals and codes resolve."""
    for r in conformance_resources(load_package()):
        if r["resourceType"] == "Measure" or r.get("url") == PART:
            install_resource(fhir, r)


def test_installing_the_measures_again_changes_nothing(fhir: FhirClient, measures_installed: None) -> None:
    again = [install_resource(fhir, r) for r in conformance_resources(load_package()) if r["resourceType"] == "Measure"]
    assert {outcome for _, outcome in again} == {"unchanged"}
    assert len(again) == len(measure_definitions())


def test_the_server_accepts_every_measure_and_report(fhir: FhirClient, measures_installed: None) -> None:
    period = (date(2026, 9, 1), date(2026, 9, 30))
    resources = [json.loads(p.read_text()) for p in MEASURE_FILES]
    reports = measures.reports(figures(*period), period, waiting_beyond=BEYOND)
    kinds = {(r["measure"], r["type"], "reporter" in r): r for r in reports}  # one of each shape
    errors = {
        f"{r['resourceType']}/{r.get('id') or r['identifier'][0]['value']}": e
        for r in [*resources, *kinds.values()]
        if (e := _server_errors(fhir, r))
    }
    assert errors == {}, FHIR_SERVER


def test_publishing_twice_writes_once_and_a_change_updates_in_place(fhir: FhirClient, measures_installed: None) -> None:
    period = (date(2026, 10, 1), date(2026, 10, 31))
    settings = Settings(fhir_base_url=fhir.base_url)
    f = figures(*period)
    first = publish(settings, f, period, waiting_beyond=BEYOND, fhir=fhir)
    assert first.created and not first.updated and not first.unchanged
    again = publish(settings, copy.deepcopy(f), period, waiting_beyond=BEYOND, fhir=fhir)
    assert again.written == 0 and sorted(again.unchanged) == sorted(first.created)

    system = measures.identifier_system()
    stored = [  # every report of the period, found by what it says, not by the id publish chose
        r
        for r in fhir.search("MeasureReport", {"_count": "500"})
        if r["identifier"][0]["system"] == system and r["period"]["start"] == period[0].isoformat()
    ]
    idents = [r["identifier"][0]["value"] for r in stored]
    assert sorted(idents) == sorted(first.created)  # one report per identifier
    assert {r["meta"].get("versionId") for r in stored} == {"1"}  # the second publish wrote no version

    f["organisations"][0]["reviews_within_deadline"] = 10
    changed = publish(settings, f, period, waiting_beyond=BEYOND, fhir=fhir)
    ident = measures.identifier_value(SMH, "mmr-reviews-within-deadline", "summary", period)
    assert changed.updated == [ident, measures.identifier_value(None, "mmr-reviews-within-deadline", "summary", period)]
    report = fhir.read("MeasureReport", measures.report_id(ident))
    assert report["meta"]["versionId"] == "2" and report["group"][0]["measureScore"]["value"] == round(10 / 12, 4)


# ---------------------------------------------------------------- the monthly beat job's calendar


@pytest.mark.parametrize(
    ("today", "period"),
    [
        (date(2026, 12, 1), (date(2026, 11, 1), date(2026, 11, 30))),  # a Tuesday
        (date(2026, 12, 2), (date(2026, 11, 1), date(2026, 11, 30))),  # caught up after a day missed
        (date(2027, 1, 1), None),  # nyårsdagen
        (date(2027, 1, 4), (date(2026, 12, 1), date(2026, 12, 31))),  # Monday after the holiday weekend
        (date(2026, 11, 2), (date(2026, 10, 1), date(2026, 10, 31))),  # Sunday the 1st: Monday the 2nd
        (date(2026, 11, 1), None),
    ],
)
def test_the_month_is_due_from_its_successors_first_working_day(today: date, period: tuple[date, date] | None) -> None:
    assert month_to_publish(today) == period


def test_beat_publishes_nothing_on_another_day_or_when_the_month_is_on_the_server(
    fhir: FhirClient, measures_installed: None
) -> None:
    period = (date(2026, 2, 1), date(2026, 2, 28))
    settings = Settings(fhir_base_url=fhir.base_url)
    assert publish_if_due(settings, date(2026, 3, 1), fhir) is None  # a Sunday: not due before the 2nd
    assert not published(fhir, period)
    publish(settings, figures(*period), period, fhir=fhir)
    assert published(fhir, period)
    assert publish_if_due(settings, date(2026, 3, 2), fhir) is None  # due, and already there
