"""One valid instance per profile, an intake QuestionnaireResponse, and the referral Bundle.

All persons are fictional: the patient is Skatteverket's test person 19121212-1212 (Tolvan
Tolvansson); the referrer's unit and EHR are invented. Directory units are referenced as
``Organization/<HSA-id>``, the logical ids the directory is installed under.
"""

from __future__ import annotations

from typing import Any

from adapter.conformance.build.sources import questionnaires
from adapter.conformance.build.sources.common import HSA, LOINC, SDC_TEMP, VERSION, Resource, coding, url
from adapter.mappings import codes, directory

PERSONNUMMER = "191212121212"
REFERRAL_SYSTEM = "https://ehr.example.org/identifier/remiss"
REFERRAL_ID = "REM-2026-0001"
REFERRER_ORG_HSA = "SE2321000255-EXVC1"
REFERRER_HSA = "SE2321000255-EXVC1L1"
PATIENT = {"reference": "Patient/mmr-example-patient", "display": "Tolvan Tolvansson"}
REFERRAL = {"reference": "ServiceRequest/mmr-example-referral"}
REFERRER = {"reference": "PractitionerRole/mmr-example-referrer", "display": "Exempel Remittent"}


def _profile(id_: str) -> dict[str, Any]:
    return {"profile": [url("StructureDefinition", id_)]}


def _ident(kind: str, suffix: str) -> list[dict[str, str]]:
    return [{"system": codes().identifier_system(kind), "value": f"{REFERRAL_ID}-{suffix}"}]


def _org(hsa_id: str, name: str) -> dict[str, Any]:
    return {
        "reference": f"Organization/{hsa_id}",
        "type": "Organization",
        "identifier": {"system": HSA, "value": hsa_id},
        "display": name,
    }


def _concept(key: str, code: str, text: str | None = None) -> dict[str, Any]:
    concept: dict[str, Any] = {"coding": [coding(key, code)]}
    if text:
        concept["text"] = text
    return concept


def _clinic() -> dict[str, Any]:
    clinic = next(c for c in directory().clinics if c.key == "sus-lund")
    return _org(clinic.hsa_id, clinic.name)


def _mmrpv() -> dict[str, Any]:
    return _org(directory().mmrpv.hsa_id, directory().mmrpv.name)


def _admin() -> dict[str, Any]:
    return _org(directory().mmrpv_admin.hsa_id, directory().mmrpv_admin.name)


def _assessment(criterion: str, result: str) -> dict[str, Any]:
    """The referrer's own view of one criterion (extension mmr-criterion-assessment)."""
    return {
        "url": url("StructureDefinition", "mmr-criterion-assessment"),
        "extension": [{"url": "criterion", "valueCode": criterion}, {"url": "result", "valueCode": result}],
    }


def referral(
    subject: dict[str, Any] = PATIENT,
    requester: dict[str, Any] = REFERRER,
    consent: str = "Consent/mmr-example-consent",
) -> Resource:
    c = codes()
    return {
        "resourceType": "ServiceRequest",
        "id": "mmr-example-referral",
        "meta": _profile("mmr-referral"),
        "extension": [_assessment("group-treatment", "met")],
        "identifier": [{"system": REFERRAL_SYSTEM, "value": REFERRAL_ID}],
        "status": "active",
        "intent": "order",
        "category": [{"coding": [c.referral_category]}],
        "code": {"coding": [c.referral_code]},
        "subject": subject,
        "authoredOn": "2026-11-20T10:15:00+01:00",
        "requester": requester,
        "performer": [_clinic()],
        "reasonCode": [{"text": "Långvarig smärta i rygg och nacke sedan mer än ett år"}],
        "supportingInfo": [{"reference": consent}],
        "note": [
            {
                "text": "Patienten är informerad om att remissen granskas av specialistvården, att nivån "
                "(MMRpv eller MMRsv) beslutas där och att remissen kan skickas vidare."
            },
            _section("pain-history", "Smärta i rygg och nacke sedan 2024, gradvis tilltagande."),
            _section("work-situation", "Arbetar som undersköterska, sjukskriven 50 % sedan augusti."),
            _section("current-treatment", "Fysioterapi en gång i veckan, paracetamol vid behov."),
        ],
    }


def _section(name: str, text: str) -> dict[str, Any]:
    """A part of the referral's history, marked with the section it answers (completeness rules)."""
    return {"extension": [{"url": url("StructureDefinition", "mmr-referral-section"), "valueCode": name}], "text": text}


def review_task() -> Resource:
    c = codes()
    evidence = {
        "stable-diagnosis": "Diagnos känd; ingen utredning eller behandling pågår (formulär).",
        "limited-psychiatric-comorbidity": "Ingen kontakt med specialistpsykiatrin; lite påverkan.",
        "work-status": "Sjukskriven på deltid.",
        "group-treatment": "Kan delta i grupp och på bestämda tider.",
    }
    outputs = [
        {"type": {"coding": [coding("task-parameter", kind)]}, "valueCodeableConcept": _concept("level", "MMRpv")}
        for kind in ("recommendation", "decision")
    ]
    outputs += [
        {
            "type": {"coding": [coding("criterion", key)]},
            "valueCodeableConcept": _concept("criterion-result", "met", evidence[key]),
        }
        for key in c.raw["code_systems"]["criterion"]["concepts"]
    ]
    ort = directory().site("malmo").ort
    return {
        "resourceType": "Task",
        "id": "mmr-example-review",
        "meta": _profile("mmr-review-task"),
        "identifier": _ident("task", "referral-review"),
        "status": "completed",
        "statusReason": {"coding": [coding("closing-code", "HE")], "text": f"{directory().mmrpv.name}, {ort}"},
        "businessStatus": _concept("business-status", "forwarded"),
        "intent": "order",
        "code": _concept("task-type", "referral-review"),
        "focus": REFERRAL,
        "for": PATIENT,
        "authoredOn": "2026-11-23T09:00:00+01:00",
        "lastModified": "2026-11-25T14:30:00+01:00",
        "requester": REFERRER,
        "owner": {"reference": "PractitionerRole/SE2321000255-SML1R1", "display": "Granskare Lund 1"},
        "restriction": {"period": {"start": "2026-11-23T09:00:00+01:00", "end": "2026-11-26T16:00:00+01:00"}},
        "executionPeriod": {"start": "2026-11-24T10:00:00+01:00", "end": "2026-11-25T14:30:00+01:00"},
        "output": [
            *outputs,
            {
                "type": {"coding": [coding("task-parameter", "mmrpv-site")]},
                "valueReference": {
                    "reference": f"Location/{directory().site('malmo').hsa_id}",
                    "display": directory().site("malmo").name,
                },
            },
        ],
    }


def intake_task() -> Resource:
    return {
        "resourceType": "Task",
        "id": "mmr-example-intake",
        "meta": _profile("mmr-intake-task"),
        "identifier": _ident("task", "mmrpv-intake"),
        "status": "received",
        "businessStatus": _concept("business-status", "registered"),
        "intent": "order",
        "code": _concept("task-type", "mmrpv-intake"),
        "focus": REFERRAL,
        "for": PATIENT,
        "authoredOn": "2026-11-25T14:31:00+01:00",
        "owner": _mmrpv(),
    }


def routing_task() -> Resource:
    """A referral that named an unknown receiving unit, held by the referral coordinator."""
    coordinator = directory().coordinator
    return {
        "resourceType": "Task",
        "id": "mmr-example-routing",
        "meta": _profile("mmr-routing-task"),
        "identifier": _ident("task", "referral-routing"),
        "status": "on-hold",
        "businessStatus": _concept("business-status", "awaiting-correction"),
        "statusReason": {
            "text": "Den angivna mottagaren finns inte bland regionens mottagningar för multimodal smärtrehabilitering."
        },
        "intent": "order",
        "code": _concept("task-type", "referral-routing"),
        "focus": REFERRAL,
        "for": PATIENT,
        "authoredOn": "2026-11-23T09:15:00+01:00",
        "owner": _org(coordinator.hsa_id, coordinator.name),
    }


def booking_task() -> Resource:
    return {
        "resourceType": "Task",
        "id": "mmr-example-booking",
        "meta": _profile("mmr-booking-task"),
        "identifier": _ident("task", "booking"),
        "status": "completed",
        "businessStatus": _concept("business-status", "booked"),
        "intent": "order",
        "code": _concept("task-type", "booking"),
        "focus": REFERRAL,
        "for": PATIENT,
        "partOf": [{"reference": "Task/mmr-example-intake"}],
        "requester": _mmrpv(),
        "authoredOn": "2026-11-26T08:00:00+01:00",
        "owner": _admin(),
        "restriction": {"period": {"end": "2026-12-03T16:00:00+01:00"}},
    }


def _questionnaire_input(canonical: str) -> list[dict[str, Any]]:
    return [
        {
            "type": {"coding": [{"system": SDC_TEMP, "code": "questionnaire"}]},
            "valueCanonical": f"{canonical}|{VERSION}",
        }
    ]


def questionnaire_task() -> Resource:
    return {
        "resourceType": "Task",
        "id": "mmr-example-questionnaire",
        "meta": _profile("mmr-questionnaire-task"),
        "identifier": _ident("task", "complete-questionnaire-mmr-intake"),
        "partOf": [{"reference": "Task/mmr-example-review"}],
        "status": "completed",
        "businessStatus": _concept("business-status", "answered"),
        "intent": "order",
        "code": {"coding": [codes().sdc_task_code]},
        "focus": REFERRAL,
        "for": PATIENT,
        "authoredOn": "2026-11-23T09:05:00+01:00",
        "owner": PATIENT,
        "input": _questionnaire_input(url("Questionnaire", "mmr-intake")),
        "output": [
            {
                "type": {"coding": [{"system": SDC_TEMP, "code": "questionnaire-response"}]},
                "valueReference": {"reference": "QuestionnaireResponse/mmr-example-intake-response"},
            }
        ],
    }


def follow_up_task() -> Resource:
    return {
        "resourceType": "Task",
        "id": "mmr-example-follow-up",
        "meta": _profile("mmr-follow-up-task"),
        "identifier": _ident("task", "follow-up"),
        "status": "requested",
        "businessStatus": _concept("business-status", "awaiting-patient"),
        "intent": "order",
        "code": {"coding": [coding("task-type", "follow-up"), codes().sdc_task_code]},
        "focus": REFERRAL,
        "for": PATIENT,
        "authoredOn": "2027-03-31T16:00:00+02:00",
        "owner": PATIENT,
        "restriction": {"period": {"start": "2028-03-31"}},
        "input": _questionnaire_input(url("Questionnaire", "mmr-follow-up")),
    }


def confirmation() -> Resource:
    ort = directory().site("malmo").ort
    return {
        "resourceType": "Communication",
        "id": "mmr-example-confirmation-vid",
        "meta": _profile("mmr-confirmation"),
        "identifier": [{"system": codes().identifier_system("communication"), "value": f"{REFERRAL_ID}-VID-referrer"}],
        "basedOn": [REFERRAL],
        "status": "completed",
        "category": [_concept("confirmation-type", "VID")],
        "subject": PATIENT,
        "about": [REFERRAL],
        "sent": "2026-11-25T14:31:00+01:00",
        "recipient": [REFERRER],
        "payload": [
            {
                "contentString": "Remissen har kommit fram och bedömts. Den skickas vidare till "
                f"{directory().mmrpv.name}, {ort}, för tidsbokning."
            }
        ],
    }


def consent(patient: dict[str, Any] = PATIENT) -> Resource:
    return {
        "resourceType": "Consent",
        "id": "mmr-example-consent",
        "meta": _profile("mmr-consent"),
        "status": "active",
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                    "display": "Privacy Consent",
                }
            ]
        },
        "category": [{"coding": [{"system": LOINC, "code": "59284-0", "display": "Patient Consent"}]}],
        "patient": patient,
        "dateTime": "2026-11-20T10:00:00+01:00",
        "performer": [patient],
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        "verification": [{"verified": True, "verifiedWith": patient, "verificationDate": "2026-11-20T10:00:00+01:00"}],
        "provision": {
            "type": "permit",
            "period": {"start": "2026-11-20", "end": "2027-11-20"},
            "actor": [
                {
                    "role": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                "code": "IRCP",
                                "display": "information recipient",
                            }
                        ]
                    },
                    "reference": _clinic(),
                }
            ],
            "action": [
                {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "access"}]}
            ],
            "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}],
        },
    }


def care_commitment() -> Resource:
    return {
        "resourceType": "EpisodeOfCare",
        "id": "mmr-example-care-commitment",
        "meta": _profile("mmr-care-commitment"),
        "identifier": _ident("episodeofcare", "care-commitment"),
        "status": "active",
        "type": [_concept("service", "mmr")],
        "patient": PATIENT,
        "managingOrganization": _mmrpv(),
        "period": {"start": "2026-11-26"},
        "referralRequest": [REFERRAL],
    }


def programme() -> Resource:
    return {
        "resourceType": "CarePlan",
        "id": "mmr-example-programme",
        "meta": _profile("mmr-programme"),
        "identifier": _ident("careplan", "programme"),
        "status": "completed",
        "intent": "plan",
        "category": [_concept("service", "mmr")],
        "title": "MMRpv-program, Malmö",
        "subject": PATIENT,
        "period": {"start": "2027-01-11", "end": "2027-03-31"},
        "author": _mmrpv(),
        "activity": [{"reference": REFERRAL}],
    }


INTAKE_ANSWERS = {
    "smarta-duration": "1-5-ar",
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
    "mottagning-onskemal": "malmo",
}


def _answer_items(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The QuestionnaireResponse items for INTAKE_ANSWERS, in the Questionnaire's structure."""
    out = []
    for item in items:
        if item["type"] == "group":
            out.append({"linkId": item["linkId"], "text": item["text"], "item": _answer_items(item["item"])})
        elif (code := INTAKE_ANSWERS.get(item["linkId"])) is not None:
            option = next(o["valueCoding"] for o in item["answerOption"] if o["valueCoding"]["code"] == code)
            out.append({"linkId": item["linkId"], "text": item["text"], "answer": [{"valueCoding": option}]})
    return out


def intake_response() -> Resource:
    q = questionnaires.intake()
    return {
        "resourceType": "QuestionnaireResponse",
        "id": "mmr-example-intake-response",
        "questionnaire": f"{q['url']}|{q['version']}",
        "basedOn": [REFERRAL],
        "status": "completed",
        "subject": PATIENT,
        "authored": "2026-11-24T19:12:00+01:00",
        "author": PATIENT,
        "item": _answer_items(q["item"]),
    }


def _entry(uuid: str, resource: Resource, if_none_exist: str) -> dict[str, Any]:
    """A conditional create: the server assigns the id, so the body carries none."""
    body = {k: v for k, v in resource.items() if k != "id"}
    return {
        "fullUrl": f"urn:uuid:{uuid}",
        "resource": body,
        "request": {"method": "POST", "url": resource["resourceType"], "ifNoneExist": if_none_exist},
    }


def referral_bundle() -> Resource:
    """A transaction an EHR can POST to start the flow; conditional creates make it safe to resend."""
    ids = {
        k: f"7f6c1a52-3b0e-4d1c-9a4e-00000000000{n}"
        for n, k in enumerate(("patient", "organization", "practitioner", "role", "consent", "referral"), start=1)
    }
    patient_ref = {"reference": f"urn:uuid:{ids['patient']}", "display": "Tolvan Tolvansson"}
    role_ref = {"reference": f"urn:uuid:{ids['role']}", "display": "Exempel Remittent"}
    pnr = codes().personnummer_system
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": pnr, "value": PERSONNUMMER}],
        "name": [{"family": "Tolvansson", "given": ["Tolvan"]}],
        "gender": "male",
        "birthDate": "1912-12-12",
    }
    org = {
        "resourceType": "Organization",
        "identifier": [{"system": HSA, "value": REFERRER_ORG_HSA}],
        "name": "Vårdcentralen Exempelby (fiktiv)",
    }
    practitioner = {
        "resourceType": "Practitioner",
        "identifier": [{"system": HSA, "value": REFERRER_HSA}],
        "name": [{"family": "Remittent", "given": ["Exempel"]}],
    }
    role = {
        "resourceType": "PractitionerRole",
        "identifier": [{"system": HSA, "value": f"{REFERRER_HSA}-R"}],
        "practitioner": {"reference": f"urn:uuid:{ids['practitioner']}"},
        "organization": {"reference": f"urn:uuid:{ids['organization']}"},
        "code": [{"text": "Patientansvarig läkare (PAL)"}],
        "telecom": [{"system": "phone", "value": "010-000 00 00", "use": "work"}],
    }
    consent_body = consent(patient_ref)
    consent_body["identifier"] = [{"system": REFERRAL_SYSTEM.replace("remiss", "samtycke"), "value": "SAM-2026-0001"}]
    referral_body = referral(patient_ref, role_ref, f"urn:uuid:{ids['consent']}")
    hsa = f"identifier={HSA}|"
    return {
        "resourceType": "Bundle",
        "id": "mmr-example-referral-bundle",
        "type": "transaction",
        "entry": [
            _entry(ids["patient"], patient, f"identifier={pnr}|{PERSONNUMMER}"),
            _entry(ids["organization"], org, f"{hsa}{REFERRER_ORG_HSA}"),
            _entry(ids["practitioner"], practitioner, f"{hsa}{REFERRER_HSA}"),
            _entry(ids["role"], role, f"{hsa}{REFERRER_HSA}-R"),
            _entry(ids["consent"], consent_body, f"identifier={consent_body['identifier'][0]['system']}|SAM-2026-0001"),
            _entry(ids["referral"], referral_body, f"identifier={REFERRAL_SYSTEM}|{REFERRAL_ID}"),
        ],
    }


def build() -> list[Resource]:
    return [
        referral(),
        routing_task(),
        review_task(),
        intake_task(),
        booking_task(),
        questionnaire_task(),
        follow_up_task(),
        confirmation(),
        consent(),
        care_commitment(),
        programme(),
        intake_response(),
        referral_bundle(),
    ]
