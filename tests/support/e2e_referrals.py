"""Complete, incomplete and malformed referrals on the sandbox, and what the adapter wrote about them."""

from __future__ import annotations

import uuid
from typing import Any

from adapter.fhir.client import FhirClient
from adapter.mappings import HSA_SYSTEM, codes
from tests.support.referrals import LUND, TEST_PERSONNUMMER
from tests.support.stack import wait_for
from tests.support.workflow import assessment, section

ICD10 = "http://hl7.org/fhir/sid/icd-10-se"
CRITERIA = ("stable-diagnosis", "limited-psychiatric-comorbidity", "work-status", "group-treatment")


def assessments(**results: str) -> list[dict[str, Any]]:
    """The referrer's own view of the criteria, e.g. ``assessments(work_status="not-met")``; default met."""
    return [assessment(c, results.get(c.replace("-", "_"), "met")) for c in CRITERIA]


SECTIONS = {
    "pain-history": "Smärta sedan 2019.",
    "work-situation": "Arbetar 50 %.",
    "current-treatment": "Fysioterapi.",
}


def referral_on_server(
    fhir: FhirClient,
    *,
    clinic: str = LUND,
    extension: list[dict[str, Any]] | None = None,
    sections: dict[str, str] | None = None,
    consent: bool = True,
    **overrides: Any,
) -> dict[str, Any]:
    """Patient, referrer, Consent and a complete referral, as an EHR posts them; returns the ServiceRequest."""
    key = uuid.uuid4().hex[:8]
    pid, rid = f"p-{key}", f"ref-{key}"
    fhir.update(
        {
            "resourceType": "Patient",
            "id": pid,
            "identifier": [{"system": codes().personnummer_system, "value": TEST_PERSONNUMMER}],
            "name": [{"text": "Tolvan Tolvansson"}],
            "address": [{"city": "Malmö", "postalCode": "21120"}],
        }
    )
    fhir.update(
        {
            "resourceType": "PractitionerRole",
            "id": rid,
            "telecom": [{"system": "phone", "value": "040-123 45"}],
            "organization": {"display": "Vårdcentralen Exempel"},
        }
    )
    supporting = []
    if consent:
        c = fhir.create(
            {
                "resourceType": "Consent",
                "status": "active",
                "scope": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}
                    ]
                },
                "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
                "patient": {"reference": f"Patient/{pid}"},
                "verification": [{"verified": True}],
                "provision": {
                    "type": "permit",
                    "period": {"start": "2026-01-01", "end": "2030-01-01"},
                    "actor": [
                        {
                            "role": {"text": "mottagare"},
                            "reference": {
                                "reference": f"Organization/{clinic}",
                                "identifier": {"system": HSA_SYSTEM, "value": clinic},
                            },
                        }
                    ],
                    "action": [
                        {
                            "coding": [
                                {"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "access"}
                            ]
                        }
                    ],
                },
            }
        )
        supporting = [{"reference": f"Consent/{c['id']}"}]
    sections = SECTIONS if sections is None else sections
    c = codes()
    body: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "identifier": [{"system": "https://ehr.example.se/remiss", "value": f"R-{key}"}],
        "status": "active",
        "intent": "order",
        "category": [{"coding": [c.referral_category]}],
        "code": {"coding": [c.referral_code]},
        "subject": {"reference": f"Patient/{pid}"},
        "requester": {"reference": f"PractitionerRole/{rid}"},
        "performer": [{"reference": f"Organization/{clinic}", "identifier": {"system": HSA_SYSTEM, "value": clinic}}],
        "reasonCode": [{"coding": [{"system": ICD10, "code": "M54.5"}], "text": "Ländryggssmärta"}],
        "supportingInfo": supporting,
        "note": [section(k, v) for k, v in sections.items()],
        "extension": assessments() if extension is None else extension,
        **overrides,
    }
    return fhir.create({k: v for k, v in body.items() if v not in (None, [])})


def code(concept: Any) -> str | None:
    return next((c.get("code") for c in (concept or {}).get("coding") or ()), None)


def tasks(fhir: FhirClient, sr: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The referral's Tasks by code (review, questionnaire, booking, intake)."""
    return {
        code(t.get("code")) or "?": t
        for t in fhir.search("Task", {"focus": f"ServiceRequest/{sr['id']}"})
        if t["resourceType"] == "Task"
    }


def messages(fhir: FhirClient, sr: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The adapter's Communications about the referral, by their business identifier value."""
    system = codes().identifier_system("communication")
    found = fhir.search("Communication", {"based-on": f"ServiceRequest/{sr['id']}"})
    return {
        i["value"]: m
        for m in found
        if m["resourceType"] == "Communication"
        for i in m.get("identifier") or ()
        if i.get("system") == system
    }


def key(sr: dict[str, Any]) -> str:
    return sr["identifier"][0]["value"]


def review_in(fhir: FhirClient, sr: dict[str, Any], *business: str, timeout: float = 20) -> dict[str, Any]:
    """Wait until the review Task reaches one of these business statuses."""

    def reached() -> dict[str, Any] | None:
        review = tasks(fhir, sr).get("referral-review")
        return review if review and code(review.get("businessStatus")) in business else None

    return wait_for(reached, timeout=timeout, what=f"the review Task to be {' or '.join(business)}")


def decide(fhir: FhirClient, review: dict[str, Any], level: str) -> None:
    """The reviewer records the level on the review Task (output decision, businessStatus decided)."""
    c = codes()
    output = [
        *(review.get("output") or ()),
        {"type": c.concept("task-parameter", "decision"), "valueCodeableConcept": c.concept("level", level)},
    ]
    fhir.update(
        {**review, "output": output, "businessStatus": c.concept("business-status", "decided")},
        if_match=review["meta"]["versionId"],
    )


def outputs(task: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for o in task.get("output") or ():
        value = o.get("valueCodeableConcept")
        out[str(code(o.get("type")))] = (
            code(value) if value else o.get("valueString") or (o.get("valueReference") or {}).get("reference")
        )
    return out
