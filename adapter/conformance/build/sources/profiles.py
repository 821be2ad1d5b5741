"""The StructureDefinitions (differential form): the referral, its extension, confirmation, consent, care.

Each profile says what the workflow relies on and no more: the codes that identify a resource,
the references the adapter follows, the business identifier that makes creates idempotent, and
invariants for the routine's rules.
"""

from __future__ import annotations

from adapter.conformance.build.sources import tasks
from adapter.conformance.build.sources.common import (
    CORE_SD,
    FHIR_VERSION,
    HSA,
    LOINC,
    SNOMED,
    Resource,
    metadata,
    system_code,
    url,
    vs_url,
)
from adapter.conformance.build.sources.elements import business_identifier, el, inv, profile
from adapter.mappings import codes

# ---------------------------------------------------------------- the referral


def referral() -> Resource:
    c = codes()
    return profile(
        "mmr-referral",
        "MmrReferral",
        "MMR referral",
        "ServiceRequest",
        "A referral from primary care for multimodal pain rehabilitation, addressed to one of the region's "
        "specialist pain clinics.",
        "What the referrer's EHR writes to start the flow; the adapter registers its arrival at the clinic "
        "named as performer and creates everything else from it.",
        [
            el(
                "ServiceRequest",
                constraints=[
                    inv(
                        "mmr-sr-1",
                        "The referral carries a business identifier with system and value",
                        "identifier.where(system.exists() and value.exists()).exists()",
                    ),
                    inv(
                        "mmr-sr-2",
                        "Every performer is identified by a literal reference or an HSA-id",
                        f"performer.all(reference.exists() or identifier.where(system = '{HSA}' and value.exists())"
                        ".exists())",
                    ),
                    inv(
                        "mmr-sr-3",
                        "At most one assessment per criterion",
                        f"extension.where(url = '{url('StructureDefinition', 'mmr-criterion-assessment')}')"
                        ".extension.where(url = 'criterion').value.isDistinct()",
                    ),
                ],
            ),
            el("ServiceRequest.extension", slicing="url", slicing_type="value"),
            el(
                "ServiceRequest.extension:criterion-assessment",
                extension=url("StructureDefinition", "mmr-criterion-assessment"),
                short="The referrer's own assessment of an MMRpv criterion (at most one per criterion)",
            ),
            el(
                "ServiceRequest.extension:patient-informed",
                max="1",
                extension=url("StructureDefinition", "mmr-patient-informed"),
                short="The patient was informed of the specialist review, the level decision and forwarding",
            ),
            el(
                "ServiceRequest.identifier",
                min=1,
                short="The referrer's business identifier of the referral",
                definition="The root of every business identifier the adapter derives for this referral.",
            ),
            el("ServiceRequest.category", min=1, slicing="$this"),
            el(
                "ServiceRequest.category:referral",
                min=1,
                max="1",
                short="Patient referral (SNOMED CT)",
                pattern=("CodeableConcept", {"coding": [{"system": SNOMED, "code": c.referral_category["code"]}]}),
            ),
            el(
                "ServiceRequest.code",
                min=1,
                short="Multimodal pain rehabilitation",
                pattern=("CodeableConcept", system_code("service", c.referral_code["code"])),
                binding=("required", vs_url("service")),
            ),
            el(
                "ServiceRequest.subject",
                min=1,
                targets=["Patient"],
                short="The patient",
                definition=f"A Patient identified by personnummer ({c.personnummer_system}) or samordningsnummer "
                f"({c.raw['identifier_systems']['samordningsnummer']}).",
            ),
            el(
                "ServiceRequest.requester",
                min=1,
                targets=["PractitionerRole", "Practitioner", "Organization"],
                short="The referrer (usually the patient's PAL) who receives the confirmations",
            ),
            el(
                "ServiceRequest.performer",
                min=1,
                targets=["Organization"],
                short="The specialist clinic chosen with the patient",
                definition=f"Referenced by HSA-id identifier ({HSA}) and/or literally as Organization/<HSA-id>, "
                "the logical id the directory is installed under.",
            ),
            el(
                "ServiceRequest.note",
                short="Free text; the sections the review needs are marked",
                definition="Pain history, work and sick-leave situation and current treatment each go in a note "
                "marked with extension mmr-referral-section; a missing one is asked for with KOM.",
            ),
            el("ServiceRequest.note.extension", slicing="url", slicing_type="value"),
            el(
                "ServiceRequest.note.extension:section",
                max="1",
                extension=url("StructureDefinition", "mmr-referral-section"),
                short="Which section of the referral this note is",
            ),
            el(
                "ServiceRequest.supportingInfo",
                short="Should reference the patient's Consent",
                definition="The Consent that lets the clinic read the record; the adapter also finds it by "
                "searching the patient's active Consents.",
            ),
        ],
    )


def criterion_assessment() -> Resource:
    """A complex extension: the referrer states met / not-met for one criterion on the referral."""
    sd = metadata(
        "StructureDefinition",
        "mmr-criterion-assessment",
        "MmrCriterionAssessment",
        "MMR referrer's criterion assessment",
        "The referrer's own assessment of one MMRpv criterion, on the referral: sub-extension criterion "
        "(a code of mmr-criterion) and result (met or not-met, a code of mmr-criterion-result).",
        "Evidence for the level recommendation from the referrer, read before asking the patient.",
    )
    ext_url = sd["url"]
    sd.update(
        {
            "fhirVersion": FHIR_VERSION,
            "kind": "complex-type",
            "abstract": False,
            "context": [{"type": "element", "expression": "ServiceRequest"}],
            "type": "Extension",
            "baseDefinition": f"{CORE_SD}/Extension",
            "derivation": "constraint",
            "differential": {
                "element": [
                    el("Extension", short="Referrer's assessment of one MMRpv criterion"),
                    el("Extension.extension", min=2, slicing="url", slicing_type="value"),
                    el("Extension.extension:criterion", min=1, max="1", short="Which criterion"),
                    el("Extension.extension:criterion.url", fixed=("Uri", "criterion")),
                    el(
                        "Extension.extension:criterion.value[x]",
                        min=1,
                        types=["code"],
                        binding=("required", vs_url("criterion")),
                    ),
                    el("Extension.extension:result", min=1, max="1", short="met or not-met"),
                    el("Extension.extension:result.url", fixed=("Uri", "result")),
                    el(
                        "Extension.extension:result.value[x]",
                        min=1,
                        types=["code"],
                        binding=("required", vs_url("criterion-result")),
                    ),
                    el("Extension.url", fixed=("Uri", ext_url)),
                    el("Extension.value[x]", max="0"),
                ]
            },
        }
    )
    return sd


def simple_extension(
    id_: str,
    name: str,
    title: str,
    description: str,
    purpose: str,
    context: str,
    value: str,
    binding: tuple[str, str] | None = None,
) -> Resource:
    """An extension with one value of type ``value`` on the element ``context``."""
    sd = metadata("StructureDefinition", id_, name, title, description, purpose)
    sd.update(
        {
            "fhirVersion": FHIR_VERSION,
            "kind": "complex-type",
            "abstract": False,
            "context": [{"type": "element", "expression": context}],
            "type": "Extension",
            "baseDefinition": f"{CORE_SD}/Extension",
            "derivation": "constraint",
            "differential": {
                "element": [
                    el("Extension", short=title),
                    el("Extension.extension", max="0"),
                    el("Extension.url", fixed=("Uri", sd["url"])),
                    el("Extension.value[x]", min=1, types=[value], binding=binding),
                ]
            },
        }
    )
    return sd


def referral_section() -> Resource:
    return simple_extension(
        "mmr-referral-section",
        "MmrReferralSection",
        "MMR referral section",
        "Marks a ServiceRequest.note as one of the referral's sections (a code of mmr-referral-section).",
        "The completeness rules find pain history, work situation and current treatment by it.",
        "ServiceRequest.note",
        "code",
        ("required", vs_url("referral-section")),
    )


def patient_informed() -> Resource:
    return simple_extension(
        "mmr-patient-informed",
        "MmrPatientInformed",
        "MMR patient informed",
        "true: the referrer informed the patient that the referral goes to specialist review, that the level "
        "(MMRpv/MMRsv) is decided there and that it may be forwarded to the MMRpv unit.",
        "The routine requires it before the review; a verified Consent (mmr-consent) says the same.",
        "ServiceRequest",
        "boolean",
    )


# ---------------------------------------------------------------- confirmation, consent, care


def confirmation() -> Resource:
    return profile(
        "mmr-confirmation",
        "MmrConfirmation",
        "MMR referral confirmation",
        "Communication",
        "A confirmation to the referrer or the patient (BEK, VID, KOM, AVV or AVB), one Communication per recipient.",
        "Tells referrer and patient what happened to the referral; R4 has no Communication 'about' search "
        "parameter, so basedOn carries the referral for searches.",
        [
            el(
                "Communication",
                constraints=[
                    business_identifier(),
                    inv(
                        "mmr-com-1",
                        "about and basedOn reference the same ServiceRequest literally",
                        "basedOn.reference.exists() and about.reference = basedOn.reference",
                    ),
                ],
            ),
            el("Communication.identifier", min=1),
            el("Communication.basedOn", min=1, max="1", targets=["ServiceRequest"], short="The referral"),
            el(
                "Communication.category",
                min=1,
                max="1",
                short="The confirmation type",
                binding=("required", vs_url("confirmation-type")),
            ),
            el("Communication.subject", min=1, targets=["Patient"]),
            el("Communication.about", min=1, max="1", targets=["ServiceRequest"], short="The referral"),
            el(
                "Communication.recipient",
                min=1,
                max="1",
                targets=["PractitionerRole", "Organization", "Patient"],
                short="The referrer or the patient",
            ),
            el("Communication.payload", min=1, max="1"),
            el("Communication.payload.content[x]", types=["string"], short="The text of the confirmation"),
        ],
    )


def consent() -> Resource:
    action = "http://terminology.hl7.org/CodeSystem/consentaction"
    return profile(
        "mmr-consent",
        "MmrConsent",
        "MMR record-access consent",
        "Consent",
        "The patient's consent that the specialist clinic may read the record, written by the referrer, who "
        "also confirms (verification) that the patient was informed: the referral goes to specialist review, "
        "the level MMRpv/MMRsv is decided there, and it may be forwarded to the MMRpv unit.",
        "The routine (steps 1-2) requires both before the clinic reviews the referral.",
        [
            el(
                "Consent",
                constraints=[
                    inv(
                        "mmr-con-1",
                        "The consent permits access (reading the record)",
                        f"provision.action.coding.where(system = '{action}' and code = 'access').exists()",
                    ),
                    inv(
                        "mmr-con-2",
                        "An Organization (the clinic) is among the actors",
                        "provision.actor.where(reference.type = 'Organization' or "
                        "reference.reference.contains('Organization/')).exists()",
                    ),
                ],
            ),
            el(
                "Consent.scope",
                pattern=(
                    "CodeableConcept",
                    {
                        "coding": [
                            {"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}
                        ]
                    },
                ),
            ),
            el("Consent.category", slicing="$this"),
            el(
                "Consent.category:patient-consent",
                min=1,
                max="1",
                pattern=("CodeableConcept", {"coding": [{"system": LOINC, "code": "59284-0"}]}),
            ),
            el("Consent.patient", min=1, targets=["Patient"]),
            el("Consent.dateTime", min=1),
            el("Consent.verification", min=1, short="The referrer confirms the patient was informed and agreed"),
            el("Consent.verification.verified", fixed=("Boolean", True)),
            el("Consent.provision", min=1),
            el("Consent.provision.type", min=1, fixed=("Code", "permit")),
            el("Consent.provision.actor", min=1, short="The specialist clinic allowed to read the record"),
            el("Consent.provision.action", min=1),
        ],
    )


def episode_of_care() -> Resource:
    return profile(
        "mmr-care-commitment",
        "MmrCareCommitment",
        "MMRpv care commitment (vårdåtagande)",
        "EpisodeOfCare",
        "The care commitment the MMRpv unit takes on for a forwarded referral (routine step 10).",
        "Marks that the MMRpv unit has taken responsibility; the adapter finds the referral through referralRequest.",
        [
            el(
                "EpisodeOfCare",
                constraints=[
                    business_identifier(),
                    inv(
                        "mmr-eoc-1",
                        "An active or finished care commitment has a start",
                        "(status = 'active' or status = 'finished') implies period.start.exists()",
                    ),
                ],
            ),
            el("EpisodeOfCare.identifier", min=1),
            el("EpisodeOfCare.type", min=1, slicing="$this"),
            el("EpisodeOfCare.type:mmr", min=1, max="1", pattern=("CodeableConcept", system_code("service", "mmr"))),
            el("EpisodeOfCare.patient", min=1, targets=["Patient"]),
            el("EpisodeOfCare.managingOrganization", min=1, targets=["Organization"], short="The MMRpv unit"),
            el("EpisodeOfCare.referralRequest", min=1, targets=["ServiceRequest"], short="The referral"),
        ],
    )


def care_plan() -> Resource:
    return profile(
        "mmr-programme",
        "MmrProgramme",
        "MMRpv programme CarePlan",
        "CarePlan",
        "The patient's MMRpv rehabilitation programme (routine step 13).",
        "Its status drives the discharge summary and, from period.end, the 12-month follow-up.",
        [
            el(
                "CarePlan",
                constraints=[
                    business_identifier(),
                    inv(
                        "mmr-cp-1",
                        "An active or completed programme has a start",
                        "(status = 'active' or status = 'completed') implies period.start.exists()",
                    ),
                    inv(
                        "mmr-cp-2",
                        "A completed programme has an end: the follow-up is due 12 months later",
                        "status = 'completed' implies period.end.exists()",
                    ),
                    inv(
                        "mmr-cp-3",
                        "The programme carries out the referral: an activity references the "
                        "ServiceRequest (R4's basedOn points only at CarePlans)",
                        "activity.reference.reference.where($this.contains('ServiceRequest/')).exists()",
                    ),
                ],
            ),
            el("CarePlan.identifier", min=1),
            el("CarePlan.activity", min=1, short="The referral (a reference), then the programme's activities"),
            el("CarePlan.intent", fixed=("Code", "plan")),
            el("CarePlan.category", min=1, slicing="$this"),
            el("CarePlan.category:mmr", min=1, max="1", pattern=("CodeableConcept", system_code("service", "mmr"))),
            el("CarePlan.subject", min=1, targets=["Patient"]),
        ],
    )


def build() -> list[Resource]:
    return [
        referral(),
        criterion_assessment(),
        referral_section(),
        patient_informed(),
        *tasks.build(),
        confirmation(),
        consent(),
        episode_of_care(),
        care_plan(),
    ]
