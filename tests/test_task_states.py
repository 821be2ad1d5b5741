"""The Task state tables (``mappings/task-states.yaml``) and the steps that follow them.

Every pure step test holds the Tasks it writes to the tables (``workflow_helpers.run``); these
tests reproduce the contract's points one by one: arrival is ``received`` with its moment, only a
person makes a review ``in-progress``, a review on hold comes back where it was, the decision's
moment is recorded, and every final status has a final business status.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from adapter.mappings import codes, load, task_state_tables
from adapter.workflow import task_states
from adapter.workflow.core import Referral
from tests.support.workflow import (
    ALL_MET,
    MMRPV_ANSWERS,
    NOW,
    add,
    code,
    ctx,
    decide_as_reviewer,
    referral,
    resource_event,
    response,
    review,
    run,
    service_request,
    sr_event,
    task,
    update_resource,
)
from tests.test_review_decision import recommended, reviewer_decides
from tests.test_review_questionnaire import QTASK, asked

LATER = NOW + timedelta(hours=1)
PROFILES = Path(__file__).resolve().parent.parent / "profiles"


def test_every_table_names_a_task_code_a_profile_and_business_statuses_of_our_code_system() -> None:
    concepts = codes().raw["code_systems"]["business-status"]["concepts"]
    task_types = {*codes().raw["code_systems"]["task-type"]["concepts"], codes().sdc_task_code["code"]}
    profiles = {p.stem.removeprefix("StructureDefinition-") for p in PROFILES.glob("StructureDefinition-*.json")}
    for table in task_state_tables():
        assert table.code in task_types and table.profile in profiles
        for row in table.rows:
            assert set(row.business) <= set(concepts), (table.kind, row.business)
            assert row.by and row.means
        for status, business in table.settle.items():
            row = table.row(status, business)
            assert row is not None and row.final, (table.kind, status, business)
    assert [t.kind for t in task_state_tables()] == list(load("task-states"))


def test_arrival_is_received_with_its_moment_even_when_assessed_in_the_same_transaction() -> None:
    state = referral(service_request(extension=ALL_MET))
    _, after = run(state, sr_event(state), ctx())
    first = review(after)
    assert first["meta"]["versionId"] == "1"
    assert first["status"] == "received" and code(first["businessStatus"]) == "recommended"
    assert first["authoredOn"] == first["restriction"]["period"]["start"] == NOW.isoformat()
    assert "executionPeriod" not in first


def test_only_a_reviewer_makes_a_review_in_progress_and_its_moment_is_recorded() -> None:
    before = recommended()
    taken = update_resource(before, review(before), status="in-progress")
    _, after = run(taken, resource_event(review(taken)), ctx(LATER))
    assert review(after)["executionPeriod"] == {"start": LATER.isoformat()}
    assert review(after)["status"] == "in-progress" and code(review(after)["businessStatus"]) == "recommended"
    assert not run(after, resource_event(review(after)), ctx(LATER))[0].writes


def test_a_review_on_hold_comes_back_at_the_status_it_had() -> None:
    _, waiting = asked()  # received, then on-hold for the patient
    qtask = task(waiting, QTASK)
    answer = response(MMRPV_ANSWERS, based_on=f"Task/{qtask['id']}")
    _, back = run(add(waiting, answer), resource_event(answer), ctx())
    assert review(back)["status"] == "received"
    taken = update_resource(waiting, review(waiting), status="in-progress", executionPeriod={"start": NOW.isoformat()})
    held = update_resource(taken, review(taken), status="on-hold")
    _, back = run(add(held, answer), resource_event(answer), ctx())
    assert review(back)["status"] == "in-progress"


def test_the_decision_records_its_moment() -> None:
    before = recommended()
    _, after = reviewer_decides("MMRsv", before)
    assert review(after)["executionPeriod"]["end"] == NOW.isoformat()
    assert review(after)["status"] == "completed" and code(review(after)["businessStatus"]) == "decided"


def test_a_task_authored_by_a_clock_ahead_of_ours_is_never_modified_before_it_was_authored() -> None:
    before = decide_as_reviewer(recommended(), "MMRsv")  # authored at NOW; this worker's clock is an hour behind
    _, after = run(before, resource_event(review(before)), ctx(NOW - timedelta(hours=1)))  # inv-1, which HAPI checks
    assert review(after)["status"] == "completed"
    assert review(after)["lastModified"] == review(after)["authoredOn"] == NOW.isoformat()


def test_a_rejected_review_ends_rejected_and_its_questionnaire_closed() -> None:
    _, waiting = asked()
    rejected = update_resource(waiting, review(waiting), status="rejected", statusReason={"text": "Ej aktuell"})
    _, done = run(rejected, resource_event(review(rejected)), ctx())
    assert code(review(done)["businessStatus"]) == "rejected"
    qtask = task(done, QTASK)
    assert qtask["status"] == "cancelled" and code(qtask["businessStatus"]) == "closed"


def test_a_revoked_referral_ends_its_open_tasks_revoked() -> None:
    _, waiting = asked()
    revoked = update_resource(waiting, waiting.service_request, status="revoked")
    _, done = run(revoked, sr_event(revoked), ctx())
    for t in (review(done), task(done, QTASK)):
        assert t["status"] == "cancelled" and code(t["businessStatus"]) == "revoked"


def test_a_questionnaire_the_patient_app_completes_itself_is_answered() -> None:
    _, waiting = asked()
    qtask = task(waiting, QTASK)
    answer = response(MMRPV_ANSWERS, based_on="ServiceRequest/other")  # not linked to us
    done_by_app = update_resource(
        add(waiting, answer),
        qtask,
        status="completed",
        output=[{"type": {"text": "response"}, "valueReference": {"reference": "x"}}],
    )
    _, after = run(done_by_app, resource_event(task(done_by_app, QTASK)), ctx())
    assert code(task(after, QTASK)["businessStatus"]) == "answered"


def test_an_unanswered_questionnaire_ends_not_answered() -> None:
    _, waiting = asked()
    failed = update_resource(waiting, task(waiting, QTASK), status="failed")
    _, after = run(failed, resource_event(task(failed, QTASK)), ctx())
    assert code(task(after, QTASK)["businessStatus"]) == "not-answered"


def test_a_task_of_another_kind_or_off_the_table_is_reported() -> None:
    state: Referral = recommended()
    off = {**review(state), "status": "completed", "businessStatus": codes().concept("business-status", "booked")}
    assert task_states.problems(off) and "review" in task_states.problems(off)[0]
    assert task_states.problems({"resourceType": "Task", "code": {"text": "lab"}})
    assert task_states.problems(review(state)) == []


def test_the_published_example_tasks_are_rows_of_their_tables_and_the_booking_is_the_functions() -> None:
    from adapter.workflow.mmrpv.common import admin_ref, unit_ref

    examples = [json.loads(p.read_text()) for p in sorted((PROFILES / "example").glob("Task-*.json"))]
    assert len(examples) == len(task_state_tables())
    for example in examples:
        assert task_states.problems(example) == [], example["id"]
    [booking] = [e for e in examples if task_states.table_of(e).kind == "booking"]  # type: ignore[union-attr]
    assert booking["owner"]["reference"] == admin_ref()["reference"]
    assert booking["requester"]["reference"] == unit_ref()["reference"]
