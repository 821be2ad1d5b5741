"""Malformed referrals and odd resources never raise: they are ignored or answered with KOM, with a note."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapter.mappings import codes
from adapter.workflow.core import Event, Referral
from adapter.workflow.steps import ROUTINE
from adapter.workflow.tasks import find_own, own_value
from tests.support.workflow import (
    add,
    apply,
    ctx,
    messages,
    referral,
    resource_event,
    review,
    service_request,
    sr_event,
    timer_event,
)

ODD_REFERRALS: dict[str, dict[str, Any]] = {
    "no subject": {"subject": None},
    "subject not loaded": {"subject": {"reference": "Patient/gone"}},
    "contained subject": {"subject": {"reference": "#p"}},
    "requester not loaded": {"requester": {"reference": "PractitionerRole/gone"}},
    "requester by identifier only": {
        "requester": {"identifier": {"system": "urn:oid:1.2.752.29.4.19", "value": "SE-VC-1"}}
    },
    "no requester": {"requester": None},
    "performer unknown": {"performer": [{"reference": "Organization/SE-NOBODY"}]},
    "performer garbage": {"performer": ["Organization/x", 42, None]},
    "no performer": {"performer": None},
    "no identifier": {"identifier": None},
    "identifier without value": {"identifier": [{"system": "x"}]},
    "notes as strings": {"note": ["smärta", 3]},
    "reasonCode garbage": {"reasonCode": "ont i ryggen"},
    "supportingInfo broken": {"supportingInfo": [{"reference": "Consent/gone"}, "x"]},
    "extension garbage": {"extension": [{"url": 5}, "x", {"url": "u", "extension": "y"}]},
    "category garbage": {"category": "referral"},
    "references that are not strings": {
        "subject": {"reference": 5},
        "requester": {"reference": ["x"]},
        "performer": [{"reference": 7}],
        "supportingInfo": [{"reference": {}}],
    },
}


@pytest.mark.parametrize("case", list(ODD_REFERRALS))
def test_odd_referrals_do_not_raise_and_settle(case: str) -> None:
    state = referral(service_request(**ODD_REFERRALS[case]))
    plan = ROUTINE.decide(state, sr_event(state), ctx())
    after = apply(state, plan)
    for event in (
        sr_event(after),
        timer_event(after, "review-overdue"),
        timer_event(after, "supplement-reminder"),
        timer_event(after, "questionnaire-reminder"),
    ):
        assert not ROUTINE.decide(after, event, ctx()).writes, (case, event)


def test_unknown_performer_is_held_not_ignored() -> None:
    state = referral(service_request(performer=[{"reference": "Organization/SE-NOBODY"}]))
    plan = ROUTINE.decide(state, sr_event(state), ctx())
    tasks = [w.resource for w in plan.writes if w.resource["resourceType"] == "Task"]
    assert [t["businessStatus"]["coding"][0]["code"] for t in tasks] == ["awaiting-correction"]
    assert any("not one specialist clinic" in n for n in plan.notes)


def test_broken_requester_gets_no_kom_and_a_note() -> None:
    state = referral(service_request(requester={"reference": "PractitionerRole/gone"}))
    plan = ROUTINE.decide(state, sr_event(state), ctx())
    assert any("cannot be reached" in n for n in plan.notes)
    assert not [w for w in plan.writes if w.resource["resourceType"] == "Communication"]
    created = next(w.resource for w in plan.writes if w.resource["resourceType"] == "Task")
    assert "requester" not in created  # a reference that does not resolve is never copied


def test_referrer_by_identifier_gets_the_kom() -> None:
    ident = {"system": "urn:oid:1.2.752.29.4.19", "value": "SE-VC-1"}
    state = referral(service_request(requester={"identifier": ident}))
    after = apply(state, ROUTINE.decide(state, sr_event(state), ctx()))
    assert messages(after)["R-1-KOM-referrer-1"]["recipient"] == [{"identifier": ident}]


def test_no_subject_is_answered_with_kom_naming_the_patient() -> None:
    state = referral(service_request(subject=None))
    after = apply(state, ROUTINE.decide(state, sr_event(state), ctx()))
    assert "Patientens identitet" in messages(after)["R-1-KOM-referrer-1"]["payload"][0]["contentString"]
    assert "for" not in review(after)


@pytest.mark.parametrize(
    "resource",
    [
        {"resourceType": "Communication", "id": "c9", "inResponseTo": "Communication/x"},
        {
            "resourceType": "QuestionnaireResponse",
            "id": "q9",
            "status": "completed",
            "item": "x",
            "questionnaire": "https://mmr-adapter.se/fhir/Questionnaire/mmr-intake|0.1.0",
            "basedOn": [{"reference": "ServiceRequest/sr1"}],
        },
        {
            "resourceType": "QuestionnaireResponse",
            "id": "q8",
            "status": "completed",
            "basedOn": "x",
            "questionnaire": 7,
        },
        {"resourceType": "Task", "id": "t9", "focus": {"reference": "ServiceRequest/sr1"}, "code": "x", "output": 3},
        {
            "resourceType": "Communication",
            "id": "c8",
            "identifier": "x",
            "basedOn": {"reference": "ServiceRequest/sr1"},
            "category": "KOM",
            "inResponseTo": [None, "y"],
        },
    ],
)
def test_odd_other_resources_do_not_raise(resource: dict[str, Any]) -> None:
    state = referral()
    after = apply(state, ROUTINE.decide(state, sr_event(state), ctx()))
    odd = add(after, resource)
    ROUTINE.decide(odd, resource_event(resource), ctx())
    ROUTINE.decide(odd, sr_event(odd), ctx())
    # and a review Task someone filled with junk
    junk = add(
        odd,
        {
            **review(odd),
            "output": "x",
            "input": 5,
            "owner": "y",
            "businessStatus": "z",
            "restriction": "soon",
            "statusReason": "w",
        },
    )
    for event in (
        sr_event(junk),
        timer_event(junk, "review-overdue"),
        timer_event(junk, "supplement-reminder"),
        timer_event(junk, "questionnaire-reminder"),
    ):
        ROUTINE.decide(junk, event, ctx())
    rejected = add(odd, {**review(odd), "status": "rejected", "statusReason": "w"})
    ROUTINE.decide(rejected, sr_event(rejected), ctx())


def test_events_for_unknown_timers_and_deletions_plan_nothing() -> None:
    state = referral()
    assert ROUTINE.decide(state, Event("timer", "ServiceRequest", "sr1", timer="no-such-timer"), ctx()).empty
    assert ROUTINE.decide(state, Event("deleted", "Communication", "x"), ctx()).empty


def test_steps_run_in_the_routines_order() -> None:
    names = [s.__name__ for s in ROUTINE.steps_for("ServiceRequest")]
    mine = [
        "register_arrival",
        "assign_reviewer",
        "check_completeness",
        "manage_questionnaire",
        "recommend_level",
        "record_decision",
        "forward",
    ]
    assert [n for n in names if n in mine] == mine
    assert "revoke" in names


def test_a_referral_with_nothing_loaded_around_it() -> None:
    bare = Referral(service_request(), {"ServiceRequest/sr1": service_request()})
    plan = ROUTINE.decide(bare, sr_event(bare), ctx())
    after = apply(bare, plan)
    assert not ROUTINE.decide(after, sr_event(after), ctx()).writes


_SYSTEM = codes().identifier_system("task")
_identifier = st.fixed_dictionaries(
    {},
    optional={
        "system": st.sampled_from(
            [_SYSTEM, codes().identifier_system("communication"), "urn:other", None, {"x": 1}, 7]
        ),
        "value": st.sampled_from(["k1", "k2", None, 3, {"v": "k1"}]),
    },
)


@given(
    st.lists(
        st.one_of(
            st.lists(st.one_of(_identifier, st.just("junk")), max_size=4), _identifier, st.none(), st.just("junk")
        ),
        max_size=6,
    ),
    st.sampled_from(["k1", "k2"]),
)
def test_finding_our_resources_by_identifier_tolerates_whatever_identifiers_arrive(
    identifiers: list[Any], value: str
) -> None:
    """The per-state index finds what a scan with ``own_value`` finds, however malformed the identifiers."""
    resources = {
        f"Task/t{n}": {"resourceType": "Task", "id": f"t{n}", "identifier": ident}
        for n, ident in enumerate(identifiers)
    }
    state = Referral(service_request(), resources)
    scanned = next((r for r in resources.values() if own_value(r, "task") == value), None)
    assert find_own(state, "task", value) is scanned
