"""Timers are derived state: what is due later follows from what the server holds (pure tests).

``Routine.due_later`` asks each timer's steps what they would do now. These tests walk the routine
and check, at each stage, that the derived timers are the ones the stage needs, and that firing
whatever is due makes progress: no timer stays due for ever (which would fire on every beat).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from adapter.workflow.core import Context, Referral, Timer
from adapter.workflow.steps import ROUTINE
from tests.support.workflow import NOW, as_loaded, referral, service_request, sr_event, timer_event
from tests.test_mmrpv_steps import at, booked, completed_programme, discharged, forwarded, settle


def names(timers: tuple[Timer, ...]) -> set[str]:
    return {t.name for t in timers}


def fire_until_quiet(state: Referral, ctx: Context, rounds: int = 8) -> Referral:
    """Fire every derived timer already due, as beat would, until none is: it must end."""
    for _ in range(rounds):
        due = [t for t in ROUTINE.due_later(as_loaded(state), ctx) if t.due <= ctx.now]
        if not due:
            return state
        for timer in due:
            state = settle(state, timer_event(state, timer.name), ctx)
    raise AssertionError(f"timers stay due however often they fire: {names(tuple(due))}")


def arrived() -> Referral:
    state = referral(service_request())
    return settle(state, sr_event(state), Context(now=NOW))


def test_an_arrived_referral_needs_its_overdue_check_at_the_review_deadline() -> None:
    state = arrived()
    [overdue] = [t for t in ROUTINE.due_later(as_loaded(state), Context(now=NOW)) if t.name == "review-overdue"]
    [review] = [
        r
        for r in state.resources.values()
        if r.get("resourceType") == "Task" and r["code"]["coding"][0]["code"] == "referral-review"
    ]
    assert overdue.due == datetime.fromisoformat(review["restriction"]["period"]["end"])


def test_once_the_overdue_notice_is_out_no_overdue_check_is_needed() -> None:
    state = arrived()
    late = Context(now=NOW + timedelta(days=10))
    state = fire_until_quiet(state, late)
    assert "review-overdue" not in names(ROUTINE.due_later(as_loaded(state), late))


def test_each_mmrpv_stage_derives_the_timer_it_waits_on() -> None:
    state = forwarded()
    assert "mmrpv-booking-reminder" in names(ROUTINE.due_later(as_loaded(state), Context(now=NOW)))
    state = booked(state)
    assert "mmrpv-programme-start" in names(ROUTINE.due_later(as_loaded(state), Context(now=NOW + timedelta(days=3))))
    state = completed_programme(state)
    assert "mmrpv-discharge-reminder" in names(ROUTINE.due_later(as_loaded(state), at(2026, 7, 1, 9, 0)))
    state = discharged(state)
    assert "mmrpv-follow-up-due" in names(ROUTINE.due_later(as_loaded(state), at(2026, 7, 2, 12, 0)))


def test_firing_what_is_due_always_makes_progress_at_every_stage() -> None:
    stages = {"arrived": arrived(), "forwarded": forwarded()}
    stages["booked"] = booked(stages["forwarded"])
    stages["completed"] = completed_programme(stages["booked"])
    stages["discharged"] = discharged(stages["completed"])
    for name, state in stages.items():
        start = at(2026, 7, 3, 9, 0).now if name == "discharged" else NOW
        for later in (timedelta(days=2), timedelta(days=40), timedelta(days=800)):
            fire_until_quiet(state, Context(now=start + later))
