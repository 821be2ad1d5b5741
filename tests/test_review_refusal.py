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
    ANGELHOLM,
    LUND,
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


def waiting_for_supplement() -> Referral:
    """A referral without its pain history: the review on hold for the referrer's supplement (KOM sent)."""
    state = referral(service_request(extension=ALL_MET, note=None))
    _, waiting = run(state, sr_event(state), ctx())
    assert code(review(waiting)["businessStatus"]) == "awaiting-supplement"
    return waiting


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
    waiting = waiting_for_supplement()
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


# ---------------------------------------------------------------- a reassignment outside the pool

LUND_REVIEWERS = ("SE2321000255-SML1R1", "SE2321000255-SML1R2", "SE2321000255-SML1R3")


def _hands_to(state: Referral, hsa_id: str, resource_type: str = "PractitionerRole") -> Referral:
    """A reviewer sets the review's owner by hand (a literal reference by HSA-id, as setup installs them)."""
    return update_resource(state, review(state), owner={"reference": f"{resource_type}/{hsa_id}"})


def _back_at_clinic(before: Referral, plan: Any, after: Referral, clinic: str, business: str) -> None:
    task = review(after)
    assert task["owner"]["reference"] == f"Organization/{clinic}"
    assert (task["status"], code(task["businessStatus"])) == ("received", business)
    assert "inte granskare vid mottagningen" in task["statusReason"]["text"]
    assert task["note"][-1]["text"] == task["statusReason"]["text"]
    assert plan.counts.count("reassignment-refused") == 1 and "decision-refused" not in plan.counts
    # the recommendation the adapter made stays for whoever the clinic gives it to
    assert [o for o in task["output"] if code(o["type"]) == "recommendation"]
    assert_replay_plans_nothing(before, plan, after, resource_event(review(before)), ctx())


def test_another_clinics_reviewer_as_owner_sends_the_review_back_to_the_clinic_visibly() -> None:
    before = _hands_to(recommended(), "SE2321000255-SMH1R1")  # Hässleholm's reviewer, not Lund's
    plan, after = run(before, resource_event(review(before)), ctx())
    _back_at_clinic(before, plan, after, LUND, "awaiting-assignment")
    assert "SMH1R1" not in review(after)["statusReason"]["text"]  # the technical detail is for the log
    assert any("SE2321000255-SMH1R1" in n and "not-in-pool" in n for n in plan.notes)


def test_a_practitioner_role_outside_the_directory_is_refused_at_a_clinic_with_a_pool() -> None:
    before = _hands_to(recommended(), "SE2321000255-XXX9R1")
    plan, after = run(before, resource_event(review(before)), ctx())
    _back_at_clinic(before, plan, after, LUND, "awaiting-assignment")


def test_the_clinic_given_it_back_is_not_overridden_by_the_pools_automatic_assignment() -> None:
    before = _hands_to(recommended(), "SE2321000255-SMH1R1")
    _, refused = run(before, resource_event(review(before)), ctx())
    # its own write comes back as a Task event, and the referrer's next version as a ServiceRequest one
    for event in (resource_event(review(refused)), sr_event(refused)):
        plan, again = run(refused, event, ctx())
        assert not plan.writes, plan.notes
        assert review(again)["owner"]["reference"] == f"Organization/{LUND}"


def test_the_clinic_assigning_a_reviewer_of_its_pool_clears_the_refusal() -> None:
    before = _hands_to(recommended(), "SE2321000255-SMH1R1")
    _, refused = run(before, resource_event(review(before)), ctx())
    assigned = _hands_to(refused, LUND_REVIEWERS[2])
    plan, after = run(assigned, resource_event(review(assigned)), ctx())
    task = review(after)
    assert task["owner"]["reference"] == f"PractitionerRole/{LUND_REVIEWERS[2]}"
    assert code(task["businessStatus"]) in ("assigned", "recommended")
    assert "statusReason" not in task
    assert not [c for c in plan.counts if c.endswith("-refused")]
    assert_replay_plans_nothing(assigned, plan, after, resource_event(review(assigned)), ctx())


def test_a_reassignment_within_the_pool_or_to_the_clinic_is_not_refused() -> None:
    for hsa_id, kind in ((LUND_REVIEWERS[1], "PractitionerRole"), (LUND, "Organization")):
        before = _hands_to(recommended(), hsa_id, kind)
        plan, after = run(before, resource_event(review(before)), ctx())
        assert not [c for c in plan.counts if c.endswith("-refused")]
        assert review(after)["owner"]["reference"] == f"{kind}/{hsa_id}"
        assert "statusReason" not in review(after)


def test_a_clinic_without_a_pool_may_assign_its_own_staff_but_not_another_clinics_reviewer() -> None:
    start = recommended_at(ANGELHOLM)
    own = _hands_to(start, "SE2321000255-SMA1P7")  # Ängelholm's own staff: the directory lists none
    plan, after = run(own, resource_event(review(own)), ctx())
    assert "reassignment-refused" not in plan.counts
    assert review(after)["owner"]["reference"] == "PractitionerRole/SE2321000255-SMA1P7"
    other = _hands_to(start, LUND_REVIEWERS[0])
    plan, after = run(other, resource_event(review(other)), ctx())
    task = review(after)
    assert task["owner"]["reference"] == f"Organization/{ANGELHOLM}"
    assert (task["status"], code(task["businessStatus"])) == (
        review(start)["status"],
        code(review(start)["businessStatus"]),
    )
    assert "inte granskare vid mottagningen" in task["statusReason"]["text"]
    assert plan.counts.count("reassignment-refused") == 1
    assert_replay_plans_nothing(other, plan, after, resource_event(review(other)), ctx())


def test_a_review_waiting_for_the_supplement_keeps_waiting_when_sent_back_to_the_clinic() -> None:
    waiting = waiting_for_supplement()
    before = _hands_to(waiting, "SE2321000255-SMH1R2")
    plan, after = run(before, resource_event(review(before)), ctx())
    task = review(after)
    assert (task["status"], code(task["businessStatus"])) == ("on-hold", "awaiting-supplement")
    assert task["owner"]["reference"] == f"Organization/{LUND}"
    assert plan.counts.count("reassignment-refused") == 1


def recommended_at(clinic: str) -> Referral:
    state = referral(service_request(extension=ALL_MET, clinic=clinic))
    _, after = run(state, sr_event(state), ctx())
    return after
