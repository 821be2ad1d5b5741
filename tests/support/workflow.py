"""Pure-workflow test helpers: FHIR resources as dicts, and a tiny in-memory "server" for plans.

``apply`` does to a plan what the FHIR server does to the transaction: conditional creates get
an id and version 1 (or map to the existing resource with that identifier), updates bump the
version (after checking ``If-Match``), and ``urn:uuid:`` references are rewritten to
``Type/id``. With it a test can run an event, apply the plan, and run the same event again.
"""

from __future__ import annotations

import copy
import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from adapter.conformance.package import package
from adapter.conformance.questionnaire_check import enabled
from adapter.fhir.resource import Resource
from adapter.mappings import HSA_SYSTEM, codes
from adapter.workflow import task_states
from adapter.workflow.core import Context, Event, Plan, Referral
from adapter.workflow.steps import ROUTINE

STHLM = ZoneInfo("Europe/Stockholm")
NOW = datetime(2026, 3, 2, 9, 30, tzinfo=STHLM)  # a Monday
LUND = "SE2321000255-SML1"
ANGELHOLM = "SE2321000255-SMA1"  # no reviewer pool
HASSLEHOLM = "SE2321000255-SMH1"
PERSONNUMMER = "http://electronichealth.se/identifier/personnummer"
ICD10 = "http://hl7.org/fhir/sid/icd-10-se"
CANONICAL = "https://mmr-adapter.se/fhir/Questionnaire/mmr-intake|0.1.0"


def base() -> str:
    return codes().base


def ctx(now: datetime = NOW, **options: Any) -> Context:
    return Context(now=now, options=options)


# ---------------------------------------------------------------- resources


def patient(pid: str = "p1") -> Resource:
    return {
        "resourceType": "Patient",
        "id": pid,
        "meta": {"versionId": "1"},
        "identifier": [{"system": PERSONNUMMER, "value": "191212121212"}],
    }


def referrer(rid: str = "ref1") -> Resource:
    return {
        "resourceType": "PractitionerRole",
        "id": rid,
        "meta": {"versionId": "1"},
        "telecom": [{"system": "phone", "value": "040-123 45"}],
    }


def clinic_org(hsa: str = LUND) -> Resource:
    return {
        "resourceType": "Organization",
        "id": hsa,
        "meta": {"versionId": "1"},
        "identifier": [{"system": HSA_SYSTEM, "value": hsa}],
    }


def consent(
    cid: str = "c1", pid: str = "p1", clinic: str = LUND, status: str = "active", verified: bool = True
) -> Resource:
    return {
        "resourceType": "Consent",
        "id": cid,
        "meta": {"versionId": "1"},
        "status": status,
        "patient": {"reference": f"Patient/{pid}"},
        "verification": [{"verified": verified}],
        "provision": {
            "type": "permit",
            "period": {"start": "2026-01-01", "end": "2027-01-01"},
            "actor": [{"reference": {"reference": f"Organization/{clinic}"}}],
            "action": [
                {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "access"}]}
            ],
        },
    }


def section(code: str, text: str) -> dict[str, Any]:
    return {
        "extension": [{"url": f"{base()}/StructureDefinition/mmr-referral-section", "valueCode": code}],
        "text": text,
    }


def assessment(criterion: str, result: str) -> dict[str, Any]:
    return {
        "url": f"{base()}/StructureDefinition/mmr-criterion-assessment",
        "extension": [{"url": "criterion", "valueCode": criterion}, {"url": "result", "valueCode": result}],
    }


ALL_MET = [
    assessment(c, "met")
    for c in ("stable-diagnosis", "limited-psychiatric-comorbidity", "work-status", "group-treatment")
]


def service_request(sr_id: str = "sr1", clinic: str = LUND, **overrides: Any) -> Resource:
    """A complete MMR referral to ``clinic`` (every completeness rule passes with the defaults)."""
    c = codes()
    body: Resource = {
        "resourceType": "ServiceRequest",
        "id": sr_id,
        "meta": {"versionId": "1"},
        "identifier": [{"system": "https://ehr.example.se/remiss", "value": "R-1"}],
        "status": "active",
        "intent": "order",
        "category": [{"coding": [c.referral_category]}],
        "code": {"coding": [c.referral_code]},
        "subject": {"reference": "Patient/p1"},
        "requester": {"reference": "PractitionerRole/ref1"},
        "performer": [{"reference": f"Organization/{clinic}", "identifier": {"system": HSA_SYSTEM, "value": clinic}}],
        "reasonCode": [{"coding": [{"system": ICD10, "code": "M54.5"}], "text": "Ländryggssmärta"}],
        "supportingInfo": [{"reference": "Consent/c1"}],
        "note": [
            section("pain-history", "Smärta sedan 2019."),
            section("work-situation", "Arbetar 50 %."),
            section("current-treatment", "Fysioterapi."),
        ],
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def referral(sr: Resource | None = None, *extra: Resource, defaults: bool = True) -> Referral:
    """The loaded state: the ServiceRequest, patient, referrer, consent and clinic, plus ``extra``."""
    sr = sr or service_request()
    found = [sr, *(([patient(), referrer(), consent(), clinic_org(LUND)]) if defaults else []), *extra]
    return Referral(sr, {f"{r['resourceType']}/{r['id']}": r for r in found})


def response(
    answers: dict[str, str], based_on: str = "ServiceRequest/sr1", qid: str = "qr1", pid: str = "p1"
) -> Resource:
    """A completed intake QuestionnaireResponse with Coding answers, grouped as the Questionnaire groups
    them; an item the form would not show (its enableWhen does not hold) is left out, as a patient app
    does. A linkId the form does not have stays at the top level."""
    given = {k: [{"valueCoding": {"code": v}}] for k, v in answers.items()}
    groups: dict[str, list[dict[str, Any]]] = {}
    for group in intake_questionnaire()["item"]:
        for item in group.get("item") or ():
            if item["linkId"] in answers and enabled(item, given):
                groups.setdefault(group["linkId"], []).append(
                    {"linkId": item["linkId"], "answer": given[item["linkId"]]}
                )
    known = {i["linkId"] for g in intake_questionnaire()["item"] for i in g.get("item") or ()}
    strays = [{"linkId": k, "answer": v} for k, v in given.items() if k not in known]
    return {
        "resourceType": "QuestionnaireResponse",
        "id": qid,
        "meta": {"versionId": "1"},
        "questionnaire": CANONICAL,
        "status": "completed",
        "basedOn": [{"reference": based_on}],
        "subject": {"reference": f"Patient/{pid}"},
        "authored": "2026-03-03T18:00:00+01:00",
        "item": [{"linkId": g, "item": items} for g, items in groups.items()] + strays,
    }


def intake_questionnaire() -> Resource:
    found = package().get(CANONICAL)
    assert found is not None, "the intake Questionnaire is in profiles/"
    return found


MMRPV_ANSWERS = {
    "smarta-duration": "over-5-ar",
    "smarta-hinder": "ganska-mycket",
    "diagnos-besked": "ja",
    "utredning-pagar": "nej",
    "behandling-planerad": "nej",
    "psykiatri-kontakt": "nej",
    "psykisk-paverkan": "lite",
    "beroende": "nej",
    "sysselsattning": "sjukskriven-deltid",
    "sjukskrivning-langd": "3-12-man",
    "grupp-delta": "ja",
    "grupp-narvaro": "ja",
}


# The cookbook's answer to the 12-month follow-up: every required item.

FOLLOW_UP_ITEMS = [
    {"linkId": "sysselsattning", "answer": [{"valueCoding": {"code": "arbetar"}}]},
    {"linkId": "smarta-jamfort", "answer": [{"valueCoding": {"code": "battre"}}]},
    {"linkId": "vardag-jamfort", "answer": [{"valueCoding": {"code": "battre"}}]},
    {"linkId": "strategier", "answer": [{"valueCoding": {"code": "ja-ofta"}}]},
    {"linkId": "vardkontakter", "answer": [{"valueCoding": {"code": "nej"}}]},
]

# ---------------------------------------------------------------- events


def sr_event(state: Referral) -> Event:
    return Event(
        "changed", "ServiceRequest", state.id, version_id=(state.service_request.get("meta") or {}).get("versionId")
    )


def resource_event(resource: Resource) -> Event:
    return Event("changed", resource["resourceType"], resource["id"], (resource.get("meta") or {}).get("versionId"))


def timer_event(state: Referral, name: str) -> Event:
    return Event("timer", "ServiceRequest", state.id, timer=name)


# ---------------------------------------------------------------- the in-memory server


def _identifiers(resource: Resource) -> set[str]:
    return {f"{i.get('system')}|{i.get('value')}" for i in resource.get("identifier") or ()}


def renamed_references(value: Any, ids: dict[str, str]) -> Any:
    """``value`` with every ``reference`` named in ``ids`` replaced by its new name, at any depth."""
    if isinstance(value, dict):
        out = {k: renamed_references(v, ids) for k, v in value.items()}
        if isinstance(out.get("reference"), str) and out["reference"] in ids:
            out["reference"] = ids[out["reference"]]
        return out
    if isinstance(value, list):
        return [renamed_references(v, ids) for v in value]
    return value


def apply(state: Referral, plan: Plan) -> Referral:
    """The state after the server applied ``plan`` as one transaction. Every Task the plan writes must
    be at a row of its kind's state table (``mappings/task-states.yaml``)."""
    for w in plan.writes:
        if w.resource.get("resourceType") == "Task":
            assert task_states.problems(w.resource) == [], w.resource.get("identifier")
    resources = {k: copy.deepcopy(v) for k, v in state.resources.items() if not k.startswith("urn:")}
    ids: dict[str, str] = {}
    for w in plan.writes:
        if not w.is_create:
            continue
        wanted = (w.if_none_exist or "").removeprefix("identifier=")
        existing = next((k for k, r in resources.items() if wanted and wanted in _identifiers(r)), None)
        ids[w.full_url] = existing or f"{w.resource['resourceType']}/{uuid.UUID(w.full_url[9:]).hex[:10]}"
    for w in plan.writes:
        body = copy.deepcopy(w.resource)
        if w.is_create:
            key = ids[w.full_url]
            if key in resources:
                continue  # If-None-Exist matched: the server keeps what it has
            body["id"] = key.split("/", 1)[1]
            body["meta"] = {"versionId": "1"}
        else:
            key = f"{body['resourceType']}/{body['id']}"
            current = (resources.get(key) or {}).get("meta", {}).get("versionId")
            assert w.if_match == current, f"If-Match {w.if_match} but {key} is at version {current}"
            body["meta"] = {**(body.get("meta") or {}), "versionId": str(int(current or "0") + 1)}
        resources[key] = body
    resources = {k: renamed_references(v, ids) for k, v in resources.items()}
    sr_key = f"ServiceRequest/{state.id}"
    return Referral(resources[sr_key], resources)


def run(state: Referral, event: Event, context: Context) -> tuple[Plan, Referral]:
    """Decide and apply: the plan and the state after it."""
    plan = ROUTINE.decide(state, event, context)
    return plan, apply(state, plan)


def assert_replay_plans_nothing(
    before: Referral, plan: Plan, after: Referral, event: Event, context: Context, timers_allowed: bool = False
) -> None:
    """Idempotency, both ways: on ``with_plan`` (unsaved) and on the applied state (saved)."""
    for state in (before.with_plan(plan), after):
        again = ROUTINE.decide(state, event, context)
        assert not again.writes, [w.key for w in again.writes]
        if not timers_allowed:
            assert not again.timers, again.timers


def update_resource(state: Referral, resource: Resource, **changes: Any) -> Referral:
    """Someone else (reviewer, referrer) updates a stored resource: new version in the state."""
    body = {k: v for k, v in {**copy.deepcopy(resource), **changes}.items() if v is not None}
    body["meta"] = {"versionId": str(int((resource.get("meta") or {}).get("versionId") or "0") + 1)}
    key = f"{body['resourceType']}/{body['id']}"
    resources = {**state.resources, key: body}
    sr = body if key == f"ServiceRequest/{state.id}" else resources[f"ServiceRequest/{state.id}"]
    return Referral(sr, resources)


def add(state: Referral, *resources: Resource) -> Referral:
    return Referral(
        state.service_request, {**state.resources, **{f"{r['resourceType']}/{r['id']}": r for r in resources}}
    )


def of_type(state: Referral, resource_type: str, identifier_value: str | None = None) -> list[Resource]:
    found = state.all(resource_type)
    if identifier_value is None:
        return found
    return [r for r in found if any(i.get("value") == identifier_value for i in r.get("identifier") or ())]


def code(concept: Any) -> str | None:
    return next((c.get("code") for c in (concept or {}).get("coding") or ()), None)


def task(state: Referral, value: str) -> Resource:
    found = of_type(state, "Task", value)
    assert len(found) == 1, f"{len(found)} Tasks {value}"
    return found[0]


def review(state: Referral) -> Resource:
    return task(state, "R-1-referral-review")


def messages(state: Referral) -> dict[str, Resource]:
    """Communications by our identifier value."""
    system = codes().identifier_system("communication")
    return {
        i["value"]: c
        for c in state.all("Communication")
        for i in c.get("identifier") or ()
        if i.get("system") == system
    }


def output_codes(task_: Resource) -> dict[str, str | None]:
    """Output type code -> value code (or valueString / valueReference)."""
    out = {}
    for o in task_.get("output") or ():
        key = code(o.get("type"))
        value = o.get("valueCodeableConcept")
        out[str(key)] = (
            code(value) if value else o.get("valueString") or (o.get("valueReference") or {}).get("reference")
        )
    return out


def decide_as_reviewer(state: Referral, level: str) -> Referral:
    """The reviewer records a decision on the review Task: output ``decision`` and businessStatus decided."""
    c = codes()
    current = review(state)
    output = [
        *(current.get("output") or ()),
        {"type": c.concept("task-parameter", "decision"), "valueCodeableConcept": c.concept("level", level)},
    ]
    return update_resource(state, current, output=output, businessStatus=c.concept("business-status", "decided"))


def as_loaded(state: Referral) -> Referral:
    """The state as the shell loads it: the EpisodeOfCare only when phase two asks for it, and no
    CommunicationRequest (both come by identifier, not with the referral's search)."""
    from adapter.workflow.mmrpv.loading import follow_up_queries

    shown = {
        k: r
        for k, r in state.resources.items()
        if r.get("resourceType") not in ("EpisodeOfCare", "CommunicationRequest")
    }
    if follow_up_queries(state.service_request, shown):
        shown.update({k: r for k, r in state.resources.items() if r.get("resourceType") == "EpisodeOfCare"})
    return Referral(state.service_request, shown)
