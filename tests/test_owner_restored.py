"""No open Task of ours is left with nobody holding it (issue 23): a person's version without ``owner``
is answered with the owner the routine gives that kind, and a reason in words, never in silence."""

from __future__ import annotations

from datetime import timedelta
from functools import cache
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from adapter.mappings import HSA_SYSTEM, codes, directory
from adapter.workflow import confirmations as conf
from adapter.workflow.core import Context, Referral
from adapter.workflow.responsibility import open_tasks, responsible
from adapter.workflow.task_states import table_of
from adapter.workflow.tasks import own_value
from tests.support.workflow import (
    ANGELHOLM,
    LUND,
    NOW,
    assert_replay_plans_nothing,
    code,
    ctx,
    decide_as_reviewer,
    referral,
    resource_event,
    review,
    run,
    service_request,
    sr_event,
    update_resource,
)
from tests.test_mmrpv_steps import booked, discharged, forwarded, settle
from tests.test_review_refusal import LUND_REVIEWERS, recommended_at


def _removed(state: Referral, task: dict[str, Any]) -> Referral:
    """A person's PATCH that deletes ``owner`` from one of our Tasks."""
    return update_resource(state, task, owner=None)


def _no_owner_texts() -> set[str]:
    refused = conf.texts()["refused"]
    return {str(t) for key in ("no-owner", "no-owner-unit", "no-owner-patient") for t in refused[key].values()}


def _said(text: str) -> bool:
    """One of the no-owner texts, its ``{owner}`` filled with a unit's name."""
    return text in _no_owner_texts() or any(
        text == conf.template("refused", "no-owner-unit", lang, {"owner": u.name})
        for lang in ("sv", "en")
        for u in (directory().coordinator, directory().mmrpv, directory().mmrpv_admin, *directory().clinics)
    )


def test_a_review_whose_owner_is_removed_goes_back_to_the_clinic_visibly() -> None:
    start = recommended_at(LUND)
    before = _removed(start, review(start))
    plan, after = run(before, resource_event(review(before)), ctx())
    task = review(after)
    assert task["owner"]["reference"] == f"Organization/{LUND}"
    assert (task["status"], code(task["businessStatus"])) == ("received", "awaiting-assignment")
    assert "saknade ansvarig" in task["statusReason"]["text"] and "granskare" in task["statusReason"]["text"]
    assert task["note"][-1]["text"] == task["statusReason"]["text"]
    assert plan.counts.count("owner-restored") == 1 and not [c for c in plan.counts if c.endswith("-refused")]
    assert [o for o in task["output"] if code(o["type"]) == "recommendation"]  # the assessment stays
    assert responsible(after).ok
    assert_replay_plans_nothing(before, plan, after, resource_event(review(before)), ctx())
    # the pool's automatic assignment leaves it to the clinic, which assigns a reviewer: the reason goes
    assigned = update_resource(after, review(after), owner={"reference": f"PractitionerRole/{LUND_REVIEWERS[1]}"})
    plan, done = run(assigned, resource_event(review(assigned)), ctx())
    assert review(done)["owner"]["reference"] == f"PractitionerRole/{LUND_REVIEWERS[1]}"
    assert "statusReason" not in review(done)


def test_whatever_event_reads_the_state_next_mends_it_before_the_other_steps_build_on_it() -> None:
    """Seen on the sandbox: a late notification of the referral was the first to read the ownerless
    review, and the assessment step rewrote it ``awaiting-assignment`` with nobody holding it."""
    start = recommended_at(LUND)
    before = _removed(start, review(start))
    plan, after = run(before, sr_event(before), ctx())
    assert review(after)["owner"]["reference"] == f"Organization/{LUND}"
    assert plan.counts.count("owner-restored") == 1
    assert_replay_plans_nothing(before, plan, after, sr_event(before), ctx())


def test_a_review_at_a_clinic_without_a_pool_goes_back_to_that_clinic_in_english_too() -> None:
    start = recommended_at(ANGELHOLM)
    own = update_resource(start, review(start), owner={"reference": "PractitionerRole/SE2321000255-SMA1P7"})
    _, own = run(own, resource_event(review(own)), ctx())
    before = _removed(own, review(own))
    plan, after = run(before, resource_event(review(before)), ctx(language="en"))
    task = review(after)
    assert task["owner"]["reference"] == f"Organization/{ANGELHOLM}"
    assert "owner was removed" in task["statusReason"]["text"]
    assert plan.counts.count("owner-restored") == 1


def test_a_review_whose_clinic_nobody_can_tell_goes_to_the_referral_coordinator() -> None:
    """The fallback owner of issue 23: a review registered before it recorded its clinic, its owner
    removed, of a referral whose latest version names two clinics. Nothing says whose it is, so the
    region's referral coordinator holds it (never an open Task nobody holds), and says so."""
    start = recommended_at(LUND)
    task = review(start)
    unrecorded = update_resource(start, task, input=None)  # as registered before the record
    two = [{"identifier": {"system": HSA_SYSTEM, "value": c.hsa_id}} for c in directory().clinics[:2]]
    ambiguous = update_resource(unrecorded, unrecorded.service_request, performer=two)
    before = _removed(ambiguous, review(ambiguous))
    plan, after = run(before, resource_event(review(before)), ctx())
    coordinator = directory().coordinator
    task = review(after)
    assert task["owner"]["reference"] == f"Organization/{coordinator.hsa_id}"
    assert task["statusReason"]["text"] == conf.template("refused", "no-owner-unit", "sv", {"owner": coordinator.name})
    assert plan.counts.count("owner-restored") == 1 and responsible(after).ok
    assert_replay_plans_nothing(before, plan, after, resource_event(review(before)), ctx())


def test_an_owner_named_by_identifier_alone_is_an_owner() -> None:
    """A logical reference (a patient known by personnummer only) names an owner: nothing to restore,
    and the referral is held (else each restore would be written again on its own notification)."""
    state = stage("asked")
    questionnaire = next(t for t in open_tasks(state) if table_of(t) and table_of(t).kind == "questionnaire")
    logical = {"identifier": {"system": "http://electronichealth.se/identifier/personnummer", "value": "191212121212"}}
    before = update_resource(state, questionnaire, owner=logical)
    plan, _ = run(before, resource_event(questionnaire), ctx())
    assert "owner-restored" not in plan.counts and responsible(before).ok


# ---------------------------------------------------------------- every open Task of ours, every kind


def _held() -> Referral:
    sr = service_request(performer=[{"identifier": {"system": HSA_SYSTEM, "value": "SE2321000255-XXX9"}}])
    state = referral(sr)
    return settle(state, sr_event(state), Context(now=NOW))


def _asked() -> Referral:
    state = referral(service_request())
    return settle(state, sr_event(state), Context(now=NOW))


def _mmrsv() -> Referral:
    state = decide_as_reviewer(recommended_at(LUND), "MMRsv")
    return settle(state, resource_event(review(state)), Context(now=NOW))


def _follow_up_planned() -> Referral:
    return discharged(booked(forwarded()))


STAGES = {
    "held": _held,
    "asked": _asked,
    "recommended": lambda: recommended_at(LUND),
    "no-pool": lambda: recommended_at(ANGELHOLM),
    "mmrsv-booking": _mmrsv,
    "mmrpv-booking": forwarded,
    "booked": lambda: booked(forwarded()),
    "follow-up-planned": _follow_up_planned,
}


@cache
def stage(name: str) -> Referral:
    return STAGES[name]()


def test_the_stages_cover_every_kind_of_open_task() -> None:
    kinds = {table.kind for name in STAGES for t in open_tasks(stage(name)) if (table := table_of(t))}
    assert {"routing", "review", "questionnaire", "intake", "booking", "follow-up"} <= kinds, kinds


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(sorted(STAGES)), data=st.data(), lang=st.sampled_from(["sv", "en"]))
def test_any_open_task_left_without_owner_gets_it_back_with_a_reason(name: str, data: Any, lang: str) -> None:
    state = stage(name)
    candidates = open_tasks(state)
    assert candidates, name
    target = data.draw(st.sampled_from(candidates))
    before = _removed(state, target)
    context = Context(now=NOW + timedelta(days=1), options={"language": lang})
    plan, after = run(before, resource_event(before.get(f"Task/{target['id']}") or {}), context)
    task = after.get(f"Task/{target['id']}") or {}
    assert (task.get("owner") or {}).get("reference"), f"{name}: {own_value(target, 'task')} left without owner"
    assert _said(task["note"][-1]["text"]), task["note"][-1]["text"]
    assert plan.counts.count("owner-restored") == 1
    kind = codes().system("task-type")
    if any(c.get("system") == kind and c.get("code") == "referral-review" for c in target["code"]["coding"]):
        assert code(task["businessStatus"]) in ("awaiting-assignment", code(target["businessStatus"]))
    else:  # the rest keep where they stand; only the owner comes back
        assert (task["status"], code(task["businessStatus"])) == (target["status"], code(target["businessStatus"]))
        assert task["owner"] == target["owner"]
    assert responsible(after).ok == responsible(state).ok
    event = resource_event(before.get(f"Task/{target['id']}") or {})
    assert_replay_plans_nothing(before, plan, after, event, context, timers_allowed=True)
