"""The patient's questionnaires per moment (mappings/questionnaires.yaml): exactly what is configured is asked.

The register's (NRS) forms are licensed and known only by canonical; here a made-up one stands in.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from adapter.conformance.outcome import has_errors
from adapter.conformance.validate import validate_resource
from adapter.mappings import load
from adapter.workflow.core import Context, Event, Referral
from adapter.workflow.questionnaires import DUE_TIMER, companions, configured
from tests.support.workflow import (
    NOW,
    add,
    as_loaded,
    code,
    messages,
    referral,
    resource_event,
    response,
    review,
    run,
    sr_event,
    task,
    timer_event,
    update_resource,
)
from tests.test_mmrpv_steps import STHLM, appointment, forwarded, settle
from tests.test_review_questionnaire import QTASK

INTAKE = "https://mmr-adapter.se/fhir/Questionnaire/mmr-intake|0.1.0"
FOLLOW = "https://mmr-adapter.se/fhir/Questionnaire/mmr-follow-up|0.1.0"
NRS_BEFORE = "https://nrs.example.se/fhir/Questionnaire/nrs-fore|2024"
NRS_AFTER = "https://nrs.example.se/fhir/Questionnaire/nrs-efter|2024"


def with_forms(now: datetime = NOW, **moments: list[str]) -> Context:
    forms: dict[str, list[str]] = {"review": [INTAKE], "first-visit": [], "after-programme": [], "follow-up": [FOLLOW]}
    forms.update({k.replace("_", "-"): v for k, v in moments.items()})
    return Context(now=now, options={"questionnaires": forms})


def nrs_answer(canonical: str, qid: str = "nrs1", authored: str = "2026-03-03T10:00:00+01:00") -> dict[str, Any]:
    return {
        "resourceType": "QuestionnaireResponse",
        "id": qid,
        "meta": {"versionId": "1"},
        "status": "completed",
        "questionnaire": canonical,
        "basedOn": [{"reference": "ServiceRequest/sr1"}],
        "subject": {"reference": "Patient/p1"},
        "authored": authored,
    }


def test_the_defaults_are_the_projects_own_forms() -> None:
    moments = load("questionnaires")["moments"]
    assert moments["review"] == [INTAKE] and moments["follow-up"] == [FOLLOW]
    assert not moments["first-visit"] and not moments["after-programme"]
    assert configured(Context(now=NOW), "review") == (INTAKE,)


def test_the_review_asks_every_configured_form_and_waits_only_for_the_criteria_form() -> None:
    ctx = with_forms(review=[INTAKE, NRS_BEFORE])
    state = referral()
    _, asked = run(state, sr_event(state), ctx)
    nrs = task(asked, "R-1-complete-questionnaire-nrs-fore")
    assert nrs["input"][0]["valueCanonical"] == NRS_BEFORE and nrs["owner"] == {"reference": "Patient/p1"}
    assert nrs["partOf"] == [{"reference": f"Task/{review(asked)['id']}"}]
    assert not has_errors(validate_resource(nrs))  # an mmr-questionnaire-task like the intake form's
    assert task(asked, QTASK)["status"] == "requested" and review(asked)["status"] == "on-hold"
    assert len([m for k, m in messages(asked).items() if "questionnaire-request" in k]) == 1  # one notice

    answer = nrs_answer(NRS_BEFORE)
    _, linked = run(add(asked, answer), resource_event(answer), ctx)
    done = task(linked, "R-1-complete-questionnaire-nrs-fore")
    assert done["status"] == "completed" and code(done["businessStatus"]) == "answered"
    assert done["output"][0]["valueReference"] == {"reference": "QuestionnaireResponse/nrs1"}
    assert review(linked)["status"] == "on-hold"  # still waiting for the criteria form, not for this one


def test_an_open_register_form_does_not_hold_the_review_and_closes_with_it() -> None:
    from tests.support.workflow import MMRPV_ANSWERS

    ctx = with_forms(review=[INTAKE, NRS_BEFORE])
    state = referral()
    _, asked = run(state, sr_event(state), ctx)
    intake_answer = response(MMRPV_ANSWERS, based_on=f"Task/{task(asked, QTASK)['id']}")
    _, resumed = run(add(asked, intake_answer), resource_event(intake_answer), ctx)
    assert code(review(resumed)["businessStatus"]) == "recommended"
    assert task(resumed, "R-1-complete-questionnaire-nrs-fore")["status"] == "requested"
    rejected = update_resource(resumed, review(resumed), status="rejected")
    _, closed = run(rejected, resource_event(review(rejected)), ctx)
    nrs = task(closed, "R-1-complete-questionnaire-nrs-fore")
    assert nrs["status"] == "cancelled" and code(nrs["businessStatus"]) == "closed"


def test_without_the_criteria_form_the_review_asks_the_others_and_does_not_wait() -> None:
    ctx = with_forms(review=[NRS_BEFORE])
    state = referral()
    _, asked = run(state, sr_event(state), ctx)
    assert [t for t in asked.all("Task") if "mmr-intake" in str(t.get("identifier"))] == []
    assert task(asked, "R-1-complete-questionnaire-nrs-fore")["status"] == "requested"
    assert review(asked)["status"] != "on-hold"
    assert any("questionnaire-request" in k for k in messages(asked))
    again, _ = run(asked, sr_event(asked), ctx)
    assert not [
        w
        for w in again.writes
        if w.resource.get("resourceType") == "Task" and "nrs-fore" in str(w.resource.get("identifier"))
    ]  # asked once


def test_an_unanswered_register_form_fails_at_its_due_date_on_its_timer() -> None:
    ctx = with_forms(review=[INTAKE, NRS_BEFORE])
    state = referral()
    plan, asked = run(state, sr_event(state), ctx)
    nrs = task(asked, "R-1-complete-questionnaire-nrs-fore")
    due = datetime.fromisoformat(nrs["restriction"]["period"]["end"])
    assert any(t.name == DUE_TIMER and t.due == due for t in plan.timers)
    early, _ = run(asked, timer_event(asked, DUE_TIMER), with_forms(due.replace(hour=9), review=[INTAKE, NRS_BEFORE]))
    assert any(t.name == DUE_TIMER and t.due == due for t in early.timers)
    _, late = run(asked, timer_event(asked, DUE_TIMER), with_forms(due, review=[INTAKE, NRS_BEFORE]))
    failed = task(late, "R-1-complete-questionnaire-nrs-fore")
    assert failed["status"] == "failed" and code(failed["businessStatus"]) == "not-answered"
    assert len(companions(late)) == 1


def at_unit(now: datetime) -> Context:
    return with_forms(now, first_visit=[NRS_BEFORE], after_programme=[NRS_AFTER])


def test_the_unit_asks_the_first_visit_forms_once_the_programme_starts_and_the_after_forms_at_its_end() -> None:
    state = forwarded()
    state = add(state, appointment("a1", "SE2321000255-MMRPV-HBG", "2026-04-07T09:00:00+02:00"))
    before = at_unit(datetime(2026, 3, 5, 10, 0, tzinfo=STHLM))
    state = settle(state, resource_event(state.get("Appointment/a1") or {}), before)
    assert not companions(state)  # booked, not yet started
    started = at_unit(datetime(2026, 4, 7, 9, 0, tzinfo=STHLM))
    state = settle(state, Event("timer", "ServiceRequest", "sr1", timer="mmrpv-programme-start"), started)
    first = task(state, "R-1-complete-questionnaire-nrs-fore-first-visit")
    intake = task(state, "R-1-mmrpv-intake")
    assert first["status"] == "requested" and first["partOf"] == [{"reference": f"Task/{intake['id']}"}]
    assert first["requester"]["reference"] == "Organization/SE2321000255-MMRPV"
    plan_ = next(r for r in state.all("CarePlan"))
    state = update_resource(state, plan_, status="completed", period={**plan_["period"], "end": "2026-06-29"})
    over = at_unit(datetime(2026, 6, 30, 8, 0, tzinfo=STHLM))
    state = settle(state, resource_event(next(r for r in state.all("CarePlan"))), over)
    after = task(state, "R-1-complete-questionnaire-nrs-efter-after-programme")
    assert after["input"][0]["valueCanonical"] == NRS_AFTER
    assert len(companions(state)) == 2
    assert not decide_writes(state, over)


def decide_writes(state: Referral, ctx: Context) -> list[str]:
    from adapter.workflow.steps import ROUTINE

    return [w.key for w in ROUTINE.decide(as_loaded(state), sr_event(state), ctx).writes]
