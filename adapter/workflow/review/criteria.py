"""The four MMRpv criteria: met, not met or unknown, each with the evidence behind it.

Pure evaluation, no steps (``recommendation`` writes the result on the review Task). Evidence
comes from the referral (rules in ``mappings/criteria.yaml``) and from the patient's answers to
the intake questionnaire (``profiles/questionnaire-criteria.yaml``, owned with the
Questionnaire, read through ``adapter.conformance.criteria_map``). Conflicting evidence never
gives ``met``: not-met wins, then unknown.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from adapter.conformance.criteria_map import load_criteria_map
from adapter.conformance.package import CRITERIA_FILE, profiles_dir
from adapter.fhir.resource import Resource
from adapter.mappings import codes, load
from adapter.workflow.answers import counts
from adapter.workflow.core import Referral
from adapter.workflow.referral import as_list, performer_clinic
from adapter.workflow.review.sources import RECORD, RuleError, answers, fhirpath, record, responses, variables
from adapter.workflow.tasks import key_of, questionnaire_task

CRITERIA = ("stable-diagnosis", "limited-psychiatric-comorbidity", "work-status", "group-treatment")
MET, NOT_MET, UNKNOWN = "met", "not-met", "unknown"


@dataclass(frozen=True)
class Evidence:
    source: str  # "ServiceRequest/<id>" or "QuestionnaireResponse/<id>"
    element: str  # what was looked at: a rule's element or a linkId
    value: str
    verdict: str


@dataclass(frozen=True)
class Finding:
    criterion: str
    result: str
    evidence: tuple[Evidence, ...] = ()

    def text(self, lang: str = "sv") -> str:
        """The evidence for ``value.text`` of the criterion's output on the review Task."""
        if not self.evidence:
            return "Inget underlag" if lang == "sv" else "No evidence"
        verdict = {v: codes().display("criterion-result", v, lang) for v in (MET, NOT_MET, UNKNOWN)}
        return "; ".join(f"{e.element} = {e.value}: {verdict[e.verdict]} ({e.source})" for e in self.evidence)


@dataclass(frozen=True)
class Assessment:
    findings: tuple[Finding, ...]
    response: Resource | None = None
    notes: tuple[str, ...] = ()

    def result(self, criterion: str) -> str:
        return next((f.result for f in self.findings if f.criterion == criterion), UNKNOWN)

    @property
    def level(self) -> str | None:
        """MMRsv if any criterion is not met, MMRpv if all are met, else none (undetermined)."""
        results = [f.result for f in self.findings]
        if NOT_MET in results:
            return "MMRsv"
        return "MMRpv" if results and all(r == MET for r in results) else None

    @property
    def determinate(self) -> bool:
        """Every criterion met or not met: what ``auto_decide`` requires."""
        return all(f.result != UNKNOWN for f in self.findings)

    @property
    def unknown(self) -> tuple[str, ...]:
        return tuple(f.criterion for f in self.findings if f.result == UNKNOWN)


# ---------------------------------------------------------------- configuration


def config() -> dict[str, Any]:
    return load("criteria")


@cache
def questionnaire_map() -> dict[str, Any]:
    """``profiles/questionnaire-criteria.yaml`` with ``{base}`` filled in; empty if it is not there."""
    if not (profiles_dir() / CRITERIA_FILE).is_file():
        return {}
    return load_criteria_map() or {}


@cache
def enable_conditions() -> dict[str, tuple[str, tuple[dict[str, Any], ...]]]:
    """linkId -> (enableBehavior, enableWhen) of the Questionnaire definition, if available."""
    path = profiles_dir() / str(config()["questionnaire"].get("definition") or "")
    if not path.is_file():
        return {}
    out: dict[str, tuple[str, tuple[dict[str, Any], ...]]] = {}

    def walk(items: Any) -> None:
        for item in items or ():
            if item.get("enableWhen"):
                out[item["linkId"]] = (item.get("enableBehavior") or "all", tuple(item["enableWhen"]))
            walk(item.get("item"))

    with path.open(encoding="utf-8") as fh:
        walk(json.load(fh).get("item"))
    return out


# ---------------------------------------------------------------- matching values


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _same(value: Any, expected: Any) -> bool:
    if isinstance(value, bool) or isinstance(expected, bool):
        return value is expected
    if isinstance(value, str) and isinstance(expected, str):
        return value.casefold() == expected.casefold()
    return _number(value) is not None and _number(value) == _number(expected)


def matches(spec: Any, value: Any) -> bool:
    """A value against a list of values, ``{at-most}``, ``{at-least}`` or ``{prefix}``."""
    if isinstance(spec, list):
        return any(_same(value, s) for s in spec)
    if not isinstance(spec, dict):
        return False
    number = _number(value)
    if "at-most" in spec and number is not None and number <= float(spec["at-most"]):
        return True
    if "at-least" in spec and number is not None and number >= float(spec["at-least"]):
        return True
    code = str(value).replace(".", "").upper() if isinstance(value, str) else None
    if not code:
        return False
    return any(code.startswith(str(p).replace(".", "").upper()) for p in as_list(spec.get("prefix")))


def verdict_of(rule: dict[str, Any], value: Any) -> str | None:
    for result in (NOT_MET, MET, UNKNOWN):
        if matches(rule.get(result), value):
            return result
    return rule.get("otherwise")


def combine(verdicts: list[str]) -> str:
    if NOT_MET in verdicts:
        return NOT_MET
    if UNKNOWN in verdicts:
        return UNKNOWN
    return MET if MET in verdicts else UNKNOWN


# ---------------------------------------------------------------- evidence from the referral


def _label(value: Any, lang: str) -> str:
    return str(value.get(lang) or value.get("sv")) if isinstance(value, dict) else str(value)


def _from_referral(
    referral: Referral, now: datetime, lang: str
) -> tuple[tuple[tuple[Evidence, ...], tuple[str, ...]], ...]:
    """Each criterion's evidence in the referral and the record, once per event however many steps ask."""

    def compute() -> tuple[tuple[tuple[Evidence, ...], tuple[str, ...]], ...]:
        clinic = performer_clinic(referral)
        env = variables(referral, clinic, now, conditions=record(referral, clinic, now))
        return tuple((tuple(e), tuple(n)) for e, n in (_referral_evidence(referral, c, env, lang) for c in CRITERIA))

    return referral.derived(("criteria", now, lang), compute, RECORD)


def _referral_evidence(
    referral: Referral, criterion: str, env: dict[str, Any], lang: str
) -> tuple[list[Evidence], list[str]]:
    evidence, notes = [], []
    for rule in config()["criteria"].get(criterion, {}).get("referral") or ():
        if rule.get("source") == "assessment":
            expression = config()["assessment_expression"].replace("{criterion}", criterion)
            element = _label(config()["assessment_label"], lang)
        else:
            expression, element = str(rule["path"]), _label(rule.get("element") or rule["path"], lang)
        try:
            values = fhirpath(expression, referral.service_request, env)
        except RuleError as exc:
            notes.append(f"criterion {criterion}: a referral rule could not be evaluated ({exc})")
            continue
        for value in values:
            plain = value if isinstance(value, str | int | float | bool) else str(value)
            if (verdict := verdict_of(rule, plain)) is not None:
                evidence.append(Evidence(referral.reference, element, str(plain), verdict))
    return evidence, notes


# ---------------------------------------------------------------- evidence from the patient's answers


def _enabled(link_id: str, given: dict[str, list[Any]]) -> bool:
    behaviour, conditions = enable_conditions().get(link_id, ("all", ()))
    if not conditions:
        return True
    results = [_condition_holds(c, given) for c in conditions]
    return any(results) if behaviour == "any" else all(results)


def _condition_holds(condition: dict[str, Any], given: dict[str, list[Any]]) -> bool:
    values = given.get(str(condition.get("question")), [])
    operator = condition.get("operator")
    if operator == "exists":
        return bool(values) == bool(condition.get("answerBoolean"))
    expected = next(
        (v.get("code") if isinstance(v, dict) else v for k, v in condition.items() if k.startswith("answer")), None
    )
    hit = any(_same(v, expected) for v in values)
    return hit if operator == "=" else (not hit if operator == "!=" else False)


def questionnaire_finding(criterion: str, response: Resource) -> tuple[str, list[Evidence]] | None:
    """The criterion's result from one QuestionnaireResponse, by questionnaire-criteria.yaml's rule."""
    spec = (questionnaire_map().get("criteria") or {}).get(criterion)
    if not spec:
        return None
    given = answers(response)
    source = f"QuestionnaireResponse/{response.get('id')}" if response.get("id") else "QuestionnaireResponse"
    evidence, all_answered, all_met = [], True, True
    for item in as_list(spec.get("items")):
        link_id = str(item["linkId"])
        if not _enabled(link_id, given):
            continue
        values = given.get(link_id) or []
        all_answered = all_answered and bool(values)
        for value in values:
            verdict = (
                NOT_MET
                if matches(item.get("not_met") or [], value)
                else MET
                if matches(item.get("met") or [], value)
                else UNKNOWN
            )
            all_met = all_met and verdict == MET
            evidence.append(Evidence(source, link_id, str(value), verdict))
    if any(e.verdict == NOT_MET for e in evidence):
        return NOT_MET, evidence
    return (MET if evidence and all_answered and all_met else UNKNOWN), evidence


def answerable(criterion: str) -> bool:
    """Whether the intake questionnaire can tell anything about this criterion."""
    return bool((questionnaire_map().get("criteria") or {}).get(criterion))


# ---------------------------------------------------------------- the assessment


def latest_response(referral: Referral) -> Resource | None:
    """The newest of the patient's answers that counts (``adapter.workflow.answers``: it answers the form)."""
    return next((r for r in _responses(referral) if counts(referral, r)), None)


def newest_response(referral: Referral) -> Resource | None:
    """The newest of the patient's answers, whether it counts or not."""
    found = _responses(referral)
    return found[0] if found else None


def _responses(referral: Referral) -> list[Resource]:
    task = questionnaire_task(referral)
    return responses(referral, task, key_of(referral, task) if task else None)


def evaluate(referral: Referral, now: datetime, lang: str = "sv") -> Assessment:
    """Every criterion from the referral and the patient's newest completed answers that count."""
    response = latest_response(referral)
    findings: list[Finding] = []
    notes: list[str] = []
    for criterion, (in_referral, rule_notes) in zip(CRITERIA, _from_referral(referral, now, lang), strict=True):
        evidence = list(in_referral)
        notes += rule_notes
        verdicts = [e.verdict for e in evidence]
        if response is not None and (found := questionnaire_finding(criterion, response)):
            verdicts.append(found[0])
            evidence += found[1]
        findings.append(Finding(criterion, combine(verdicts), tuple(evidence)))
    return Assessment(tuple(findings), response, tuple(notes))
