"""The Task profiles: review, MMRpv intake, booking, questionnaire (SDC) and follow-up.

Every Task shares code, focus (the referral), for (the patient), owner and the adapter's business
identifier; each adds what its step of the routine relies on.
"""

from __future__ import annotations

from typing import Any

from adapter.conformance.build.sources.common import SDC_TEMP, Resource, system_code, vs_url
from adapter.conformance.build.sources.elements import business_identifier, el, has, inv, output_of, profile
from adapter.mappings import codes


def task_profile(
    id_: str,
    name: str,
    title: str,
    code: dict[str, Any],
    description: str,
    purpose: str,
    owner: list[str],
    extra: list[dict[str, Any]],
    constraints: list[dict[str, str]] | None = None,
    owner_short: str = "Who acts on the Task",
) -> Resource:
    """A Task profile: the elements every workflow Task shares, then ``extra``."""
    elements = [
        el("Task", constraints=[business_identifier(), *(constraints or [])]),
        el("Task.identifier", min=1, short="Business identifier; the adapter's makes replays idempotent"),
        el("Task.businessStatus", short="The routine's finer step", binding=("required", vs_url("business-status"))),
        el("Task.intent", fixed=("Code", "order")),
        el("Task.code", min=1, pattern=("CodeableConcept", code), binding=("required", vs_url("task-type"))),
        el("Task.focus", min=1, targets=["ServiceRequest"], short="The referral"),
        el("Task.for", min=1, targets=["Patient"], short="The patient"),
        el("Task.owner", min=1, targets=owner, short=owner_short),
    ]
    return profile(id_, name, title, "Task", description, purpose, elements + extra)


def review_task() -> Resource:
    c = codes()
    param, crit, level = c.system("task-parameter"), c.system("criterion"), c.system("level")
    closing, status = c.system("closing-code"), c.system("business-status")
    criteria = list(c.raw["code_systems"]["criterion"]["concepts"])
    all_criteria = " and ".join(has("output.type", crit, k) for k in criteria)
    decided_pv = (
        f"{output_of(param, 'decision')}.value.ofType(CodeableConcept)"
        f".coding.where(system = '{level}' and code = 'MMRpv').exists()"
    )
    extra = [
        el(
            "Task.statusReason",
            short="Closing code HE when the referral is forwarded to MMRpv",
            definition="A forwarded review is completed with closing code HE 'Remiss vidareskickad' and the text "
            "'Rehabiliteringsmottagning långvarig smärta nära vård, <ort>' in statusReason.text.",
            binding=("extensible", vs_url("closing-code")),
        ),
        el("Task.restriction", min=1),
        el("Task.restriction.period", min=1),
        el("Task.restriction.period.end", min=1, short="Review deadline: arrival + 3 Swedish working days"),
        el("Task.input", slicing="type"),
        el("Task.input:supplement-reply", short="The referrer's reply to a supplement request (KOM)"),
        el(
            "Task.input:supplement-reply.type",
            pattern=("CodeableConcept", system_code("task-parameter", "supplement-reply")),
        ),
        el(
            "Task.input:reviewing-clinic",
            max="1",
            short="The clinic the review was registered at; a later version of the referral does not move it",
        ),
        el(
            "Task.input:reviewing-clinic.type",
            pattern=("CodeableConcept", system_code("task-parameter", "reviewing-clinic")),
        ),
        el("Task.input:reviewing-clinic.value[x]", targets=["Organization"]),
        el("Task.output", slicing="type", short="Levels, deviation, MMRpv site and the result of each criterion"),
        el("Task.output:recommendation", max="1", short="The level the adapter recommends"),
        el(
            "Task.output:recommendation.type",
            pattern=("CodeableConcept", system_code("task-parameter", "recommendation")),
        ),
        el("Task.output:recommendation.value[x]", types=["CodeableConcept"], binding=("required", vs_url("level"))),
        el("Task.output:decision", short="The decided level; the last one counts"),
        el("Task.output:decision.type", pattern=("CodeableConcept", system_code("task-parameter", "decision"))),
        el("Task.output:decision.value[x]", types=["CodeableConcept"], binding=("required", vs_url("level"))),
        el("Task.output:deviation", max="1", short="Why the decision differs from the recommendation"),
        el("Task.output:deviation.type", pattern=("CodeableConcept", system_code("task-parameter", "deviation"))),
        el("Task.output:mmrpv-site", max="1", short="The MMRpv site the forwarding names"),
        el("Task.output:mmrpv-site.type", pattern=("CodeableConcept", system_code("task-parameter", "mmrpv-site"))),
    ]
    for key in criteria:
        extra += [
            el(f"Task.output:{key}", max="1", short=f"Result of criterion {key}; the evidence in value.text"),
            el(f"Task.output:{key}.type", pattern=("CodeableConcept", system_code("criterion", key))),
            el(
                f"Task.output:{key}.value[x]",
                types=["CodeableConcept"],
                binding=("required", vs_url("criterion-result")),
            ),
        ]
    constraints = [
        inv(
            "mmr-rev-1",
            "A recommendation comes with the result of every criterion",
            f"{output_of(param, 'recommendation')}.exists() implies ({all_criteria})",
        ),
        inv(
            "mmr-rev-2",
            "A completed review carries the decided level",
            f"status = 'completed' implies {output_of(param, 'decision')}.exists()",
        ),
        inv(
            "mmr-rev-3",
            "A forwarded review is completed with closing code HE",
            f"{has('businessStatus', status, 'forwarded')} implies "
            f"(status = 'completed' and {has('statusReason', closing, 'HE')})",
        ),
        inv(
            "mmr-rev-4",
            "Closing code HE only when MMRpv was decided",
            f"{has('statusReason', closing, 'HE')} implies {decided_pv}",
        ),
    ]
    return task_profile(
        "mmr-review-task",
        "MmrReviewTask",
        "MMR referral review Task",
        system_code("task-type", "referral-review"),
        "The specialist clinic's review and level assessment of one referral (routine steps 3-9).",
        "Registers arrival, carries the three-working-day deadline, the per-criterion evidence, the recommended "
        "and decided level, and closes with HE when the referral is forwarded to MMRpv.",
        ["Organization", "PractitionerRole"],
        extra,
        constraints,
        owner_short="The specialist clinic, then the assigned reviewer",
    )


def routing_task() -> Resource:
    return task_profile(
        "mmr-routing-task",
        "MmrRoutingTask",
        "MMR held referral Task",
        system_code("task-type", "referral-routing"),
        "An MMR referral that cannot be routed to a specialist clinic of the routine (no receiving clinic, an "
        "unknown or ambiguous one, or a unit that is no specialist clinic), held by the region's referral "
        "coordinator until the referrer corrects it (issue 23: no referral falls silent on a human mistake).",
        "Gives a referral nobody in the directory can own a named owner, and says why in statusReason.",
        ["Organization", "PractitionerRole"],
        [el("Task.statusReason", min=1, short="Why the referral cannot be routed, in clinical words")],
        owner_short="The region's referral coordinator",
    )


def intake_task() -> Resource:
    return task_profile(
        "mmr-intake-task",
        "MmrIntakeTask",
        "MMRpv intake Task",
        system_code("task-type", "mmrpv-intake"),
        "Arrival of a forwarded referral at the MMRpv unit (routine steps 9-10).",
        "Tells the MMRpv unit that a referral has arrived for it; its progress leads to the care commitment.",
        ["Organization"],
        [],
        owner_short="The MMRpv unit",
    )


def booking_task() -> Resource:
    return task_profile(
        "mmr-booking-task",
        "MmrBookingTask",
        "MMR booking Task",
        system_code("task-type", "booking"),
        "The booking of the patient at an MMRpv site or at the specialist clinic (routine steps 7 and 11); "
        "the Appointment it leads to is basedOn the referral.",
        "Puts the booking on the work list of whoever books: the MMRpv administrative function or the clinic.",
        ["Organization", "PractitionerRole"],
        [],
        owner_short="Who books: the MMRpv administrative function or the specialist clinic",
    )


def _questionnaire_io(min_input: int = 1) -> list[dict[str, Any]]:
    return [
        el("Task.input", min=min_input, slicing="type"),
        el("Task.input:questionnaire", min=1, max="1", short="The Questionnaire to fill in, by canonical"),
        el(
            "Task.input:questionnaire.type",
            pattern=("CodeableConcept", {"coding": [{"system": SDC_TEMP, "code": "questionnaire"}]}),
        ),
        el("Task.input:questionnaire.value[x]", types=["canonical"]),
        el("Task.output", slicing="type"),
        el("Task.output:response", max="1", short="The QuestionnaireResponse that completed the Task"),
        el(
            "Task.output:response.type",
            pattern=("CodeableConcept", {"coding": [{"system": SDC_TEMP, "code": "questionnaire-response"}]}),
        ),
        el("Task.output:response.value[x]", targets=["QuestionnaireResponse"]),
    ]


def _response_invariant(key: str) -> dict[str, str]:
    return inv(
        key,
        "A completed questionnaire Task links the QuestionnaireResponse",
        f"status = 'completed' implies {output_of(SDC_TEMP, 'questionnaire-response')}.exists()",
    )


def questionnaire_task() -> Resource:
    return task_profile(
        "mmr-questionnaire-task",
        "MmrQuestionnaireTask",
        "MMR questionnaire Task (SDC)",
        {"coding": [{"system": SDC_TEMP, "code": "complete-questionnaire"}]},
        "A request to the patient to fill in a questionnaire (the MMR intake or an NRS form), SDC pattern "
        "(routine step 6).",
        "Patient apps that follow SDC find it by owner and code; the answer completes it.",
        ["Patient"],
        _questionnaire_io(),
        [_response_invariant("mmr-qt-1")],
        owner_short="The patient",
    )


def follow_up_task() -> Resource:
    extra = [
        el("Task.restriction", min=1),
        el("Task.restriction.period", min=1),
        el("Task.restriction.period.start", min=1, short="When the follow-up is due: 12 months after the programme"),
        *_questionnaire_io(),
    ]
    return task_profile(
        "mmr-follow-up-task",
        "MmrFollowUpTask",
        "MMR 12-month follow-up Task",
        system_code("task-type", "follow-up"),
        "The digital follow-up 12 months after the programme ends (routine step 15); a questionnaire Task "
        "for the patient that becomes due at restriction.period.start. Task.code may add the SDC code "
        "complete-questionnaire for SDC patient apps.",
        "Schedules the follow-up questionnaire and tells the patient when it is due.",
        ["Patient"],
        extra,
        [_response_invariant("mmr-fu-1")],
        owner_short="The patient",
    )


def build() -> list[Resource]:
    return [routing_task(), review_task(), intake_task(), booking_task(), questionnaire_task(), follow_up_task()]
