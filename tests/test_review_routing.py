"""Recognise, then route or answer: an MMR referral that cannot be routed to a clinic of the routine is
held by the region's referral coordinator, the referrer is told why, and a corrected version proceeds.

Issue 23: a referral with a mistyped receiving clinic used to disappear without a word.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapter.mappings import HSA_SYSTEM, codes, directory
from adapter.workflow.core import HELD, Referral
from adapter.workflow.steps import ROUTINE
from tests.support.workflow import (
    ALL_MET,
    LUND,
    PERSONNUMMER,
    assert_replay_plans_nothing,
    assessment,
    code,
    ctx,
    decide_as_reviewer,
    messages,
    of_type,
    referral,
    resource_event,
    review,
    run,
    service_request,
    sr_event,
    task,
    update_resource,
)

HELD_TASK = "R-1-referral-routing"


def _performer(hsa: str) -> dict:
    return {"reference": f"Organization/{hsa}", "identifier": {"system": HSA_SYSTEM, "value": hsa}}


UNROUTABLE = {
    "missing": {"performer": None},
    "unknown": {"performer": [_performer("SE2321000255-XXX9")]},
    "ambiguous": {"performer": [_performer(LUND), _performer("SE2321000255-SMH1")]},
    "not-a-clinic": {"performer": [_performer("SE2321000255-MMRPV")]},
}


@pytest.mark.parametrize("case", list(UNROUTABLE))
def test_an_unroutable_referral_is_held_by_the_coordinator_and_the_referrer_is_told(case: str) -> None:
    state = referral(service_request(**UNROUTABLE[case]))
    plan, after = run(state, sr_event(state), ctx())
    held = task(after, HELD_TASK)
    coordinator = directory().coordinator
    assert held["owner"]["identifier"]["value"] == coordinator.hsa_id
    assert (held["status"], code(held["businessStatus"])) == ("on-hold", "awaiting-correction")
    assert held["focus"] == {"reference": "ServiceRequest/sr1"}
    why = held["statusReason"]["text"]
    assert why and "191212121212" not in why and "performer" not in why  # clinical words, no patient data
    note = messages(after)[f"R-1-referral-held-referrer-{case}"]
    assert note["recipient"] == [{"reference": "PractitionerRole/ref1"}]
    assert why in note["payload"][0]["contentString"]
    assert code(note["category"][0]) == "referral-held"
    assert not of_type(after, "Task", "R-1-referral-review")  # nobody reviews it at a wrong clinic
    # Counted as its own outcome, logged at WARNING (the shell reads the marker), never "ignored".
    assert any(n.endswith(HELD) for n in plan.notes) and "referral-held" in plan.counts
    assert not any(PERSONNUMMER in n or "191212121212" in n for n in plan.notes)
    assert_replay_plans_nothing(state, plan, after, sr_event(state), ctx())


def test_a_corrected_referral_proceeds_and_the_held_task_is_closed() -> None:
    state = referral(service_request(**UNROUTABLE["unknown"]))
    _, held = run(state, sr_event(state), ctx())
    corrected = update_resource(held, held.service_request, performer=[_performer(LUND)])
    plan, after = run(corrected, sr_event(corrected), ctx())
    closed = task(after, HELD_TASK)
    assert (closed["status"], code(closed["businessStatus"])) == ("completed", "routed")
    assert review(after)["owner"]["reference"].startswith("PractitionerRole/")
    assert not any(n.endswith(HELD) for n in plan.notes)
    assert_replay_plans_nothing(corrected, plan, after, sr_event(corrected), ctx(), timers_allowed=True)


def test_a_held_referral_that_is_revoked_closes_its_held_task() -> None:
    state = referral(service_request(**UNROUTABLE["missing"]))
    _, held = run(state, sr_event(state), ctx())
    revoked = update_resource(held, held.service_request, status="revoked")
    _, after = run(revoked, sr_event(revoked), ctx())
    closed = task(after, HELD_TASK)
    assert (closed["status"], code(closed["businessStatus"])) == ("cancelled", "revoked")


def test_a_second_mistake_is_told_again_on_the_same_task() -> None:
    state = referral(service_request(**UNROUTABLE["unknown"]))
    _, held = run(state, sr_event(state), ctx())
    wrong_again = update_resource(held, held.service_request, performer=None)
    _, after = run(wrong_again, sr_event(wrong_again), ctx())
    assert len(of_type(after, "Task", HELD_TASK)) == 1
    assert task(after, HELD_TASK)["statusReason"]["text"] != task(held, HELD_TASK)["statusReason"]["text"]
    assert {"R-1-referral-held-referrer-unknown", "R-1-referral-held-referrer-missing"} <= set(messages(after))


@pytest.mark.parametrize("reason", ["Patienten har flyttat till annan region", None])
def test_the_coordinator_closing_a_held_referral_tells_the_referrer_it_reached_no_clinic(reason: str | None) -> None:
    """Issue 23, a case that fell silent: the coordinator closes the held Task by hand."""
    state = referral(service_request(**UNROUTABLE["unknown"]))
    _, held = run(state, sr_event(state), ctx())
    task_ = task(held, HELD_TASK)
    closed = update_resource(held, task_, status="cancelled", statusReason={"text": reason} if reason else None)
    event = resource_event(task(closed, HELD_TASK))
    plan, after = run(closed, event, ctx())
    notice = messages(after)["R-1-referral-closed-referrer-coordinator"]
    assert notice["recipient"] == [{"reference": "PractitionerRole/ref1"}]
    assert code(notice["category"][0]) == "referral-closed"
    text = notice["payload"][0]["contentString"]
    assert "utan att ha skickats till någon mottagning" in text and directory().coordinator.name in text
    assert (reason or "ingen orsak angiven") in text
    assert task_["statusReason"]["text"] not in text  # our own held text is no reason the coordinator gave
    assert code(task(after, HELD_TASK)["businessStatus"]) == "closed"
    assert_replay_plans_nothing(closed, plan, after, event, ctx())


def test_a_new_version_naming_no_clinic_leaves_the_review_where_it_is_and_tells_the_referrer() -> None:
    """Issue 23, a case that fell silent: a referral under review gets a version with an unknown clinic.
    The review stays at the clinic that has it; the referrer is told, once per version, that the change
    was not applied; no supplement request is made up for it (the consent still covers that clinic)."""
    state = referral(service_request(extension=ALL_MET))
    _, reviewed = run(state, sr_event(state), ctx())
    before = review(reviewed)
    changed = update_resource(reviewed, reviewed.service_request, **UNROUTABLE["unknown"])
    plan, after = run(changed, sr_event(changed), ctx())
    assert review(after) == before  # same owner, same state: nothing reverted, nothing moved
    notice = messages(after)["R-1-performer-unchanged-referrer-v2"]
    text = notice["payload"][0]["contentString"]
    assert "granskas redan av Smärtrehabilitering SUS Lund" in text and "har inte genomförts" in text
    assert "XXX9" not in text
    assert not [k for k in messages(after) if "-KOM-" in k] and not of_type(after, "Task", HELD_TASK)
    assert plan.counts == ("performer-unchanged",)
    assert_replay_plans_nothing(changed, plan, after, sr_event(changed), ctx())
    again = update_resource(after, after.service_request, performer=None)  # version 3, wrong again
    _, later = run(again, sr_event(again), ctx())
    assert "R-1-performer-unchanged-referrer-v3" in messages(later)
    assert not [k for k in messages(later) if "-KOM-" in k]  # one mistake, one answer: not also a KOM
    # and the reviewer decides as ever, at that clinic
    decided = decide_as_reviewer(later, "MMRsv")
    _, done = run(decided, resource_event(review(decided)), ctx())
    assert code(review(done)["businessStatus"]) == "decided"


def test_a_new_version_naming_another_clinic_leaves_the_review_where_it_is_and_tells_the_referrer() -> None:
    """Issue 23: a referral under review at Lund gets a version naming Hässleholm, a clinic of the routine.
    The review stays at Lund, the clinic it records it was registered at (its work, the assessment and
    any request to the patient, stays with who asked); the referrer is told the change was not applied
    and how to move it; Lund's reviewer decides as ever, and a Lund reviewer is no outsider to refuse."""
    state = referral(service_request(extension=ALL_MET))
    _, reviewed = run(state, sr_event(state), ctx())
    before = review(reviewed)
    assert [i["valueReference"]["reference"] for i in before["input"]] == [f"Organization/{LUND}"]
    changed = update_resource(reviewed, reviewed.service_request, performer=[_performer("SE2321000255-SMH1")])
    plan, after = run(changed, sr_event(changed), ctx())
    assert review(after) == before
    text = messages(after)["R-1-performer-unchanged-referrer-v2"]["payload"][0]["contentString"]
    assert "granskas redan av Smärtrehabilitering SUS Lund" in text and "flyttas inte till en annan mottagning" in text
    assert plan.counts == ("performer-unchanged",) and not of_type(after, "Task", HELD_TASK)
    assert_replay_plans_nothing(changed, plan, after, sr_event(changed), ctx())
    # a later Task event sees the same conflict and keeps to it: nothing moves, nothing is refused
    touched = update_resource(after, review(after), note=[{"text": "tittar på den"}])
    plan, later = run(touched, resource_event(review(touched)), ctx())
    assert review(later)["owner"] == before["owner"] and not [c for c in plan.counts if c.endswith("-refused")]
    decided = decide_as_reviewer(later, "MMRsv")
    _, done = run(decided, resource_event(review(decided)), ctx())
    assert code(review(done)["businessStatus"]) == "decided"
    booking = task(done, "R-1-booking-mmrsv")
    assert booking["owner"]["reference"] == f"Organization/{LUND}"


def _closed_review(state: Referral, how: str) -> Referral:
    """The review closed by the reviewer: decided ``MMRsv`` or ``MMRpv`` (booked at the clinic, or
    forwarded to the MMRpv unit), or ``rejected``; the routine's answer to it applied."""
    if how == "rejected":
        closed = update_resource(
            state,
            review(state),
            status="rejected",
            businessStatus=codes().concept("business-status", "rejected"),
            statusReason={"text": "Inte aktuellt för MMR."},
        )
    else:
        closed = decide_as_reviewer(state, how)
    _, after = run(closed, resource_event(review(closed)), ctx())
    return after


@pytest.mark.parametrize("how", ["MMRsv", "MMRpv", "rejected"])
@pytest.mark.parametrize("case", ["another-clinic", "unknown"])
def test_a_new_version_naming_another_receiver_after_the_review_is_not_applied_and_the_referrer_is_told(
    how: str, case: str
) -> None:
    """Issue 23, a case that fell silent: the review is over (booked at the clinic, forwarded to the
    MMRpv unit, or rejected) when the referrer sends a version naming another clinic, or an unknown
    one. Nothing moves (the decision and what followed from it stand), and the referrer is told, once
    per version, that the change was not applied and whom to ask instead."""
    state = referral(service_request(extension=ALL_MET))
    _, reviewed = run(state, sr_event(state), ctx())
    closed = _closed_review(reviewed, how)
    tasks = of_type(closed, "Task")
    performer = [_performer("SE2321000255-SMH1")] if case == "another-clinic" else UNROUTABLE["unknown"]["performer"]
    changed = update_resource(closed, closed.service_request, performer=performer)
    plan, after = run(changed, sr_event(changed), ctx())
    assert of_type(after, "Task") == tasks  # no Task moved, reopened, held or made
    notice = messages(after)["R-1-performer-unchanged-referrer-v2"]
    assert notice["recipient"] == [{"reference": "PractitionerRole/ref1"}]
    text = notice["payload"][0]["contentString"]
    assert "redan bedömd av Smärtrehabilitering SUS Lund" in text and "har inte genomförts" in text
    assert "XXX9" not in text and "Hässleholm" not in text
    assert plan.counts == ("performer-unchanged",)
    assert_replay_plans_nothing(changed, plan, after, sr_event(changed), ctx())


def test_a_review_handed_to_another_clinics_reviewer_is_still_refused_once_the_referral_names_that_clinic() -> None:
    """The record keeps the two look-alike mistakes apart: after the referrer's change is not applied, a
    reviewer handing the review to Hässleholm's reviewer is still refused, back to Lund."""
    state = referral(service_request(extension=ALL_MET))
    _, reviewed = run(state, sr_event(state), ctx())
    changed = update_resource(reviewed, reviewed.service_request, performer=[_performer("SE2321000255-SMH1")])
    _, after = run(changed, sr_event(changed), ctx())
    handed = update_resource(after, review(after), owner={"reference": "PractitionerRole/SE2321000255-SMH1R1"})
    plan, back = run(handed, resource_event(review(handed)), ctx())
    assert review(back)["owner"]["reference"] == f"Organization/{LUND}"
    assert plan.counts.count("reassignment-refused") == 1


def test_a_referral_that_is_not_mmr_is_still_ignored_cheaply() -> None:
    other = service_request(category=[{"coding": [{"system": "http://snomed.info/sct", "code": "1234"}]}], code=None)
    other.pop("performer")
    state = referral(other)
    plan = ROUTINE.decide(state, sr_event(state), ctx())
    assert not plan.writes and not any(n.endswith(HELD) for n in plan.notes)


def test_recognised_by_code_alone_so_subscribed_on_code_too() -> None:
    """The classic Subscriptions filter on one criteria each: one on category, one on code."""
    from adapter.mappings import load

    c = codes()
    criteria = [c.fill(s["criteria"]) for s in load("subscriptions")["subscriptions"]]
    assert f"ServiceRequest?category={c.referral_category['system']}|{c.referral_category['code']}" in criteria
    assert f"ServiceRequest?code={c.referral_code['system']}|{c.referral_code['code']}" in criteria
    by_code = service_request(category=None)
    state = referral(by_code)
    _, after = run(state, sr_event(state), ctx())
    assert review(after)


# ---------------------------------------------------------------- property: proceed, or one visible refusal

PERFORMERS = {
    "lund": [_performer(LUND)],  # as the valid referral has it
    "missing": None,
    "unknown": [_performer("SE2321000255-XXX9")],
    "two clinics": [_performer(LUND), _performer("SE2321000255-SMH1")],
    "mmrpv unit": [_performer("SE2321000255-MMRPV")],
    "hassleholm": [_performer("SE2321000255-SMH1")],  # a clinic, but the patient's consent is for Lund
}
RESULTS = ("met", "not-met", "unknown", "yes", "MET", "", "uppfyllt")
DROPS = ("code", "category", "identifier", "note", "reasonCode")


@settings(max_examples=80, deadline=None)
@given(
    performer=st.sampled_from(sorted(PERFORMERS)),
    results=st.lists(st.sampled_from(RESULTS), min_size=4, max_size=4),
    twice=st.booleans(),
    drops=st.sets(st.sampled_from(DROPS), max_size=2),
)
def test_a_mutated_referral_either_proceeds_or_gets_exactly_one_visible_refusal(
    performer: str, results: list[str], twice: bool, drops: set[str]
) -> None:
    """Issue 23: for random mutations of a valid referral, the review proceeds, or the referrer is told
    once, by one refusal (held for a clinic, or a supplement request): never neither, never both.
    The oracle is independent of the routine: which mutations make a referral unroutable, or incomplete."""
    if {"code", "category"} <= drops:
        return  # neither code nor category: no MMR referral at all, none of the routine's business
    criteria = ("stable-diagnosis", "limited-psychiatric-comorbidity", "work-status", "group-treatment")
    extension = [assessment(c, r) for c, r in zip(criteria, results, strict=True)]
    if twice:
        extension.append(assessment(criteria[0], results[0]))
    sr = service_request(extension=extension, performer=PERFORMERS[performer], **{d: None for d in drops})
    state = referral(sr)
    plan, after = run(state, sr_event(state), ctx())

    key = "R-1" if "identifier" not in drops else "sr-sr1"
    held = of_type(after, "Task", f"{key}-referral-routing")
    held_notices = [k for k in messages(after) if "-referral-held-" in k]
    koms = [k for k in messages(after) if "-KOM-" in k]
    reviews = of_type(after, "Task", f"{key}-referral-review")
    refusals = len(held) + len(koms)

    unroutable = performer in ("missing", "unknown", "two clinics", "mmrpv unit")
    incomplete = (
        performer == "hassleholm"
        or bool(drops)
        or twice
        or any(r not in ("met", "not-met", "unknown") for r in results)
    )
    if unroutable:
        assert held and len(held_notices) == 1 and not reviews and not koms, (held, koms, reviews)
    elif incomplete:
        assert koms == [f"{key}-KOM-referrer-1"] and not held, (koms, held, plan.notes)
        assert reviews[0]["status"] == "on-hold"
    else:
        assert refusals == 0 and reviews, plan.notes
        waiting = code(reviews[0]["businessStatus"])
        assert reviews[0]["status"] != "on-hold" or waiting == "awaiting-patient", waiting  # asking the patient
    assert refusals <= 1  # never both
    assert refusals == 1 or (reviews and not held)  # never neither
    assert_replay_plans_nothing(state, plan, after, sr_event(state), ctx())
