"""The questionnaires and the criteria map agree, and the map can be evaluated as documented."""

from __future__ import annotations

import json
from typing import Any

from adapter.conformance.build.sources.questionnaires import nrs_canonicals
from adapter.conformance.criteria_map import load_criteria_map
from adapter.conformance.package import EXAMPLE_DIR, package, profiles_dir
from adapter.mappings import codes


def flatten(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        assert item["linkId"] not in out, f"duplicate linkId {item['linkId']}"
        out[item["linkId"]] = item
        out.update(flatten(item.get("item") or []))
    return out


def intake() -> dict[str, Any]:
    return package().get(f"{codes().base}/Questionnaire/mmr-intake")


def options(item: dict[str, Any]) -> set[str]:
    return {o["valueCoding"]["code"] for o in item.get("answerOption") or ()}


def test_questionnaires_have_their_canonicals_and_version() -> None:
    base = codes().base
    for id_ in ("mmr-intake", "mmr-follow-up"):
        q = package().get(f"{base}/Questionnaire/{id_}")
        assert q["version"] == "0.1.0" and q["language"] == "sv" and q["subjectType"] == ["Patient"]


def test_linkids_are_unique_and_enable_when_points_at_real_answers() -> None:
    for id_ in ("mmr-intake", "mmr-follow-up"):
        items = flatten(package().get(f"{codes().base}/Questionnaire/{id_}")["item"])
        for item in items.values():
            for condition in item.get("enableWhen") or ():
                assert condition["answerCoding"]["code"] in options(items[condition["question"]])


def test_nrs_instruments_are_referenced_by_canonical_not_copied() -> None:
    nrs = set(nrs_canonicals().values())
    for id_ in ("mmr-intake", "mmr-follow-up"):
        q = package().get(f"{codes().base}/Questionnaire/{id_}")
        assert {e["valueRelatedArtifact"]["resource"] for e in q["extension"]} <= nrs
        assert "derivedFrom" not in q
    assert not any(package().get(url) for url in nrs)
    assert set(load_criteria_map()["nrs"].values()) == nrs


def test_criteria_map_covers_every_criterion_with_real_linkids_and_codes() -> None:
    cmap = load_criteria_map()
    q = intake()
    assert cmap["questionnaire"] == q["url"] and str(cmap["version"]) == q["version"]
    assert set(cmap["criteria"]) == set(codes().raw["code_systems"]["criterion"]["concepts"])
    items = flatten(q["item"])
    for criterion, spec in cmap["criteria"].items():
        for rule in spec["items"]:
            item = items[rule["linkId"]]
            assert set(rule["met"]) | set(rule["not_met"]) <= options(item), (criterion, rule["linkId"])
            assert not set(rule["met"]) & set(rule["not_met"])
    assert set(cmap["other"]) <= set(items)


def evaluate(cmap: dict[str, Any], response: dict[str, Any]) -> dict[str, str]:
    """The documented rule, written out: not-met if any answer is, met if all are, else unknown."""
    answers: dict[str, str] = {}

    def collect(items: list[dict[str, Any]]) -> None:
        for item in items:
            for answer in item.get("answer") or ():
                answers[item["linkId"]] = answer["valueCoding"]["code"]
            collect(item.get("item") or [])

    collect(response["item"])
    results = {}
    for criterion, spec in cmap["criteria"].items():
        verdicts = [
            "met"
            if answers.get(r["linkId"]) in r["met"]
            else "not-met"
            if answers.get(r["linkId"]) in r["not_met"]
            else "unknown"
            for r in spec["items"]
        ]
        results[criterion] = "not-met" if "not-met" in verdicts else "met" if set(verdicts) == {"met"} else "unknown"
    return results


def test_example_response_meets_every_criterion_and_a_change_flips_one() -> None:
    path = profiles_dir() / EXAMPLE_DIR / "QuestionnaireResponse-mmr-example-intake-response.json"
    response = json.loads(path.read_text(encoding="utf-8"))
    cmap = load_criteria_map()
    assert set(evaluate(cmap, response).values()) == {"met"}
    work = next(g for g in response["item"] if g["linkId"] == "arbete")
    work["item"][0]["answer"][0]["valueCoding"]["code"] = "sjukskriven-heltid"
    assert evaluate(cmap, response)["work-status"] == "not-met"
    assert set(evaluate(cmap, response).values()) == {"met", "not-met"}
    assert set(codes().raw["code_systems"]["criterion-result"]["concepts"]) >= {"met", "not-met", "unknown"}
