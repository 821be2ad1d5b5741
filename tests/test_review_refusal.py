"""A reviewer's invalid input is refused visibly (issue 23): the Task stays with that reviewer at the state
it had, with a statusReason and a note in the clinician's words; never a silent revert."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from adapter.mappings import codes
from adapter.workflow.core import Referral
from adapter.workflow.review.refusal import refused_texts
from tests.support.workflow import (
    ALL_MET,
    assert_replay_plans_nothing,
    code,
    ctx,
    referral,
    resource_event,
    review,
    run,
    service_request,
    sr_event,
    update_resource,
)
from tests.test_review_decision import recommended


def _writes(state: Referral, level_code: str | None, business: str = "decided", system: str | None = None) -> Referral:
    """The reviewer's PATCH of the cookbook's "Decide", with whatever they typed."""
    c = codes()
    current = review(state)
    output = list(current.get("output") or ())
    if level_code is not None:
        coding = {"system": system or c.system("level"), "code": level_code}
        output.append({"type": c.concept("task-parameter", "decision"), "valueCodeableConcept": {"coding": [coding]}})
    return update_resource(state, current, output=output, businessStatus=c.concept("business-status", business))


def _refused(before: Referral, after: Referral) -> bool:
    return review(after).get("statusReason", {}).get("text") in refused_texts()


def _check_refusal(before: Referral, plan: Any, after: Referral, problem_words: str) -> None:
    was = review(before)
    task = review(after)
    assert (task["status"], code(task["businessStatus"])) == ("received", "recommended")
    assert task["owner"] == was["owner"]  # stays with that reviewer
    assert problem_words in task["statusReason"]["text"] and "MMRpv" in task["statusReason"]["text"]
    assert task["note"][-1]["text"] == task["statusReason"]["text"]
    assert not [o for o in task.get("output") or () if code(o["type"]) == "decision"]
    assert plan.counts.count("decision-refused") == 1
    assert any("refused" in n for n in plan.notes)
    event = resource_event(review(before))
    assert_replay_plans_nothing(before, plan, after, event, ctx())


def test_an_unknown_level_code_is_refused_visibly() -> None:
    before = _writes(recommended(), "MMRxx")
    plan, after = run(before, resource_event(review(before)), ctx())
    _check_refusal(before, plan, after, "nivå finns inte")
    assert "MMRxx" not in review(after)["statusReason"]["text"]  # the technical detail is for the log
    assert any("MMRxx" in n for n in plan.notes)


def test_a_wrongly_cased_level_code_is_refused_visibly() -> None:
    before = _writes(recommended(), "mmrpv")
    plan, after = run(before, resource_event(review(before)), ctx())
    _check_refusal(before, plan, after, "skrivet exakt så")


def test_decided_without_a_decision_is_refused_visibly() -> None:
    before = _writes(recommended(), None)
    plan, after = run(before, resource_event(review(before)), ctx())
    _check_refusal(before, plan, after, "ingen nivå angiven")


def test_a_decision_on_an_incomplete_referral_is_refused_and_it_keeps_waiting_for_the_supplement() -> None:
    state = referral(service_request(extension=ALL_MET, note=None))
    _, waiting = run(state, sr_event(state), ctx())
    assert code(review(waiting)["businessStatus"]) == "awaiting-supplement"
    before = _writes(waiting, "MMRsv")
    plan, after = run(before, resource_event(review(before)), ctx())
    task = review(after)
    assert (task["status"], code(task["businessStatus"])) == ("on-hold", "awaiting-supplement")
    assert "ofullständig" in task["statusReason"]["text"]
    assert not [o for o in task.get("output") or () if code(o["type"]) == "decision"]
    assert not [w for w in plan.writes if code(w.resource.get("code")) == "booking"]


def test_the_corrected_decision_proceeds_and_clears_the_refusal() -> None:
    before = _writes(recommended(), "MMRxx")
    _, refused = run(before, resource_event(review(before)), ctx())
    corrected = _writes(refused, "MMRsv")
    _, after = run(corrected, resource_event(review(corrected)), ctx())
    task = review(after)
    assert (task["status"], code(task["businessStatus"])) == ("completed", "decided")
    assert "statusReason" not in task


LEVELS = ("MMRpv", "MMRsv")


@settings(max_examples=60, deadline=None)
@given(
    level=st.sampled_from(LEVELS),
    mutation=st.sampled_from(("none", "swapcase", "lower", "suffix", "drop", "system", "random")),
    junk=st.text(min_size=0, max_size=6),
    business=st.sampled_from(("decided", "recommended")),
)
def test_any_mutation_of_a_valid_decision_either_proceeds_or_is_refused_once(
    level: str, mutation: str, junk: str, business: str
) -> None:
    """Never neither (a silent revert), never both (proceeding and refusing)."""
    typed: str | None = {
        "none": level,
        "swapcase": level.swapcase(),
        "lower": level.lower(),
        "suffix": level + (junk or "x"),
        "drop": None,
        "system": level,
        "random": junk,
    }[mutation]
    system = "http://example.org/levels" if mutation == "system" else None
    start = recommended()
    before = _writes(start, typed, business, system)
    plan, after = run(before, resource_event(review(before)), ctx())
    task = review(after)
    proceeded = task["status"] == "completed"
    refused = _refused(before, after)
    silent = not proceeded and not refused
    if mutation == "drop" and business == "recommended":
        assert not plan.writes  # nothing typed, nothing claimed: nothing to answer
        return
    assert proceeded != refused, (typed, business, task["status"], code(task["businessStatus"]))
    assert not silent
    assert plan.counts.count("decision-refused") == (1 if refused else 0)
