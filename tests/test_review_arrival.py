"""Routine steps 3-4: arrival registration, assignment and the overdue flag."""

from __future__ import annotations

from datetime import datetime

from adapter.mappings import codes, directory
from adapter.workflow.core import Event, Referral
from adapter.workflow.steps import ROUTINE
from tests.support.workflow import (
    ALL_MET,
    ANGELHOLM,
    LUND,
    NOW,
    STHLM,
    apply,
    assert_replay_plans_nothing,
    clinic_org,
    code,
    consent,
    ctx,
    messages,
    referral,
    resource_event,
    review,
    run,
    service_request,
    sr_event,
    timer_event,
    update_resource,
)


def test_registers_the_review_task_with_deadline_timer_and_reviewer() -> None:
    state = referral(service_request(extension=ALL_MET))
    plan, after = run(state, sr_event(state), ctx())
    task = review(after)
    assert code(task["code"]) == "referral-review"
    assert task["focus"] == {"reference": "ServiceRequest/sr1"}
    assert task["for"] == {"reference": "Patient/p1"}
    assert task["requester"] == {"reference": "PractitionerRole/ref1"}
    assert task["authoredOn"] == NOW.isoformat()
    assert task["identifier"][0] == {"system": codes().identifier_system("task"), "value": "R-1-referral-review"}
    # Monday 2 March 2026 -> Thursday 5 March, end of the working day.
    assert task["restriction"]["period"]["end"] == "2026-03-05T16:00:00+01:00"
    assert [(t.name, t.due) for t in plan.timers] == [("review-overdue", datetime(2026, 3, 5, 16, tzinfo=STHLM))]
    reviewers = {r.hsa_id for r in directory().clinic_by_hsa(LUND).reviewers}
    assert task["owner"]["reference"].removeprefix("PractitionerRole/") in reviewers
    assert task["owner"]["identifier"]["value"] in reviewers and task["owner"]["display"]
    assert_replay_plans_nothing(state, plan, after, sr_event(state), ctx())


def test_arrival_alone_is_received_and_registered() -> None:
    from adapter.workflow.arrival import register_arrival

    state = referral()
    plan = register_arrival(state, sr_event(state), ctx())
    task = plan.writes[0].resource
    assert task["status"] == "received" and code(task["businessStatus"]) == "registered"
    assert task["owner"]["reference"] == f"Organization/{LUND}"
    assert task["owner"]["identifier"]["value"] == LUND


def test_round_robin_is_stable_per_referral_and_spreads_over_the_pool() -> None:
    owners = set()
    for n in range(30):
        sr = service_request(identifier=[{"system": "https://ehr.example.se/remiss", "value": f"R-{n}"}])
        state = referral(sr)
        first, again = (
            ROUTINE.decide(state, sr_event(state), ctx(questionnaire="never")).writes[0].resource["owner"]["reference"]
            for _ in range(2)
        )
        assert first == again
        owners.add(first)
    assert len(owners) == len(directory().clinic_by_hsa(LUND).reviewers)


def _open_review(n: int, owner_hsa: str) -> dict:
    c = codes()
    return {
        "resourceType": "Task",
        "id": f"other-{n}",
        "meta": {"versionId": "1"},
        "status": "in-progress",
        "code": c.concept("task-type", "referral-review"),
        "focus": {"reference": f"ServiceRequest/other-{n}"},
        "owner": {"reference": f"PractitionerRole/{owner_hsa}"},
    }


def test_least_open_picks_the_reviewer_with_fewest_open_reviews() -> None:
    pool = [r.hsa_id for r in directory().clinic_by_hsa(LUND).reviewers]
    workload = [_open_review(1, pool[0]), _open_review(2, pool[0]), _open_review(3, pool[2])]
    state = referral(service_request(), *workload)
    plan = ROUTINE.decide(state, sr_event(state), ctx(assignment="least-open", questionnaire="never"))
    task = next(w.resource for w in plan.writes if code(w.resource.get("code")) == "referral-review")
    assert task["owner"]["reference"] == f"PractitionerRole/{pool[1]}"
    # Other referrals' review Tasks are not mistaken for this one's.
    assert task["identifier"][0]["value"] == "R-1-referral-review"


def test_without_a_pool_the_clinic_keeps_it_awaiting_assignment() -> None:
    from adapter.workflow.arrival import assign_reviewer, register_arrival

    state = referral(service_request(clinic=ANGELHOLM), clinic_org(ANGELHOLM))
    registered = register_arrival(state, sr_event(state), ctx())
    assigned = assign_reviewer(state.with_plan(registered), sr_event(state), ctx())
    task = assigned.writes[0].resource
    assert task["owner"]["reference"] == f"Organization/{ANGELHOLM}"
    assert code(task["businessStatus"]) == "awaiting-assignment"
    assert any("no reviewer pool" in n for n in assigned.notes)
    # In one decide the two merge into one create of the Task.
    plan = ROUTINE.decide(state, sr_event(state), ctx())
    assert len([w for w in plan.writes if code(w.resource.get("code")) == "referral-review"]) == 1


def test_assignment_by_hand_is_recognised() -> None:
    from adapter.workflow.arrival import assign_reviewer, register_arrival

    state = referral(service_request(clinic=ANGELHOLM), clinic_org(ANGELHOLM))
    created = register_arrival(state, sr_event(state), ctx())
    waiting = apply(state, created + assign_reviewer(state.with_plan(created), sr_event(state), ctx()))
    by_hand = update_resource(waiting, review(waiting), owner={"reference": "PractitionerRole/someone"})
    plan = assign_reviewer(by_hand, resource_event(review(by_hand)), ctx())
    assert plan.writes[0].resource["owner"] == {"reference": "PractitionerRole/someone"}
    assert code(plan.writes[0].resource["businessStatus"]) == "assigned"


def test_other_referrals_are_ignored_with_a_note() -> None:
    not_mmr = service_request(
        category=[{"coding": [{"system": "http://snomed.info/sct", "code": "1234"}]}], code={"text": "något annat"}
    )
    plan = ROUTINE.decide(referral(not_mmr), sr_event(referral(not_mmr)), ctx())
    assert not plan.writes and any("not an MMR referral" in n for n in plan.notes)
    # An MMR referral to no clinic of ours is not ignored: the referral coordinator holds it
    # (tests/test_review_routing.py), and no review starts anywhere.
    elsewhere = service_request(performer=[{"reference": "Organization/SE-OTHER"}])
    plan = ROUTINE.decide(referral(elsewhere), sr_event(referral(elsewhere)), ctx())
    kinds = {code(w.resource.get("code")) for w in plan.writes if w.resource["resourceType"] == "Task"}
    assert kinds == {"referral-routing"} and any("not one specialist clinic" in n for n in plan.notes)
    draft = service_request(status="draft")
    assert not ROUTINE.decide(referral(draft), sr_event(referral(draft)), ctx()).writes


def test_a_deleted_review_task_is_registered_anew() -> None:
    state = referral(service_request(extension=ALL_MET))
    _, after = run(state, sr_event(state), ctx())
    task = review(after)
    gone = Referral(after.service_request, {k: v for k, v in after.resources.items() if k != f"Task/{task['id']}"})
    plan = ROUTINE.decide(gone, Event("deleted", "Task", task["id"]), ctx())
    assert any(w.resource.get("identifier", [{}])[0].get("value") == "R-1-referral-review" for w in plan.writes)
    assert "register_arrival" in [s.__name__ for s in ROUTINE.steps_for("deleted:Task")]


# ---------------------------------------------------------------- overdue


def test_overdue_review_is_flagged_once_to_the_clinic_and_reviewer() -> None:
    state = referral(service_request(extension=ALL_MET))
    _, after = run(state, sr_event(state), ctx())
    late = ctx(datetime(2026, 3, 5, 16, 0, 1, tzinfo=STHLM))
    plan, flagged = run(after, timer_event(after, "review-overdue"), late)
    notice = messages(flagged)["R-1-overdue-clinic-review"]
    assert code(notice["category"][0]) == "overdue"
    assert notice["recipient"][0]["reference"] == f"Organization/{LUND}"
    assert notice["recipient"][1]["reference"].startswith("PractitionerRole/")
    assert notice["about"] == notice["basedOn"] == [{"reference": "ServiceRequest/sr1"}]
    assert "3 arbetsdagar" in notice["payload"][0]["contentString"]
    assert_replay_plans_nothing(after, plan, flagged, timer_event(after, "review-overdue"), late)


def test_overdue_timer_early_re_arms_and_closed_review_is_not_flagged() -> None:
    state = referral(service_request(extension=ALL_MET))
    _, after = run(state, sr_event(state), ctx())
    early = ROUTINE.decide(after, timer_event(after, "review-overdue"), ctx())
    assert not early.writes and early.timers[0].due == datetime(2026, 3, 5, 16, tzinfo=STHLM)
    closed = update_resource(after, review(after), status="completed")
    late = ctx(datetime(2026, 3, 9, 8, tzinfo=STHLM))
    assert ROUTINE.decide(closed, timer_event(closed, "review-overdue"), late).empty


def test_without_a_pool_the_assessed_review_stays_awaiting_assignment_until_someone_owns_it() -> None:
    """The state table and the README promise `awaiting-assignment` to a clinic without a pool: a
    worklist filtered on it must find the referral, assessed or not, until the clinic sets an owner."""
    state = referral(
        service_request(clinic=ANGELHOLM, extension=ALL_MET), clinic_org(ANGELHOLM), consent(clinic=ANGELHOLM)
    )
    plan, after = run(state, sr_event(state), ctx(questionnaire="never"))
    task = review(after)
    assert task["owner"]["reference"] == f"Organization/{ANGELHOLM}"
    assert (task["status"], code(task["businessStatus"])) == ("received", "awaiting-assignment")
    assert any(code(o["type"]) == "recommendation" for o in task.get("output") or ())  # the assessment is there
    assert_replay_plans_nothing(state, plan, after, sr_event(state), ctx(questionnaire="never"))
    by_hand = update_resource(after, task, owner={"reference": "PractitionerRole/someone"})
    _, assigned = run(by_hand, resource_event(review(by_hand)), ctx(questionnaire="never"))
    assert code(review(assigned)["businessStatus"]) == "recommended"
