"""The compiled FHIRPath (``adapter.fhir.fhirpath``) answers as fhirpathpy does, for every expression we ship
and for generated referrals, Consents and Patients, well-formed or not (hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import fhirpathpy
import pytest
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapter.conformance.package import example, profiles_dir, read_json
from adapter.fhir.fhirpath import OPTIONS, R4, compiled, nodes
from adapter.mappings import codes, load
from adapter.workflow.core import Referral
from adapter.workflow.referral import performer_clinic
from adapter.workflow.review import sources

BASE = codes().base
SECTION = f"{BASE}/StructureDefinition/mmr-referral-section"
ASSESSMENT = f"{BASE}/StructureDefinition/mmr-criterion-assessment"
INFORMED = f"{BASE}/StructureDefinition/mmr-patient-informed"


def shipped() -> list[str]:
    """Every FHIRPath the adapter evaluates: the completeness rules, the criteria's assessments and the
    profiles' invariants."""
    rules = [r["expression"] for r in load("completeness")["rules"]]
    criteria = load("criteria")
    for name, criterion in criteria["criteria"].items():
        for rule in criterion.get("referral") or ():
            rules.append(
                criteria["assessment_expression"].replace("{criterion}", name)
                if rule.get("source") == "assessment"
                else rule["path"]
            )
    invariants = [
        c["expression"]
        for path in sorted(profiles_dir().glob("StructureDefinition-*.json"))
        for e in read_json(path)["differential"]["element"]
        for c in e.get("constraint") or ()
    ]
    return sorted({e.replace("{base}", BASE) for e in rules + invariants})


# Each construct the compiler knows, in the shapes fhirpathpy treats in its own way: a node as a
# where() criterion, 1 equal to true, comparisons of strings and dates, empty operands.
CONSTRUCTS = [
    "identifier.value.isDistinct()",
    "identifier.system.startsWith('urn:')",
    "extension.value.not()",
    "(extension.exists() xor note.exists()) implies reasonCode.empty()",
    "extension.where(value)",
    "extension.where(value).url",
    "extension.all(value = true)",
    "extension.all(value)",
    "identifier.where(system).value",
    "note.text != 'x'",
    "subject.reference = %patientReference",
    "%consents.provision.period.start.toDateTime() <= %now.toDateTime()",
    "%consents.provision.period.start < %now",
    "authoredOn > '2026-01-01'",
    "extension.value > 1",
    "%patient.identifier.value",
    "%missing.exists()",
    "extension.exists(value = 'met') or extension.empty()",
    "performer.identifier.where(value.exists()).exists().not()",
    "Consent.status",
    # the SQL on FHIR views' part (adapter/flow/viewdef.py)
    "identifier.first().value",
    "identifier[1].system",
    "$this.identifier.where($this.system = 'urn:oid:1.2.752.29.4.19').value",
    "extension('criterion').value",
    "extension('criterion').extension('result').value.ofType(string)",
    "extension.value.ofType(Coding).code",
    "extension.value.ofType(code)",
    "note.extension.value.ofType(boolean).first()",
    "getResourceKey()",
    "subject.getReferenceKey()",
    "performer.getReferenceKey(Organization)",
    "identifier.value.join(',')",
    "identifier.system.join()",
    # iif, + and {} as the MMR views use them (profiles/views/), and in fhirpathpy's own shapes: a
    # non-boolean criterion, a collection as input, a branch not taken that would fail
    "iif(identifier.value.exists(), identifier.value.first(), 'sr-' + getResourceKey())",
    "iif(subject.getReferenceKey(Patient).exists(), 'Patient', iif(note.exists(), note.text, {}))",
    "iif(authoredOn.exists(), authoredOn, subject.reference)",
    "iif(extension.value, 'yes', 'no')",
    "iif(extension.value.first() = 1, 'one')",
    "identifier.iif(system.exists(), value)",
    "iif(true, {}, identifier.value + 'x')",
    "identifier.value.first() + '-' + note.text.first()",
    "extension.value.first() + extension.value.first()",
]


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


ODD = st.one_of(
    st.integers(-2, 2),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.just(""),
    st.just([]),
    st.just({}),
    st.lists(st.text(max_size=3), max_size=2),
)
TEXT = st.one_of(
    st.sampled_from(["met", "not-met", "pain-history", "work-situation", "x", "urn:oid:1", "true"]), st.text(max_size=5)
)
DATE = st.sampled_from(
    [
        "2026",
        "2026-12",
        "2026-12-07",
        "2026-12-07T09:00:00+01:00",
        "2027-01-01T00:00:00Z",
        "2025-06-30T23:59:59.999+02:00",
        "not a date",
        "2026-13-40",
    ]
)
URL = st.sampled_from([SECTION, ASSESSMENT, INFORMED, "criterion", "result", "https://other.example/ext"])
SYSTEM = st.sampled_from(
    [
        "http://electronichealth.se/identifier/personnummer",
        "http://electronichealth.se/identifier/samordningsnummer",
        "urn:oid:1.2.752.29.4.19",
        "https://mmr-adapter.se/fhir/identifier/referral",
        "https://other.example/id",
    ]
)
VALUE_KEY = st.sampled_from(
    [
        "valueCode",
        "valueString",
        "valueBoolean",
        "valueInteger",
        "valueDecimal",
        "valueCoding",
        "valueDateTime",
        "_valueCode",
    ]
)


def value_for(key: str) -> st.SearchStrategy[Any]:
    return {
        "valueCode": TEXT,
        "valueString": TEXT,
        "valueBoolean": st.booleans(),
        "valueInteger": st.integers(0, 2),
        "valueDecimal": st.floats(0, 2),
        "valueCoding": st.fixed_dictionaries({"code": TEXT}),
        "valueDateTime": DATE,
        "_valueCode": st.just({"extension": [{"url": "u", "valueString": "v"}]}),
    }[key]


def dicts(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects holding any subset of ``fields``, now and then a field of the wrong type."""

    def build(draw: st.DrawFn) -> dict[str, Any]:
        out = {}
        for name, strategy in fields.items():
            if draw(st.booleans()):
                out[name] = draw(st.one_of(strategy, ODD) if draw(st.integers(0, 9)) == 0 else strategy)
        return out

    return st.composite(build)()


@st.composite
def extension(draw: st.DrawFn, depth: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {"url": draw(URL)}
    if draw(st.booleans()):
        key = draw(VALUE_KEY)
        out[key] = draw(value_for(key))
    if depth < 1 and draw(st.booleans()):
        out["extension"] = draw(st.lists(extension(depth + 1), max_size=3))
    return out


IDENTIFIER = dicts({"system": SYSTEM, "value": TEXT, "_system": st.just({"extension": []})})
REFERENCE = dicts({"reference": st.sampled_from(["Patient/p1", "Organization/x", "#c1"]), "identifier": IDENTIFIER})
EXTENSIONS = st.lists(extension(), max_size=4)
SERVICE_REQUEST = dicts(
    {
        "identifier": st.lists(IDENTIFIER, max_size=3),
        "performer": st.lists(REFERENCE, max_size=2),
        "extension": EXTENSIONS,
        "note": st.lists(dicts({"text": TEXT, "extension": EXTENSIONS}), max_size=3),
        "reasonCode": st.lists(
            dicts({"text": TEXT, "coding": st.lists(dicts({"code": TEXT}), max_size=2)}), max_size=2
        ),
        "reasonReference": st.lists(REFERENCE, max_size=1),
        "subject": REFERENCE,
        "authoredOn": DATE,
    }
).map(lambda sr: {"resourceType": "ServiceRequest", **sr})
CONSENT = dicts(
    {
        "status": st.sampled_from(["active", "inactive"]),
        "patient": REFERENCE,
        "provision": dicts(
            {
                "type": st.sampled_from(["permit", "deny"]),
                "actor": st.lists(dicts({"reference": REFERENCE}), max_size=2),
                "period": dicts({"start": DATE, "end": DATE}),
            }
        ),
        "verification": st.lists(dicts({"verified": st.booleans()}), max_size=2),
    }
).map(lambda c: {"resourceType": "Consent", **c})
PATIENT = dicts({"identifier": st.lists(IDENTIFIER, max_size=2)}).map(lambda p: {"resourceType": "Patient", **p})
REQUESTER = dicts({"telecom": st.lists(dicts({"value": TEXT}), max_size=2)}).map(
    lambda r: {"resourceType": "PractitionerRole", **r}
)
VARIABLES = st.fixed_dictionaries(
    {
        "consents": st.lists(CONSENT, max_size=2),
        "patient": st.lists(PATIENT, max_size=1),
        "patientReference": st.sampled_from(["Patient/p1", ""]),
        "requester": st.lists(REQUESTER, max_size=1),
        "requesterOrganization": st.lists(REQUESTER, max_size=1),
        "clinicReference": st.sampled_from(["Organization/x", ""]),
        "clinicHsa": st.sampled_from(["SE1", ""]),
        "now": DATE,
        "conditions": st.just([]),
    }
)


def outcome(evaluate: Any, resource: dict[str, Any], variables: dict[str, Any]) -> tuple[str, Any]:
    try:
        return "value", evaluate(resource, variables)
    except Exception:  # fhirpathpy raises bare Exception; failing is an answer too
        return "error", None


def answer_alike(expression: str, resource: dict[str, Any], variables: dict[str, Any]) -> None:
    interpreted = fhirpathpy.compile(expression, models["r4"], OPTIONS)  # with SQL on FHIR's two functions
    assert outcome(compiled(expression), resource, variables) == outcome(interpreted, resource, variables)


@pytest.mark.parametrize("expression", shipped() + CONSTRUCTS)
@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(resource=SERVICE_REQUEST, variables=VARIABLES)
def test_compiled_fhirpath_answers_as_fhirpathpy(
    expression: str, resource: dict[str, Any], variables: dict[str, Any]
) -> None:
    answer_alike(expression, resource, variables)


# ``$this`` at the top: FHIRPath's input, which a view's column under a forEach needs; fhirpathpy raises.
@pytest.mark.parametrize("expression", [c for c in CONSTRUCTS if not c.startswith("$this")])
@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(resource=SERVICE_REQUEST, variables=VARIABLES)
def test_nodes_answer_as_fhirpathpy_on_a_node(
    expression: str, resource: dict[str, Any], variables: dict[str, Any]
) -> None:
    """``nodes()`` (what a view runner iterates on) gives fhirpathpy's nodes: the same data, in order; a
    value of an element the same type."""
    interpreted = fhirpathpy.compile(expression, R4, {**OPTIONS, "returnRawData": True})

    def plain(resource: dict[str, Any], variables: dict[str, Any]) -> list[Any]:
        return [getattr(n, "data", n) for n in interpreted(ResourceNode.create_node(resource, None), variables)]

    def ours(resource: dict[str, Any], variables: dict[str, Any]) -> list[Any]:
        return [data for data, _ in nodes(expression)((resource, None), variables)]

    assert outcome(ours, resource, variables) == outcome(plain, resource, variables)


def test_nodes_take_this_at_the_top_as_the_input() -> None:
    name = {"given": ["Anna", "Lo"], "family": "Berg"}
    assert nodes("$this")((name, "HumanName"), {}) == [(name, "HumanName")]
    assert [d for d, _ in nodes("$this.given.where($this != 'Lo')")((name, "HumanName"), {})] == ["Anna"]


@pytest.mark.parametrize("expression", shipped())
def test_the_published_examples_are_answered_alike(expression: str) -> None:
    """With the variables the review gives the rules (``sources.variables``), for the published referral
    and its patient's Consent."""
    consent = example("Consent-mmr-example-consent.json")
    referral = Referral(example("ServiceRequest-mmr-example-referral.json"), {f"Consent/{consent['id']}": consent})
    env = sources.variables(referral, performer_clinic(referral), datetime(2026, 12, 7, 10, tzinfo=UTC))
    assert env["consents"] and env["clinicReference"]  # the rules have something to read
    answer_alike(expression, referral.service_request, env)
