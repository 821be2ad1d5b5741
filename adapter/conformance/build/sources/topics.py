"""Subscription topics for the events the adapter consumes, in the R4 backport form.

Each topic is a ``Basic`` resource carrying the R5 cross-version ``SubscriptionTopic`` extensions
(the encoding sekmet-fhir and HAPI accept); ``code`` marks it as a SubscriptionTopic so servers
find it with ``Basic?code=SubscriptionTopic``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from adapter.conformance.build.sources.common import (
    CORE_SD,
    LOINC,
    SDC_TEMP,
    SNOMED,
    VERSION,
    Resource,
    pascal,
    url,
)
from adapter.mappings import codes

ST = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic"
TOPIC_CODE = {"coding": [{"system": "http://hl7.org/fhir/fhir-types", "code": "SubscriptionTopic"}]}
DISCHARGE_TYPES = ("18842-5", "11488-4")  # LOINC discharge summary, consult note (remissvar)


@dataclass(frozen=True)
class Trigger:
    resource: str
    description: str
    fhirpath: str
    interactions: tuple[str, ...] = ("create", "update")
    filters: tuple[str, ...] = ()


@dataclass(frozen=True)
class TopicSpec:
    name: str
    title: str
    description: str
    triggers: tuple[Trigger, ...] = field(default_factory=tuple)


def _changed(*statuses: str) -> str:
    """FHIRPath: the resource is new or its status changed, and it now has one of ``statuses``."""
    union = " | ".join(f"'{s}'" for s in statuses)
    return f"(%previous.empty() or %previous.status != %current.status) and %current.status in ({union})"


def specs() -> list[TopicSpec]:
    c = codes()
    sr_code = c.referral_code
    is_referral = (
        f"%current.code.coding.where(system = '{sr_code['system']}' and code = '{sr_code['code']}').exists()"
        f" or %current.category.coding.where(system = '{SNOMED}' and "
        f"code = '{c.referral_category['code']}').exists()"
    )
    is_our_task = (
        f"%current.code.coding.where(system = '{c.system('task-type')}' or "
        f"(system = '{SDC_TEMP}' and code = 'complete-questionnaire')).exists()"
    )
    ours = " or ".join(
        f"system = '{c.system(k)}'" for k in ("confirmation-type", "notification-type") if k in c.raw["code_systems"]
    )
    is_reply = (
        f"%current.category.coding.where({ours}).empty() and "
        "(%current.inResponseTo.exists() or %current.basedOn.exists())"
    )
    discharge = " or ".join(f"code = '{code}'" for code in DISCHARGE_TYPES)
    is_discharge = f"%current.type.coding.where(system = '{LOINC}' and ({discharge})).exists()"
    return [
        TopicSpec(
            "mmr-referral",
            "MMR referral created or updated",
            "A referral for multimodal pain rehabilitation was created or changed: the adapter registers "
            "its arrival and follows its status.",
            (
                Trigger(
                    "ServiceRequest",
                    "An MMR referral (by code or referral category)",
                    is_referral,
                    filters=("performer", "status", "patient"),
                ),
            ),
        ),
        TopicSpec(
            "mmr-task",
            "MMR Task changed",
            "A workflow Task (our task codes or the SDC questionnaire code) was created or changed.",
            (
                Trigger(
                    "Task",
                    "A Task with an MMR task code",
                    is_our_task,
                    filters=("code", "status", "focus", "owner", "patient"),
                ),
            ),
        ),
        TopicSpec(
            "mmr-communication-reply",
            "Reply to an MMR confirmation",
            "A Communication that answers the workflow (for example the referrer's answer to a supplement "
            "request), other than the adapter's own confirmations.",
            (
                Trigger(
                    "Communication",
                    "A reply: not one of the adapter's confirmations or notices",
                    is_reply,
                    filters=("based-on", "sender", "status"),
                ),
            ),
        ),
        TopicSpec(
            "mmr-questionnaire-response",
            "QuestionnaireResponse completed",
            "The patient completed a questionnaire: the intake, an NRS form or the 12-month follow-up.",
            (
                Trigger(
                    "QuestionnaireResponse",
                    "Status became completed",
                    _changed("completed"),
                    filters=("questionnaire", "patient", "based-on"),
                ),
            ),
        ),
        TopicSpec(
            "mmr-appointment",
            "Appointment booked or cancelled",
            "An Appointment was booked or cancelled at the specialist clinic or an MMRpv site.",
            (
                Trigger(
                    "Appointment",
                    "Status became booked or cancelled",
                    _changed("booked", "cancelled"),
                    filters=("based-on", "patient", "actor", "location"),
                ),
            ),
        ),
        TopicSpec(
            "mmr-careplan",
            "Programme status changed",
            "An MMRpv programme CarePlan was created or changed status (started, completed, revoked).",
            (
                Trigger(
                    "CarePlan",
                    "New, or status changed",
                    "%previous.empty() or %previous.status != %current.status",
                    filters=("activity-reference", "patient", "status"),
                ),
            ),
        ),
        TopicSpec(
            "mmr-discharge-summary",
            "Discharge summary available",
            "A discharge summary or referral answer (remissvar/epikris) became available, as a "
            "Composition or a DocumentReference.",
            (
                Trigger(
                    "Composition",
                    "A final or amended discharge summary",
                    f"{is_discharge} and {_changed('final', 'amended')}",
                    filters=("patient", "type"),
                ),
                Trigger(
                    "DocumentReference",
                    "A current discharge summary document",
                    f"{is_discharge} and {_changed('current')}",
                    filters=("patient", "type", "related"),
                ),
            ),
        ),
    ]


def topic(spec: TopicSpec) -> Resource:
    extensions: list[dict[str, Any]] = [
        {"url": f"{ST}.url", "valueUri": url("SubscriptionTopic", spec.name)},
        {"url": f"{ST}.version", "valueString": VERSION},
        {"url": f"{ST}.name", "valueString": pascal(spec.name)},
        {"url": f"{ST}.title", "valueString": spec.title},
        {"url": f"{ST}.description", "valueMarkdown": spec.description},
    ]
    for t in spec.triggers:
        extensions.append(
            {
                "url": f"{ST}.resourceTrigger",
                "extension": [
                    {"url": "description", "valueMarkdown": t.description},
                    {"url": "resource", "valueUri": f"{CORE_SD}/{t.resource}"},
                    *({"url": "supportedInteraction", "valueCode": i} for i in t.interactions),
                    {"url": "fhirPathCriteria", "valueString": t.fhirpath},
                ],
            }
        )
    for t in spec.triggers:
        for param in t.filters:
            extensions.append(
                {
                    "url": f"{ST}.canFilterBy",
                    "extension": [
                        {"url": "description", "valueMarkdown": f"Filter {t.resource} on {param}"},
                        {"url": "resource", "valueUri": f"{CORE_SD}/{t.resource}"},
                        {"url": "filterParameter", "valueString": param},
                    ],
                }
            )
    return {
        "resourceType": "Basic",
        "id": spec.name.replace("mmr-", "mmr-topic-", 1),
        "modifierExtension": [{"url": f"{ST}.status", "valueCode": "active"}],
        "extension": extensions,
        "code": TOPIC_CODE,
    }


def build() -> list[Resource]:
    return [topic(s) for s in specs()]
