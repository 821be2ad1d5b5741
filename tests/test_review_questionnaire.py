"""Routine step 6: the patient's intake questionnaire (SDC Task), answers, reminders, giving up."""

from __future__ import annotations

import json
from datetime import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from adapter.mappings import codes
from adapter.workflow.core import Referral
from adapter.workflow.steps import ROUTINE
from tests.support.workflow import (
    ALL_MET,
    CANONICAL,
    MMRPV_ANSWERS,
    STHLM,
    add,
    assert_replay_plans_nothing,
    assessment,
    code,
    ctx,
    intake_questionnaire,
    messages,
    output_codes,
    referral,
    resource_event,
    response,
    review,
    run,
    service_request,
    sr_event,
    task,
    timer_event,
)

QTASK = "R-1-complete-questionnaire-mmr-intake"


def asked() -> tuple[Referral, Referral]:
    state = referral()
    plan, after = run(state, sr_event(state), ctx())
    assert_replay_plans_nothing(state, plan, after, sr_event(state), ctx())
    return state, after


def test_unknown_criteria_ask_the_patient_with_an_sdc_task() -> None:
    _, after = asked()
    qtask, rev = task(after, QTASK), review(after)
    assert qtask["code"]["coding"][0] == codes().sdc_task_code
    assert qtask["status"] == "requested" and code(qtask["businessStatus"]) == "awaiting-patient"
    assert qtask["owner"] == qtask["for"] == {"reference": "Patient/p1"}
    assert qtask["focus"] == {"reference": "ServiceRequest/sr1"}
    assert qtask["partOf"] == [{"reference": f"Task/{rev['id']}"}]
    assert qtask["input"] == [
        {
            "type": {"coding": [{"system": "http://hl7.org/fhir/uv/sdc/CodeSystem/temp", "code": "questionnaire"}]},
            "valueCanonical": CANONICAL,
        }
    ]
    assert qtask["restriction"]["period"]["end"] == "2026-03-16T16:00:00+01:00"  # 10 working days
    assert rev["status"] == "on-hold" and code(rev["businessStatus"]) == "awaiting-patient"
    notice = messages(after)["R-1-questionnaire-request-patient-intake"]
    assert notice["recipient"] == [{"reference": "Patient/p1"}]
    assert {"reference": f"Task/{qtask['id']}"} in notice["about"]
    assert "2026-03-16" in notice["payload"][0]["contentString"]


def test_the_answer_completes_the_task_and_the_review_resumes_with_a_recommendation() -> None:
    _, after = asked()
    qtask = task(after, QTASK)
    answer = response(MMRPV_ANSWERS, based_on=f"Task/{qtask['id']}")
    answered = add(after, answer)
    event = resource_event(answer)
    plan, done = run(answered, event, ctx())
    qtask = task(done, QTASK)
    assert qtask["status"] == "completed"
    assert qtask["output"][0]["valueReference"] == {"reference": "QuestionnaireResponse/qr1"}
    rev = review(done)
    assert rev["status"] == "received" and code(rev["businessStatus"]) == "recommended"
    assert output_codes(rev)["recommendation"] == "MMRpv"
    assert "diagnos-besked = ja" in rev["output"][0]["valueCodeableConcept"]["text"]
    assert_replay_plans_nothing(answered, plan, done, event, ctx())


def test_an_answer_based_on_the_service_request_also_counts() -> None:
    _, after = asked()
    answered = add(after, response(with_low_group_answer(), based_on="ServiceRequest/sr1"))
    _, done = run(answered, sr_event(answered), ctx())
    assert output_codes(review(done))["recommendation"] == "MMRsv"


def with_low_group_answer() -> dict[str, str]:
    return {**MMRPV_ANSWERS, "grupp-delta": "nej"}


def test_no_questionnaire_when_the_referral_already_decides() -> None:
    state = referral(service_request(extension=ALL_MET))
    plan = ROUTINE.decide(state, sr_event(state), ctx())
    assert not [w for w in plan.writes if "complete-questionnaire" in str(w.resource.get("code"))]
    not_met = referral(service_request(extension=[assessment("limited-psychiatric-comorbidity", "not-met")]))
    plan = ROUTINE.decide(not_met, sr_event(not_met), ctx())
    assert not [w for w in plan.writes if "complete-questionnaire" in str(w.resource.get("code"))]


def test_questionnaire_option_never_and_always() -> None:
    state = referral()
    never = ROUTINE.decide(state, sr_event(state), ctx(questionnaire="never"))
    assert not [w for w in never.writes if "complete-questionnaire" in str(w.resource.get("code"))]
    rev = next(w.resource for w in never.writes if code(w.resource.get("code")) == "referral-review")
    assert code(rev["businessStatus"]) == "recommended" and "recommendation" not in output_codes(rev)
    decided = referral(service_request(extension=ALL_MET))
    always = ROUTINE.decide(decided, sr_event(decided), ctx(questionnaire="always"))
    assert [w for w in always.writes if "complete-questionnaire" in str(w.resource.get("code"))]


def test_reminders_then_the_review_goes_on_without_answers() -> None:
    _, after = asked()
    event = timer_event(after, "questionnaire-reminder")
    early = ROUTINE.decide(after, event, ctx())
    assert not early.writes and early.timers[0].due == datetime(2026, 3, 6, 9, 30, tzinfo=STHLM)
    remind_at = ctx(datetime(2026, 3, 6, 9, 30, tzinfo=STHLM))
    plan, reminded = run(after, event, remind_at)
    reminder = messages(reminded)["R-1-questionnaire-reminder-patient-1"]
    assert code(reminder["category"][0]) == "questionnaire-reminder"
    assert plan.timers[0].due == datetime(2026, 3, 16, 16, tzinfo=STHLM)  # the due date: only one reminder
    assert_replay_plans_nothing(after, plan, reminded, event, remind_at, timers_allowed=True)
    past_due = ctx(datetime(2026, 3, 16, 16, 0, tzinfo=STHLM))
    plan, gave_up = run(reminded, event, past_due)
    assert task(gave_up, QTASK)["status"] == "failed"
    assert task(gave_up, QTASK)["statusReason"]["text"] == "Patienten har inte besvarat formuläret"
    rev = review(gave_up)
    assert rev["status"] == "received" and code(rev["businessStatus"]) == "recommended"
    assert set(output_codes(rev).values()) == {"unknown"}
    assert_replay_plans_nothing(reminded, plan, gave_up, event, past_due)


def test_a_late_answer_on_the_timer_is_linked_too() -> None:
    _, after = asked()
    answered = add(after, response(MMRPV_ANSWERS, based_on=f"Task/{task(after, QTASK)['id']}"))
    plan = ROUTINE.decide(answered, timer_event(answered, "questionnaire-reminder"), ctx())
    assert any(w.resource.get("status") == "completed" for w in plan.writes)


def test_no_questionnaire_without_a_usable_patient() -> None:
    """No subject: KOM to the referrer; after the reply the review goes on, but nobody can be asked."""
    state = referral(service_request(subject=None))
    _, after = run(state, sr_event(state), ctx())
    kom = messages(after)["R-1-KOM-referrer-1"]
    assert "Patientens identitet" in kom["payload"][0]["contentString"]
    reply = {
        "resourceType": "Communication",
        "id": "re",
        "meta": {"versionId": "1"},
        "status": "completed",
        "inResponseTo": [{"reference": f"Communication/{kom['id']}"}],
    }
    replied = add(after, reply)
    plan, resumed = run(replied, resource_event(reply), ctx())
    assert any("no usable patient" in n for n in plan.notes)
    assert not [r for r in resumed.all("Task") if "complete-questionnaire" in str(r.get("code"))]
    assert code(review(resumed)["businessStatus"]) == "recommended"
    assert "for" not in review(resumed)


# ---------------------------------------------------------------- answers that do not answer the form

PNR = "19121212-1212"


def issue_answer(qtask_id: str) -> dict[str, object]:
    """The issue's answer: ``kanske`` is no option, free text (a personnummer) under a choice item,
    seven required items missing."""
    base = response({}, based_on=f"Task/{qtask_id}")
    return {
        **base,
        "item": [
            {
                "linkId": "utredning",
                "item": [
                    {"linkId": "diagnos-besked", "answer": [{"valueCoding": {"code": "kanske"}}]},
                    {"linkId": "utredning-pagar", "answer": [{"valueString": f"vet inte, ring mig {PNR}"}]},
                    {"linkId": "behandling-planerad", "answer": [{"valueCoding": {"code": "nej"}}]},
                ],
            },
            {
                "linkId": "maende",
                "item": [{"linkId": "psykiatri-kontakt", "answer": [{"valueCoding": {"code": "nej"}}]}],
            },
        ],
    }


def item_text(link_id: str) -> str:
    return next(
        str(i["text"]) for g in intake_questionnaire()["item"] for i in g.get("item") or () if i["linkId"] == link_id
    )


def test_invalid_answers_go_back_to_the_patient_and_the_review_keeps_waiting() -> None:
    _, after = asked()
    qtask = task(after, QTASK)
    answer = issue_answer(qtask["id"])
    answered = add(after, answer)
    event = resource_event(answer)
    plan, refused = run(answered, event, ctx())
    qtask = task(refused, QTASK)
    assert qtask["status"] == "requested" and code(qtask["businessStatus"]) == "awaiting-patient"
    assert qtask["owner"] == {"reference": "Patient/p1"} and not qtask.get("output")
    reason = qtask["statusReason"]["text"]
    wrong = ["diagnos-besked", "utredning-pagar"]
    missing = ["smarta-duration", "smarta-hinder", "psykisk-paverkan", "beroende", "sysselsattning"]
    for link_id in [*wrong, *missing, "grupp-delta", "grupp-narvaro"]:
        assert item_text(link_id) in reason, link_id
        assert link_id not in reason.replace(item_text(link_id), "")  # "beroende" is a word of its text
    assert item_text("behandling-planerad") not in reason and item_text("psykiatri-kontakt") not in reason
    assert "kanske" not in reason
    rev = review(refused)
    assert rev["status"] == "on-hold" and code(rev["businessStatus"]) == "awaiting-patient"
    assert "recommendation" not in output_codes(rev)
    assert plan.counts.count("answers-refused") == 1
    assert any("diagnos-besked" in n for n in plan.notes)  # the technical detail: linkIds for the log
    assert_replay_plans_nothing(answered, plan, refused, event, ctx())

    # the reminders go on
    remind_at = ctx(datetime(2026, 3, 6, 9, 30, tzinfo=STHLM))
    _, reminded = run(refused, timer_event(refused, "questionnaire-reminder"), remind_at)
    assert "R-1-questionnaire-reminder-patient-1" in messages(reminded)

    # a corrected answer (a new version) counts and clears the reason
    corrected = {**response(MMRPV_ANSWERS, based_on=f"Task/{qtask['id']}"), "meta": {"versionId": "2"}}
    again = add(reminded, corrected)
    plan, done = run(again, resource_event(corrected), remind_at)
    qtask = task(done, QTASK)
    assert qtask["status"] == "completed" and code(qtask["businessStatus"]) == "answered"
    assert "statusReason" not in qtask
    assert output_codes(review(done))["recommendation"] == "MMRpv"
    assert "answers-refused" not in plan.counts


def test_free_text_a_patient_types_reaches_no_write_and_no_note() -> None:
    _, after = asked()
    qtask = task(after, QTASK)
    for answer in (issue_answer(qtask["id"]), with_free_text(qtask["id"])):
        answered = add(after, answer)
        plan, _ = run(answered, resource_event(answer), ctx())
        assert plan.writes
        for w in plan.writes:
            assert PNR not in json.dumps(w.resource, ensure_ascii=False), w.resource.get("resourceType")
        assert not [n for n in plan.notes if PNR in n]


def with_free_text(qtask_id: str) -> dict[str, object]:
    """A valid answer with free text in the form's text items and a personnummer in it."""
    valid = response(MMRPV_ANSWERS, based_on=f"Task/{qtask_id}")
    items = [dict(g) for g in valid["item"]]
    items[0] = {
        **items[0],
        "item": [*items[0]["item"], {"linkId": "smarta-lokalisation", "answer": [{"valueString": f"ryggen {PNR}"}]}],
    }
    return {**valid, "item": items}


REQUIRED = [k for k in MMRPV_ANSWERS]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["drop", "code", "type"]),
            st.sampled_from(REQUIRED),
            st.sampled_from(["ja", "nej", "kanske", "over-5-ar", "lite", "MMRpv", ""]),
        ),
        max_size=3,
    )
)
def test_a_mutated_answer_either_counts_or_is_refused_once(mutations: list[tuple[str, str, str]]) -> None:
    _, after = asked()
    qtask_id = task(after, QTASK)["id"]
    answers: dict[str, str] = dict(MMRPV_ANSWERS)
    typed: set[str] = set()
    for kind, link_id, value in mutations:
        if kind == "drop":
            answers.pop(link_id, None)
        elif kind == "code" and link_id in answers:
            answers[link_id] = value
        elif kind == "type":
            typed.add(link_id)
    answer = response(answers, based_on=f"Task/{qtask_id}")
    for group in answer["item"]:
        for item in group.get("item") or ():
            if item["linkId"] in typed:
                item["answer"] = [{"valueString": item["answer"][0]["valueCoding"]["code"]}]
    plan = ROUTINE.decide(add(after, answer), resource_event(answer), ctx())
    mine = [w.resource for w in plan.writes if w.resource.get("id") == qtask_id]
    completed = [t for t in mine if t["status"] == "completed"]
    refused = [t for t in mine if t["status"] == "requested" and t.get("statusReason")]
    assert len(completed) + len(refused) == 1, mutations
    # an oracle of its own: every question the form shows answered with one of its options, as a Coding
    defs = {i["linkId"]: i for g in intake_questionnaire()["item"] for i in g.get("item") or ()}
    sick = answers.get("sysselsattning", "").startswith("sjukskriven")
    shown = [k for k, d in defs.items() if d.get("required") and (k != "sjukskrivning-langd" or sick)]
    valid = all(
        k not in typed and answers.get(k) in {o["valueCoding"]["code"] for o in defs[k]["answerOption"]} for k in shown
    )
    assert bool(completed) == valid, mutations
    assert plan.counts.count("answers-refused") == len(refused)
    assert not any(t.get("statusReason") for t in completed)


def test_an_answer_shaped_against_r4_is_refused_not_read() -> None:
    """A server that checks no structure (the sandbox) may hold items that are no objects: the check
    reads none of it, and the answer does not count."""
    from adapter.workflow.answers import MALFORMED, problems

    for items in ("x", ["x"], [{"linkId": "a", "answer": "yes"}], [{"linkId": "g", "item": [{"answer": [1]}]}]):
        assert problems({"resourceType": "QuestionnaireResponse", "questionnaire": CANONICAL, "item": items}) == (
            MALFORMED,
        ), items
