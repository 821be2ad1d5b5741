"""The flow figures as FHIR ``Measure`` resources, one per figure, from ``mappings/measures.yaml``.

The same table fills the MeasureReports (``adapter/flow/measures.py``), so a Measure cannot say one
thing while its reports count another. A population's criteria name the figures key that counts
it (language ``text/x-mmr-figure``): the figures are SQL over the flow store, not CQL, and the
Measure says so instead of pretending to carry an executable expression.

Every group and stratifier has a code of the MMR CodeSystem ``mmr-measure-part`` (system and
code, not text alone): a validator matches a report's groups and stratifiers to the Measure's by
system and code, and HAPI's refuses a report whose codes have no system.
"""

from __future__ import annotations

from typing import Any

from adapter.conformance.build.sources.common import metadata, pascal
from adapter.fhir.resource import Resource
from adapter.mappings import MeasureDef, MeasureGroupDef, codes, measure_definitions

SCORING = "http://terminology.hl7.org/CodeSystem/measure-scoring"
MEASURE_TYPE = "http://terminology.hl7.org/CodeSystem/measure-type"
IMPROVEMENT = "http://terminology.hl7.org/CodeSystem/measure-improvement-notation"
POPULATION = "http://terminology.hl7.org/CodeSystem/measure-population"
RESOURCE_TYPES = "http://hl7.org/fhir/resource-types"
TRANSLATION = "http://hl7.org/fhir/StructureDefinition/translation"
FIGURE_LANGUAGE = "text/x-mmr-figure"  # a figures key of `mmr-adapter flow --format json`
ORGANISATION = "organisation"
PART = "measure-part"  # the code system (mappings/codes.yaml) of every group's and stratifier's code
POPULATION_WORDS = {
    "initial-population": "Counted",
    "denominator": "Denominator",
    "numerator": "Numerator",
    "measure-population": "Observed",
    "measure-observation": "Observation",
}


def _criteria(key: str, description: str) -> dict[str, Any]:
    """An Expression naming the figures key (exp-1: an Expression has an expression or a reference)."""
    return {"description": description, "language": FIGURE_LANGUAGE, "expression": key}


def _populations(m: MeasureDef, g: MeasureGroupDef) -> list[dict[str, Any]]:
    pops = [
        {
            "code": {"coding": [{"system": POPULATION, "code": code}]},
            "description": f"{POPULATION_WORDS.get(code, code)}: {g.description}",
            # A population the figures give no count for is named by the figure observed over it.
            "criteria": _criteria(key or g.score or g.code, g.description),
        }
        for code, key in g.populations
    ]
    if m.scoring == "continuous-variable" and g.score:
        unit = g.unit[0] if g.unit else "value"
        pops.append(
            {
                "code": {"coding": [{"system": POPULATION, "code": "measure-observation"}]},
                "description": f"The {unit} of each referral observed; the score is the group's aggregate.",
                "criteria": _criteria(g.score, g.description),
            }
        )
    return pops


def _stratifiers(g: MeasureGroupDef) -> list[dict[str, Any]]:
    out = [
        {
            "code": codes().concept(PART, ORGANISATION),
            "description": "The specialist clinic, the MMRpv unit or the MMRpv site (HSA id): one stratum each "
            "in the region's report.",
            "criteria": _criteria("organization", "The organisation the figures are for (HSA id)."),
        }
    ]
    for s in g.stratifiers:
        keys = ", ".join(f"{value} = {key}" for value, key in s.strata) or f"the keys of {s.strata_from}"
        out.append(
            {
                "code": codes().concept(PART, s.code),
                "description": f"{s.description} Strata: {keys}.",
                "criteria": _criteria(s.strata_from or " | ".join(key for _, key in s.strata), s.description),
            }
        )
    return out


def measure(m: MeasureDef) -> Resource:
    head = metadata("Measure", m.id, pascal(m.id), m.title, m.description)
    head["_title"] = {
        "extension": [
            {
                "url": TRANSLATION,
                "extension": [{"url": "lang", "valueCode": "sv"}, {"url": "content", "valueString": m.title_sv}],
            }
        ]
    }
    head["subjectCodeableConcept"] = {"coding": [{"system": RESOURCE_TYPES, "code": "ServiceRequest"}]}
    reports = " and ".join(m.reports)
    return {
        **head,
        "scoring": {"coding": [{"system": SCORING, "code": m.scoring}]},
        "type": [{"coding": [{"system": MEASURE_TYPE, "code": m.type}]}],
        "improvementNotation": {"coding": [{"system": IMPROVEMENT, "code": m.improvement}]},
        "guidance": f"Clock rule: {m.clock}\n\nSource: {m.source}\n\nPublished as {reports} MeasureReports "
        "per organisation and for the region, per month (`mmr-adapter flow --publish`); the subject is the "
        "referral (ServiceRequest), named by its business identifier, never by the patient.",
        "group": [
            {
                "code": codes().concept(PART, g.code),
                "description": g.description,
                "population": _populations(m, g),
                "stratifier": _stratifiers(g),
            }
            for g in m.groups
        ],
    }


def build() -> list[Resource]:
    return [measure(m) for m in measure_definitions()]
