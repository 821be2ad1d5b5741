"""The flow figures as FHIR MeasureReports: pure, ``reports(figures, period) -> [MeasureReport]``.

One ``summary`` report per Measure (``mappings/measures.yaml``, published as
``profiles/Measure-*.json``) for every organisation of the figures and for the region, and
``subject-list`` reports for the Measures that name their referrals ("nobody responsible", and
"waiting beyond the guarantee" when the caller hands over that list: the figures dict of the
contract counts those referrals in buckets but does not name them).

Why these shapes:

* Deterministic: the same figures and period give the same reports, byte for byte. Each carries
  a business identifier (organisation, Measure, report type, period), an id derived from it
  (:func:`report_id`), and its ``date`` is the figures' snapshot moment, never the time of
  publishing, so publishing twice finds the report it wrote and sees that nothing changed.
* Every report answers every group and stratifier its Measure defines, by the same code
  (system and code of ``mmr-measure-part``), as HAPI's validator requires: the region's report is
  stratified by organisation (one stratum per clinic, unit and site), an organisation's own report
  by its one organisation; the Measure's other stratifiers (days waited, how many organisations
  held the referral) follow, with no strata when the figures have none to give. A population the
  figures do not count is still named, without a count.
* A subject list is a ``List`` contained in its report, referring to each referral logically by
  its business identifier (``ServiceRequest`` + identifier, as the figures give it: a value, or
  ``system|value``). No resolving to server ids is needed, the report stays one resource that
  compares as a whole, and it means the same on any server the store was built from. No
  patient, no name, no personnummer, no free text appears in any report.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any

from adapter.mappings import HSA_SYSTEM, MeasureDef, MeasureGroupDef, codes, measure_definitions

Resource = dict[str, Any]
Period = tuple[date, date]

IDENTIFIER_KIND = "measurereport"
REGION = "region"
POPULATION = "http://terminology.hl7.org/CodeSystem/measure-population"
IMPROVEMENT = "http://terminology.hl7.org/CodeSystem/measure-improvement-notation"
UCUM = "http://unitsofmeasure.org"
LIST_EMPTY = "http://terminology.hl7.org/CodeSystem/list-empty-reason"
DATA_ABSENT = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
SUBJECTS_ID = "subjects"
ORGANISATION = "organisation"
PART = "measure-part"  # the code system of the groups' and stratifiers' codes, as in the Measures
BEYOND_KEY = "waiting_beyond_guarantee"  # the key the Measure counts; filled from ``waiting_beyond``
SUMMARY, SUBJECT_LIST = "summary", "subject-list"


def measure_url(measure_id: str) -> str:
    return f"{codes().base}/Measure/{measure_id}"


def identifier_system() -> str:
    return codes().identifier_system(IDENTIFIER_KIND)


def identifier_value(organization: str | None, measure_id: str, report_type: str, period: Period) -> str:
    """``<HSA id or region>:<measure>:<summary|subject-list>:<from>:<to>``: one report, ever."""
    start, end = period
    return f"{organization or REGION}:{measure_id}:{report_type}:{start.isoformat()}:{end.isoformat()}"


def report_id(identifier: str) -> str:
    """The report's resource id, derived from its business identifier (``mr-`` + uuid5): the same
    report is always the same resource, written by ``PUT MeasureReport/<id>`` (update as create).

    Why not a conditional create on the identifier, as the workflow writes: not every server
    indexes ``MeasureReport.identifier`` (the sandbox ignores the parameter and would match every
    report), while every server reads and writes by id.
    """
    return "mr-" + str(uuid.uuid5(uuid.NAMESPACE_URL, f"{identifier_system()}|{identifier}"))


def _lookup(figures: Mapping[str, Any], key: str) -> Any:
    """A figures value by key; a dotted key reaches into an object (``on_hold_median_days.referrer``)."""
    value: Any = figures
    for part in key.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _count(figures: Mapping[str, Any], key: str) -> int | None:
    """A population's count: a number as is, a list's length, an object's values summed."""
    value = _lookup(figures, key)
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return len(value)
    if isinstance(value, Mapping):
        return sum(int(v) for v in value.values() if isinstance(v, int | float) and not isinstance(v, bool))
    return None


def _number(value: Any) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _undefined() -> Resource:
    """The extension of a score's absent value: a score of no numbers (see :func:`_score`)."""
    return {"extension": [{"url": DATA_ABSENT, "valueCode": "not-applicable"}]}


def _score(figures: Mapping[str, Any], g: MeasureGroupDef) -> dict[str, Any] | None:
    """The group's measureScore: numerator / denominator for a ratio, else the figure itself; None
    for a group that has no score (a cohort's count is its result).

    When the figures have no number (no review decided, no first visit, nobody on hold) there is
    no score, never a 0: its value is absent with the reason ``not-applicable`` (data-absent-reason,
    R4's "there is no proper value for this element"; its ``not-a-number`` means a processing
    error, which this is not). Not left out: R4 would allow that, but HAPI's validator requires a
    measureScore of every proportion and continuous variable, and the reason tells a reader the
    score was not forgotten.
    """
    if g.score is None:
        return None
    value: int | float | None
    if g.score == "ratio":
        pops = dict(g.populations)
        num = _count(figures, pops.get("numerator") or "")
        den = _count(figures, pops.get("denominator") or "")
        value = round(num / den, 4) if num is not None and den else None
    else:
        value = _number(_lookup(figures, g.score))
    quantity: dict[str, Any] = {"value": value} if value is not None else {"_value": _undefined()}
    if g.unit:
        quantity.update({"unit": g.unit[0], "system": UCUM, "code": g.unit[1]})
    return quantity


def _populations(figures: Mapping[str, Any], g: MeasureGroupDef, subjects: str | None = None) -> list[Resource]:
    out = []
    for code, key in g.populations:
        pop: Resource = {"code": {"coding": [{"system": POPULATION, "code": code}]}}
        count = _count(figures, key) if key is not None else None
        if count is not None:
            pop["count"] = count
        if subjects:
            pop["subjectResults"] = {"reference": f"#{subjects}"}
        out.append(pop)
    return out


def _counted(count: Any) -> list[Resource]:
    number = _number(count)
    pop: Resource = {"code": {"coding": [{"system": POPULATION, "code": "initial-population"}]}}
    if isinstance(number, int):
        pop["count"] = number
    return [pop]


def _own_stratifiers(figures: Mapping[str, Any], g: MeasureGroupDef) -> list[Resource]:
    out = []
    for s in g.stratifiers:
        strata: Iterable[tuple[str, Any]]
        if s.strata_from:
            source = _lookup(figures, s.strata_from)
            strata = source.items() if isinstance(source, Mapping) else ()
        else:
            strata = ((value, _lookup(figures, key)) for value, key in s.strata)
        stratum = [{"value": {"text": str(value)}, "population": _counted(count)} for value, count in strata]
        out.append(_stratifier(s.code, stratum))
    return out


def _stratifier(code: str, stratum: list[Resource]) -> Resource:
    """A stratifier of the Measure's, present even without strata: a report answers every
    stratifier its Measure defines (R4 allows ``stratum`` 0..*; HAPI's validator requires the
    stratifier), and no strata says the population had none to stratify, which is then true."""
    out: Resource = {"code": [codes().concept(PART, code)]}
    if stratum:
        out["stratum"] = stratum
    return out


def _by_organisation(organisations: Sequence[Mapping[str, Any]], g: MeasureGroupDef) -> Resource:
    """The ``organisation`` stratifier: in the region's report one stratum per organisation; in an
    organisation's own report its one stratum, which holds the whole population (the figures of
    an organisation are all that organisation's), so it repeats the group's numbers."""
    stratum = []
    for org in organisations:
        s: Resource = {
            "value": {"coding": [{"system": HSA_SYSTEM, "code": str(org["organization"])}], "text": str(org["name"])},
            "population": _populations(org, g),
        }
        score = _score(org, g)
        if score is not None:
            s["measureScore"] = score
        stratum.append(s)
    return _stratifier(ORGANISATION, stratum)


def _group(
    figures: Mapping[str, Any],
    g: MeasureGroupDef,
    organisations: Sequence[Mapping[str, Any]] | None,
    subjects: str | None = None,
) -> Resource:
    group: Resource = {"code": codes().concept(PART, g.code), "population": _populations(figures, g, subjects)}
    score = _score(figures, g)
    if score is not None:
        group["measureScore"] = score
    group["stratifier"] = [
        _by_organisation(organisations if organisations is not None else [figures], g),
        *_own_stratifiers(figures, g),
    ]
    return group


def _reference(identifier: str) -> Resource:
    system, _, value = identifier.rpartition("|")
    ident = {"system": system, "value": value} if system else {"value": value}
    return {"type": "ServiceRequest", "identifier": ident}


def _subject_list(m: MeasureDef, identifiers: Sequence[str]) -> Resource:
    listed: Resource = {"resourceType": "List", "id": SUBJECTS_ID, "status": "current", "mode": "snapshot"}
    listed["title"] = m.title
    if identifiers:
        listed["entry"] = [{"item": _reference(i)} for i in sorted(set(identifiers))]
    else:
        listed["emptyReason"] = {"coding": [{"system": LIST_EMPTY, "code": "nilknown"}]}
    return listed


def _report(
    m: MeasureDef,
    report_type: str,
    figures: Mapping[str, Any],
    period: Period,
    at: str,
    organisations: Sequence[Mapping[str, Any]] | None,
) -> Resource:
    organization = figures.get("organization")
    ident = identifier_value(organization, m.id, report_type, period)
    report: Resource = {"resourceType": "MeasureReport", "id": report_id(ident)}
    subjects = None
    if report_type == SUBJECT_LIST:
        key = next(k for _, k in m.groups[0].populations if k)
        listed = _lookup(figures, key)
        report["contained"] = [_subject_list(m, [str(i) for i in listed or ()])]
        subjects = SUBJECTS_ID
    report.update(
        {
            "identifier": [{"system": identifier_system(), "value": ident}],
            "status": "complete",
            "type": report_type,
            "measure": measure_url(m.id),
            "date": at,
            "period": {"start": period[0].isoformat(), "end": period[1].isoformat()},
        }
    )
    if organization:
        report["reporter"] = {
            "identifier": {"system": HSA_SYSTEM, "value": str(organization)},
            "display": str(figures.get("name") or organization),
        }
    report["improvementNotation"] = {"coding": [{"system": IMPROVEMENT, "code": m.improvement}]}
    report["group"] = [_group(figures, g, organisations, subjects) for g in m.groups]
    return report


def _check_period(figures: Mapping[str, Any], period: Period) -> None:
    """A report names the period its numbers are for: figures of another period are a caller's bug."""
    start, end = period
    if start > end:
        raise ValueError(f"period starts after it ends: {start} > {end}")
    given = (figures.get("from"), figures.get("to"))
    if given != (None, None) and given != (start.isoformat(), end.isoformat()):
        raise ValueError(f"the figures are for {given[0]}..{given[1]}, not {start}..{end}")


def reports(
    figures: Mapping[str, Any],
    period: Period,
    *,
    waiting_beyond: Mapping[str, Sequence[str]] | None = None,
) -> list[Resource]:
    """Every MeasureReport of one period: per organisation and for the region, per Measure.

    ``figures`` is what ``adapter.flow.figures.compute`` returns for ``period`` (the contract's
    dict). ``waiting_beyond`` (HSA id -> business identifiers of the referrals waiting beyond
    the guarantee at the snapshot) adds the subject-list reports of ``mmr-waiting-beyond-guarantee``;
    without it they are left out, never published empty, since an empty list would claim nobody
    waits too long.
    """
    _check_period(figures, period)
    at = str(figures["at"])
    organisations = [dict(o) for o in figures.get("organisations") or ()]
    region = dict(figures.get("region") or {"organization": None, "name": "Region"})
    region["organization"] = None
    if "nobody_responsible" not in region and "nobody_responsible" in figures:
        region["nobody_responsible"] = figures["nobody_responsible"]
    if waiting_beyond is not None:
        for org in organisations:
            org[BEYOND_KEY] = list(waiting_beyond.get(str(org["organization"]), ()))
        region[BEYOND_KEY] = sorted({i for ids in waiting_beyond.values() for i in ids})
    out = []
    for m in measure_definitions():
        for report_type in m.reports:
            names_beyond = any(k == BEYOND_KEY for g in m.groups for _, k in g.populations)
            if report_type == SUBJECT_LIST and names_beyond and waiting_beyond is None:
                continue
            out += [_report(m, report_type, org, period, at, None) for org in organisations]
            out.append(_report(m, report_type, region, period, at, organisations))
    return out
