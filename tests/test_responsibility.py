"""The rule of issue 23, pure: exactly one party responsible for a referral's next step
(``adapter.workflow.responsibility``); conftest holds every end-to-end test's referrals to it."""

from __future__ import annotations

from typing import Any

from adapter.mappings import codes
from adapter.workflow.responsibility import responsible
from tests.support.workflow import ctx, referral, run, service_request, sr_event

SR = "ServiceRequest/sr1"
REVIEWER = {"reference": "PractitionerRole/SE2321000255-SML1-G1"}
PATIENT = {"reference": "Patient/p1"}
UNIT = {"reference": "Organization/SE2321000255-MMRPV"}


def task(kind: str, status: str, business: str, owner: dict[str, str] | None = None, at: str = "10") -> dict[str, Any]:
    c = codes()
    code = (
        {"system": c.sdc_task_code["system"], "code": c.sdc_task_code["code"]}
        if kind == "complete-questionnaire"
        else {"system": c.system("task-type"), "code": kind}
    )
    return {
        "resourceType": "Task",
        "id": f"{kind}-{status}-{at}",
        "meta": {"lastUpdated": f"2026-03-02T{at}:00:00Z"},
        "identifier": [{"system": c.identifier_system("task"), "value": f"R1-{kind}"}],
        "status": status,
        "businessStatus": {"coding": [{"system": c.system("business-status"), "code": business}]},
        "code": {"coding": [code]},
        "focus": {"reference": SR},
        **({"owner": owner} if owner else {}),
    }


def held(*tasks: dict[str, Any]) -> Any:
    return responsible(referral(service_request(), *tasks))


def test_a_referral_on_arrival_is_held_by_the_patient_asked_while_the_review_waits() -> None:
    state = referral(service_request())
    _, after = run(state, sr_event(state), ctx())
    answer = responsible(after)
    assert answer.ok and [t["code"]["coding"][0]["code"] for t in answer.holders] == ["complete-questionnaire"]
    assert answer.holders[0]["owner"]["reference"] == "Patient/p1"


def test_a_review_waiting_for_the_patient_hands_the_next_step_to_the_questionnaire_task() -> None:
    review = task("referral-review", "on-hold", "awaiting-patient", REVIEWER)
    asked = task("complete-questionnaire", "requested", "awaiting-patient", PATIENT)
    answer = held(review, asked)
    assert answer.ok and answer.holders == (asked,)
    alone = held(review)  # the answer came: the review is the reviewer's again
    assert alone.ok and alone.holders == (review,)


def test_a_follow_up_planned_before_the_discharge_summary_leaves_the_referral_with_the_unit() -> None:
    intake = task("mmrpv-intake", "in-progress", "awaiting-discharge-summary", UNIT)
    planned = task("follow-up", "draft", "follow-up-scheduled", PATIENT)
    answer = held(intake, planned)
    assert answer.ok and answer.holders == (intake,), answer.problem
    after = held(task("mmrpv-intake", "completed", "discharged", UNIT, at="09"), planned)  # the summary went back
    assert after.ok and after.holders == (planned,), after.problem


def test_two_open_tasks_or_an_open_task_without_owner_or_none_at_all_break_the_rule() -> None:
    review = task("referral-review", "received", "assigned", REVIEWER)
    booking = task("booking", "requested", "awaiting-booking", UNIT)
    assert "2 open Tasks" in (held(review, booking).problem or "")
    assert "without an owner" in (held(task("referral-review", "received", "awaiting-assignment")).problem or "")
    assert held().problem == "no Task of ours: nobody holds the referral"


def test_the_journey_ends_only_with_a_final_task_that_ends_it() -> None:
    rejected = task("referral-review", "rejected", "rejected", REVIEWER)
    assert held(rejected).ok and held(rejected).ended_by == rejected
    forwarded = task("referral-review", "completed", "forwarded", REVIEWER, at="09")
    assert "does not end the journey" in (held(forwarded).problem or "")  # no intake Task followed
    booked = task("booking", "completed", "booked", UNIT, at="10")
    discharged = task("mmrpv-intake", "completed", "discharged", UNIT, at="11")
    assert not held(forwarded, booked, discharged).ok  # the follow-up is missing
    answered = task("follow-up", "completed", "answered", PATIENT, at="12")
    assert held(forwarded, booked, discharged, answered).ended_by == answered


def test_a_draft_referral_is_still_the_referrers_own() -> None:
    draft = referral(service_request(status="draft"))
    assert responsible(draft).ok and not responsible(draft).holders
