"""CodeSystems and ValueSets for every code system of codes.yaml, and the ConceptMap to Inera.

The concepts come from codes.yaml only (Swedish display, English as a designation); this module
adds the prose that says what each system is for.
"""

from __future__ import annotations

from typing import Any

from adapter.conformance.build.sources.common import (
    SDC_TEMP,
    Resource,
    base,
    cs_id,
    metadata,
    pascal,
    vs_url,
)
from adapter.mappings import codes

# What each code system carries and why the workflow needs it (CodeSystem.description / purpose).
PROSE: dict[str, tuple[str, str]] = {
    "task-type": (
        "The kinds of Task the adapter creates for one MMR referral (Task.code).",
        "Integration teams find and subscribe to the workflow's Tasks by these codes; the patient's "
        "questionnaire Task uses the SDC code complete-questionnaire instead.",
    ),
    "business-status": (
        "The finer workflow steps of an MMR Task (Task.businessStatus), below the FHIR Task status.",
        "Task.status follows FHIR; these codes say which step of the regional routine a Task is in.",
    ),
    "level": (
        "The two care levels of multimodal pain rehabilitation: primary care (MMRpv) and specialist care (MMRsv).",
        "The outcome of the review: the level recommended by the adapter and decided by the reviewer.",
    ),
    "criterion": (
        "The four regional criteria for MMR at primary care level (MMRpv).",
        "The review Task records the result of each criterion as evidence for the level recommendation.",
    ),
    "criterion-result": (
        "The result of evaluating one MMRpv criterion.",
        "All four met gives MMRpv; anything else MMRsv or a reviewer's judgement.",
    ),
    "confirmation-type": (
        "Referral confirmation types sent to referrer and patient, mirroring Inera's typeOfRequestConfirmation.",
        "Communication.category of every confirmation, so EHRs can map them to Inera's remisshantering.",
    ),
    "closing-code": (
        "Regional closing codes of a referral review (no national FHIR CodeSystem carries them).",
        "The forwarded review Task carries HE in Task.statusReason; the ConceptMap maps it to Inera's VR/VID.",
    ),
    "task-parameter": (
        "The types of MMR Task inputs and outputs (Task.input.type, Task.output.type).",
        "The review Task's outputs say what each value is: the recommended and the decided level, a "
        "deviation between them, the MMRpv site named when forwarding; inputs carry supplement replies.",
    ),
    "notification-type": (
        "Notices the adapter sends that are not referral confirmations (Communication.category).",
        "Overdue reviews, questionnaire requests and reminders are told apart from Inera-style confirmations.",
    ),
    "referral-section": (
        "The free-text sections of a referral the review needs: pain history, work and sick-leave situation, "
        "current treatment.",
        "Marks which ServiceRequest.note answers which completeness rule (extension mmr-referral-section).",
    ),
    "waiting-reason": (
        "Why a referral waits for its first visit by no fault of the care provider: the patient's own choice "
        "(patientvald väntan) or medical reasons, as the national waiting-time database reports them apart.",
        "A unit records one on the Appointment it cancels (Appointment.cancelationReason, beside HL7's "
        "appointment-cancellation-reason); the flow figures report such referrals apart and leave them out of "
        "the care guarantee's.",
    ),
    "measure-part": (
        "What each group and stratifier of the MMR Measures is about (Measure.group.code, "
        "Measure.group.stratifier.code), and the same in their MeasureReports.",
        "A MeasureReport's group and stratifier are matched to the Measure's by system and code (HAPI's "
        "validator requires both), so each carries a code of this system; the codes come from mappings/measures.yaml.",
    ),
    "service": (
        "The service a referral asks for: multimodal pain rehabilitation.",
        "ServiceRequest.code of the referral, and the type/category of the care commitment and programme.",
    ),
}

SDC_COMPLETE = {"code": "complete-questionnaire", "display": "Complete Questionnaire"}

# Inera's code lists are defined in its RIV-TA service contracts, not as FHIR CodeSystems; these
# placeholder system URIs name them until Inera publishes canonical ones.
INERA_CONFIRMATION = "external/inera-typeOfRequestConfirmation"
INERA_VERSION_REASON = "external/inera-versionReason"


def prose(key: str) -> tuple[str, str]:
    """Description and purpose; a code system added to codes.yaml without prose gets its title."""
    title = codes().raw["code_systems"][key]["title"]
    return PROSE.get(key, (title, f"Codes of {title}, as listed in mappings/codes.yaml."))


def code_system(key: str) -> Resource:
    spec = codes().raw["code_systems"][key]
    id_ = cs_id(key)
    description, purpose = prose(key)
    resource = metadata("CodeSystem", id_, pascal(id_), spec["title"], description, purpose)
    concepts = [
        {"code": code, "display": names["sv"], "designation": [{"language": "en", "value": names["en"]}]}
        for code, names in spec["concepts"].items()
    ]
    resource.update(
        {"language": "sv", "caseSensitive": True, "content": "complete", "count": len(concepts), "concept": concepts}
    )
    if key != "task-type":  # the task-type ValueSet also holds the SDC code
        resource["valueSet"] = vs_url(key)
    return _reorder(resource)


def value_set(key: str) -> Resource:
    id_ = cs_id(key)
    spec = codes().raw["code_systems"][key]
    description, purpose = prose(key)
    include: list[dict[str, Any]] = [{"system": codes().system(key)}]
    if key == "task-type":
        include.append({"system": SDC_TEMP, "concept": [SDC_COMPLETE]})
        description = (
            "All MMR Task types, plus the SDC code complete-questionnaire for the patient's questionnaire Task."
        )
    resource = metadata("ValueSet", id_, pascal(id_), spec["title"], description, purpose)
    resource["compose"] = {"include": include}
    return resource


def concept_map() -> Resource:
    id_ = "mmr-to-inera"
    resource = metadata(
        "ConceptMap",
        id_,
        "MmrToInera",
        "MMR confirmation types and closing codes to Inera remisshantering",
        "Maps our confirmation types to Inera's typeOfRequestConfirmation, and the regional closing code HE "
        "to Inera's version reason VR and confirmation VID. Inera's code lists have no FHIR canonical: the "
        f"target systems {base()}/{INERA_CONFIRMATION} and {base()}/{INERA_VERSION_REASON} are placeholders "
        "of this package that name them.",
        "An EHR or gateway that speaks Inera's service contracts translates the adapter's codes with it.",
    )
    confirmation = codes().raw["code_systems"]["confirmation-type"]["concepts"]
    resource["group"] = [
        {
            "source": codes().system("confirmation-type"),
            "target": f"{base()}/{INERA_CONFIRMATION}",
            "element": [
                {
                    "code": code,
                    "display": names["sv"],
                    "target": [{"code": code, "display": names["sv"], "equivalence": "equal"}],
                }
                for code, names in confirmation.items()
            ],
        },
        {
            "source": codes().system("closing-code"),
            "target": f"{base()}/{INERA_VERSION_REASON}",
            "element": [
                {
                    "code": "HE",
                    "display": codes().display("closing-code", "HE"),
                    "target": [
                        {
                            "code": "VR",
                            "display": "Vidareskickad",
                            "equivalence": "equivalent",
                            "comment": "The forwarded referral is a new version with version reason VR.",
                        }
                    ],
                }
            ],
        },
        {
            "source": codes().system("closing-code"),
            "target": f"{base()}/{INERA_CONFIRMATION}",
            "element": [
                {
                    "code": "HE",
                    "display": codes().display("closing-code", "HE"),
                    "target": [
                        {
                            "code": "VID",
                            "display": codes().display("confirmation-type", "VID"),
                            "equivalence": "relatedto",
                            "comment": "A forwarding is announced to referrer and patient with VID.",
                        }
                    ],
                }
            ],
        },
    ]
    return resource


def _reorder(resource: Resource) -> Resource:
    """Put ``language`` right after ``id``, where FHIR's element order has it."""
    order = ["resourceType", "id", "language"]
    return {**{k: resource[k] for k in order if k in resource}, **{k: v for k, v in resource.items() if k not in order}}


def build() -> list[Resource]:
    keys = list(codes().raw["code_systems"])
    return [*(code_system(k) for k in keys), *(value_set(k) for k in keys), concept_map()]
