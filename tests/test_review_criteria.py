"""The four MMRpv criteria: met / not met / unknown, with evidence; and the recommendation."""

from __future__ import annotations

import pytest

from adapter.mappings import load
from adapter.workflow.review.criteria import CRITERIA, evaluate, matches, questionnaire_map
from tests.support.workflow import (
    ALL_MET,
    CANONICAL,
    ICD10,
    MMRPV_ANSWERS,
    NOW,
    add,
    assessment,
    referral,
    response,
    service_request,
)


def result(answers: dict[str, str], criterion: str, **sr: object) -> str:
    state = add(referral(service_request(**sr)), response(answers))  # type: ignore[arg-type]
    return evaluate(state, NOW).result(criterion)


def with_answers(**changes: str) -> dict[str, str]:
    return {**MMRPV_ANSWERS, **changes}


# ---------------------------------------------------------------- from the patient's answers


@pytest.mark.parametrize(
    ("criterion", "answers", "expected"),
    [
        ("stable-diagnosis", with_answers(), "met"),
        ("stable-diagnosis", with_answers(**{"utredning-pagar": "ja"}), "not-met"),
        ("stable-diagnosis", with_answers(**{"diagnos-besked": "osaker"}), "unknown"),
        ("limited-psychiatric-comorbidity", with_answers(), "met"),
        ("limited-psychiatric-comorbidity", with_answers(**{"psykiatri-kontakt": "ja"}), "not-met"),
        ("limited-psychiatric-comorbidity", with_answers(beroende="vill-ej-svara"), "unknown"),
        ("work-status", with_answers(), "met"),
        ("work-status", with_answers(sysselsattning="sjukskriven-heltid"), "not-met"),
        ("work-status", with_answers(sysselsattning="studerar"), "unknown"),
        ("group-treatment", with_answers(), "met"),
        ("group-treatment", with_answers(**{"grupp-narvaro": "nej"}), "not-met"),
        ("group-treatment", {k: v for k, v in MMRPV_ANSWERS.items() if k != "grupp-narvaro"}, "unknown"),
    ],
)
def test_each_criterion_from_the_questionnaire(criterion: str, answers: dict[str, str], expected: str) -> None:
    assert result(answers, criterion) == expected


def test_evidence_names_the_answers_and_the_response() -> None:
    state = add(referral(), response(with_answers(sysselsattning="sjukskriven-heltid")))
    finding = next(f for f in evaluate(state, NOW).findings if f.criterion == "work-status")
    assert [(e.element, e.value, e.verdict, e.source) for e in finding.evidence] == [
        ("sysselsattning", "sjukskriven-heltid", "not-met", "QuestionnaireResponse/qr1")
    ]
    assert finding.text() == "sysselsattning = sjukskriven-heltid: Ej uppfyllt (QuestionnaireResponse/qr1)"
    assert "Not met" in finding.text("en")


def test_answers_count_only_as_the_form_groups_them() -> None:
    grouped = response(MMRPV_ANSWERS)
    assert evaluate(add(referral(), grouped), NOW).level == "MMRpv"
    flat = {**grouped, "item": [i for g in grouped["item"] for i in g["item"]]}  # no longer the form's items
    assert evaluate(add(referral(), flat), NOW).response is None


def test_other_questionnaires_and_other_patients_do_not_count() -> None:
    other_form = {**response(MMRPV_ANSWERS), "questionnaire": "https://example.org/Questionnaire/x"}
    other_patient = response(MMRPV_ANSWERS, pid="p2")
    unrelated = response(MMRPV_ANSWERS, based_on="ServiceRequest/other")
    in_progress = {**response(MMRPV_ANSWERS), "status": "in-progress"}
    for qr in (other_form, other_patient, unrelated, in_progress):
        assert evaluate(add(referral(), qr), NOW).response is None


# ---------------------------------------------------------------- from the referral


@pytest.mark.parametrize("verdict", ["met", "not-met"])
def test_the_referrers_assessment(verdict: str) -> None:
    sr = service_request(extension=[assessment(c, verdict) for c in CRITERIA])
    found = evaluate(referral(sr), NOW)
    assert {f.result for f in found.findings} == {verdict}
    assert found.findings[0].evidence[0].source == "ServiceRequest/sr1"


@pytest.mark.parametrize(
    ("icd", "expected"), [("F31.1", "not-met"), ("F322", "not-met"), ("F32.1", "met"), ("M54.5", "met")]
)
def test_severe_psychiatric_diagnosis_in_the_reasons(icd: str, expected: str) -> None:
    sr = service_request(extension=ALL_MET, reasonCode=[{"coding": [{"system": ICD10, "code": icd}]}])
    assert evaluate(referral(sr), NOW).result("limited-psychiatric-comorbidity") == expected


def test_no_evidence_is_unknown() -> None:
    found = evaluate(referral(), NOW)
    assert found.unknown == CRITERIA and found.level is None and not found.determinate
    assert found.findings[0].text() == "Inget underlag"


def test_conflicting_evidence_never_gives_met() -> None:
    sr = service_request(extension=ALL_MET)
    assert (
        result(with_answers(**{"grupp-delta": "nej"}), "group-treatment", **{"extension": sr["extension"]}) == "not-met"
    )
    assert (
        result(with_answers(**{"grupp-delta": "osaker"}), "group-treatment", **{"extension": sr["extension"]})
        == "unknown"
    )


# ---------------------------------------------------------------- recommendation


def test_recommendation_levels() -> None:
    assert evaluate(add(referral(), response(MMRPV_ANSWERS)), NOW).level == "MMRpv"
    mixed = add(referral(), response(with_answers(sysselsattning="arbetssokande", **{"diagnos-besked": "osaker"})))
    found = evaluate(mixed, NOW)
    assert found.level == "MMRsv" and not found.determinate
    undetermined = add(referral(), response(with_answers(**{"diagnos-besked": "osaker"})))
    assert evaluate(undetermined, NOW).level is None


def test_value_matching() -> None:
    assert matches([True, "yes"], True) and not matches([True], 1)
    assert matches(["Ja"], "ja")
    assert matches({"at-most": 10}, 10) and not matches({"at-most": 10}, 11) and not matches({"at-most": 10}, True)
    assert matches({"at-least": 15}, 15.0)
    assert matches({"prefix": ["F32.2"]}, "F322") and matches({"prefix": ["F20"]}, "F20.1")
    assert not matches({"prefix": ["F20"]}, 20)


def test_questionnaire_map_agrees_with_our_configuration() -> None:
    """profiles/questionnaire-criteria.yaml is read as owned by profiles/ and covers all four criteria."""
    mapping = questionnaire_map()
    assert set(mapping["criteria"]) == set(CRITERIA)
    assert (
        f"{mapping['questionnaire']}|{mapping['version']}"
        == load("criteria")["questionnaire"]["canonical"]
        == CANONICAL
    )
    assert set(load("criteria")["criteria"]) == set(CRITERIA)
