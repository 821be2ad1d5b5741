"""Routine step 6: completeness, the supplement request (KOM), reminders and resuming."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from adapter.mappings import load
from adapter.workflow.referral import performer_clinic
from adapter.workflow.review.completeness import missing, profile_errors
from adapter.workflow.steps import ROUTINE
from tests.support.workflow import (
    ALL_MET,
    NOW,
    STHLM,
    add,
    assert_replay_plans_nothing,
    assessment,
    base,
    code,
    consent,
    ctx,
    messages,
    output_codes,
    patient,
    referral,
    referrer,
    resource_event,
    review,
    run,
    service_request,
    sr_event,
    timer_event,
    update_resource,
)


def missing_ids(state) -> list[str]:  # type: ignore[no-untyped-def]
    return [r.id for r in missing(state, performer_clinic(state), NOW)[0]]


def test_a_complete_referral_passes_every_rule() -> None:
    assert missing_ids(referral()) == []


@pytest.mark.parametrize(
    ("rule", "breaks"),
    [
        ("patient", lambda s: add(s, {**patient(), "identifier": []})),
        ("consent", lambda s: add(s, consent(status="inactive"))),
        ("consent", lambda s: add(s, consent(clinic="SE2321000255-SMH1"))),
        ("patient-informed", lambda s: add(s, consent(verified=False))),
        ("diagnosis", lambda s: update_resource(s, s.service_request, reasonCode=None)),
        ("pain-history", lambda s: update_resource(s, s.service_request, note=s.service_request["note"][1:])),
        ("work-situation", lambda s: update_resource(s, s.service_request, note=s.service_request["note"][::2])),
        ("current-treatment", lambda s: update_resource(s, s.service_request, note=s.service_request["note"][:2])),
        ("referrer-contact", lambda s: add(s, {**referrer(), "telecom": []})),
    ],
)
def test_each_rule_detects_what_is_missing(rule: str, breaks) -> None:  # type: ignore[no-untyped-def]
    ids = missing_ids(breaks(referral()))
    assert rule in ids
    assert set(ids) <= {rule, "patient-informed"}  # a consent that does not cover is no verification either


def test_patient_informed_may_also_be_an_extension_on_the_referral() -> None:
    sr = service_request(
        extension=[{"url": f"{base()}/StructureDefinition/mmr-patient-informed", "valueBoolean": True}]
    )
    assert missing_ids(add(referral(sr), consent(verified=False))) == []


def test_an_expired_consent_does_not_count() -> None:
    old = consent()
    old["provision"]["period"] = {"start": "2024-01-01", "end": "2025-01-01"}
    assert "consent" in missing_ids(add(referral(), old))


def test_a_contained_consent_counts() -> None:
    contained = {**consent(), "id": "cc"}
    sr = service_request(contained=[contained], supportingInfo=[{"reference": "#cc"}])
    state = referral(sr)
    state = type(state)(sr, {k: v for k, v in state.resources.items() if not k.startswith("Consent/")})
    assert missing_ids(state) == []


WRONG_CODE = {"coding": [{"system": "http://snomed.info/sct", "code": "71388002"}]}  # a SNOMED procedure, not ours

PROFILE_BREAKS = {
    # a wrong fixed code: the category routes it, the profile wants code mmr of our CodeSystem
    "wrong code": ({"code": WRONG_CODE}, "ServiceRequest.code: must match pattern"),
    # a required element missing: the code routes it, the profile wants the referral category
    "no category": ({"category": None}, "ServiceRequest.category:referral: minimum cardinality 1, found 0"),
    # an invariant: two assessments of the same criterion
    "criterion assessed twice": ({"extension": [*ALL_MET, ALL_MET[0]]}, "invariant mmr-sr-3 failed"),
    "no business identifier": ({"identifier": None}, "ServiceRequest.identifier: minimum cardinality 1, found 0"),
}


@pytest.mark.parametrize("case", list(PROFILE_BREAKS))
def test_profile_errors_of_the_referral_are_missing_items(case: str) -> None:
    overrides, diagnostics = PROFILE_BREAKS[case]
    state = referral(service_request(**overrides))
    ids = missing_ids(state)
    assert ids and all(i.startswith("profile:ServiceRequest") for i in ids)  # no other rule catches it
    rules = missing(state, performer_clinic(state), NOW)[0]
    assert any(diagnostics in r.detail for r in rules), [r.detail for r in rules]  # for the integrator
    assert not any("profil" in r.sv or "ServiceRequest" in r.sv for r in rules)  # the referrer's words


def test_a_conformant_referral_has_no_profile_errors() -> None:
    assert profile_errors(service_request()) == ()
    assert profile_errors(service_request(extension=ALL_MET)) == ()


PART = {
    "wrong code": "Vad remissen gäller (multimodal smärtrehabilitering) (felaktigt angivet i remissen)",
    "no category": "Remissens kategori (multimodal smärtrehabilitering)",
}


def test_a_criterion_result_yes_reaches_the_referrer_in_clinical_words_not_as_the_profile_error() -> None:
    """Issue 23: "A referral whose criterion result is `yes` gets a KOM to the clinician carrying the raw
    profile error text." The KOM names the part to correct; the profile error is the integrator's note."""
    assessed = [assessment("stable-diagnosis", "yes"), *ALL_MET[1:]]
    state = referral(service_request(extension=assessed))
    plan, after = run(state, sr_event(state), ctx())
    kom = messages(after)["R-1-KOM-referrer-1"]
    text = kom["payload"][0]["contentString"]
    assert "- Bedömningen av kriterierna för multimodal smärtrehabilitering" in text
    assert "uppfyllt, ej uppfyllt eller okänt" in text and "felaktigt angivet i remissen" in text
    for raw in ("profil", "ValueSet", "ServiceRequest", "valueCode", "mmr-criterion", "http", "yes"):
        assert raw not in text, raw
    assert "ServiceRequest.extension[0].extension[1].valueCode" in kom["note"][0]["text"]
    assert "mmr-criterion-result" in kom["note"][0]["text"]
    assert any("KOM round 1 for profile:ServiceRequest.extension[0]" in n for n in plan.notes)
    assert_replay_plans_nothing(state, plan, after, sr_event(state), ctx())


def test_every_part_the_profile_can_fault_has_words_for_the_referrer() -> None:
    """A part that breaks the profile is named by a listed part, never the fallback, for the common breaks."""
    for case, (overrides, _) in PROFILE_BREAKS.items():
        rules = profile_errors(service_request(**overrides))
        assert rules and not any(r.sv.startswith("Remissens uppgifter i övrigt") for r in rules), case


@pytest.mark.parametrize("case", ["wrong code", "no category"])
def test_a_referral_breaking_the_profile_gets_a_kom_with_the_precise_issues(case: str) -> None:
    overrides, diagnostics = PROFILE_BREAKS[case]
    state = referral(service_request(extension=ALL_MET, **overrides))
    plan, after = run(state, sr_event(state), ctx())
    task = review(after)
    assert task["status"] == "on-hold" and code(task["businessStatus"]) == "awaiting-supplement"
    assert list(messages(after)) == ["R-1-KOM-referrer-1"]
    items = [
        line[2:]
        for line in messages(after)["R-1-KOM-referrer-1"]["payload"][0]["contentString"].splitlines()
        if line.startswith("- ")
    ]
    assert items == [PART[case]]  # which part, in the referrer's words
    kom = messages(after)["R-1-KOM-referrer-1"]
    assert diagnostics in kom["note"][0]["text"]  # the validator's issue, kept for the integrator
    assert "(profile https://mmr-adapter.se/fhir/StructureDefinition/mmr-referral)" in kom["note"][0]["text"]
    assert "recommendation" not in output_codes(task)
    assert any("KOM round 1 for profile:ServiceRequest" in n for n in plan.notes)  # a path, never a value
    assert_replay_plans_nothing(state, plan, after, sr_event(state), ctx())
    # The referrer fixes the referral: the new version conforms, and the review resumes.
    fixed = update_resource(after, after.service_request, **{k: service_request()[k] for k in overrides})
    _, resumed = run(fixed, sr_event(fixed), ctx())
    assert review(resumed)["status"] == "received" and code(review(resumed)["businessStatus"]) == "recommended"
    assert list(messages(resumed)) == ["R-1-KOM-referrer-1"]


def test_profile_issues_in_english() -> None:
    state = referral(service_request(code=WRONG_CODE))
    kom = next(
        w.resource
        for w in ROUTINE.decide(state, sr_event(state), ctx(language="en")).writes
        if w.resource["resourceType"] == "Communication"
    )
    assert (
        "- What the referral is for (multimodal pain rehabilitation) (not given correctly in the referral)"
        in kom["payload"][0]["contentString"]
    )
    assert "profile" not in kom["payload"][0]["contentString"]


def test_a_conformant_referral_gets_no_kom() -> None:
    state = referral(service_request(extension=ALL_MET))
    _, after = run(state, sr_event(state), ctx())
    assert not any("-KOM-" in k for k in messages(after))
    assert review(after)["status"] == "received" and code(review(after)["businessStatus"]) == "recommended"


def _incomplete() -> tuple:  # type: ignore[type-arg]
    sr = service_request(note=[], extension=ALL_MET)
    state = referral(sr)
    state = type(state)(sr, {k: v for k, v in state.resources.items() if not k.startswith("Consent/")})
    plan, after = run(state, sr_event(state), ctx())
    return state, plan, after


def test_incomplete_referral_gets_one_kom_listing_exactly_what_is_missing() -> None:
    state, plan, after = _incomplete()
    task = review(after)
    assert task["status"] == "on-hold" and code(task["businessStatus"]) == "awaiting-supplement"
    sent = messages(after)
    assert list(sent) == ["R-1-KOM-referrer-1"]
    kom = sent["R-1-KOM-referrer-1"]
    assert code(kom["category"][0]) == "KOM"
    assert kom["recipient"] == [{"reference": "PractitionerRole/ref1"}]
    assert kom["about"] == kom["basedOn"] == [{"reference": "ServiceRequest/sr1"}]
    assert kom["status"] == "completed" and kom["sent"] == NOW.isoformat()
    text = kom["payload"][0]["contentString"]
    labels = {r["id"]: r["sv"] for r in load("completeness")["rules"]}
    expected = ["consent", "patient-informed", "pain-history", "work-situation", "current-treatment"]
    assert [line[2:] for line in text.splitlines() if line.startswith("- ")] == [labels[i] for i in expected]
    assert [t.name for t in plan.timers] == ["review-overdue", "supplement-reminder"]
    assert next(t.due for t in plan.timers if t.name == "supplement-reminder") == datetime(
        2026, 3, 9, 9, 30, tzinfo=STHLM
    )  # 5 working days
    assert "recommendation" not in output_codes(task)
    assert_replay_plans_nothing(state, plan, after, sr_event(state), ctx())


def test_kom_in_english() -> None:
    sr = service_request(note=[])
    state = referral(sr)
    plan = ROUTINE.decide(state, sr_event(state), ctx(language="en"))
    kom = next(w.resource for w in plan.writes if w.resource["resourceType"] == "Communication")
    assert "needs a supplement" in kom["payload"][0]["contentString"]
    assert "- Pain history" in kom["payload"][0]["contentString"]
    assert kom["category"][0]["coding"][0]["display"] == "Supplement request"


def test_a_reply_to_the_kom_resumes_the_review_and_is_recorded() -> None:
    _, _, after = _incomplete()
    kom = messages(after)["R-1-KOM-referrer-1"]
    reply = {
        "resourceType": "Communication",
        "id": "reply1",
        "meta": {"versionId": "1"},
        "status": "completed",
        "inResponseTo": [{"reference": f"Communication/{kom['id']}"}],
        "payload": [{"contentString": "Samtycke inhämtat, se journal."}],
    }
    with_reply = add(after, reply)
    event = resource_event(reply)
    plan, resumed = run(with_reply, event, ctx())
    task = review(resumed)
    assert task["status"] == "received"
    assert _replies(task) == [{"reference": "Communication/reply1"}]
    assert output_codes(task)["recommendation"] == "MMRpv"  # the rest of the review ran in the same plan
    assert_replay_plans_nothing(with_reply, plan, resumed, event, ctx())
    # Later events no longer load the reply: the recorded input keeps the review going.
    without = type(resumed)(
        resumed.service_request, {k: v for k, v in resumed.resources.items() if k != "Communication/reply1"}
    )
    assert not ROUTINE.decide(without, sr_event(without), ctx()).writes


def _replies(task: dict[str, Any]) -> list[Any]:
    """The review's recorded supplement replies (its other input names the clinic it is at)."""
    return [i["valueReference"] for i in task["input"] if code(i["type"]) == "supplement-reply"]


def test_a_new_version_that_passes_resumes_the_review() -> None:
    _, _, after = _incomplete()
    fixed = update_resource(after, after.service_request, note=service_request()["note"])
    fixed = add(fixed, consent())
    plan, resumed = run(fixed, sr_event(fixed), ctx())
    task = review(resumed)
    assert task["status"] == "received" and code(task["businessStatus"]) == "recommended"
    assert _replies(task) == [{"reference": "ServiceRequest/sr1/_history/2"}]
    assert_replay_plans_nothing(fixed, plan, resumed, sr_event(fixed), ctx())


def test_a_new_version_that_still_fails_keeps_waiting_without_a_second_kom() -> None:
    _, _, after = _incomplete()
    partly = update_resource(after, after.service_request, note=service_request()["note"][:1])
    plan = ROUTINE.decide(partly, sr_event(partly), ctx())
    assert not plan.writes


def test_reminders_to_the_referrer_then_silence() -> None:
    _, _, after = _incomplete()
    event = timer_event(after, "supplement-reminder")
    assert not ROUTINE.decide(after, event, ctx()).writes  # too early: re-armed only
    first_due = datetime(2026, 3, 9, 9, 30, tzinfo=STHLM)
    plan, once = run(after, event, ctx(first_due))
    reminder = messages(once)["R-1-supplement-reminder-referrer-1-1"]
    assert code(reminder["category"][0]) == "supplement-reminder"
    assert reminder["partOf"] == [{"reference": f"Communication/{messages(once)['R-1-KOM-referrer-1']['id']}"}]
    assert "- Smärtanamnes" in reminder["payload"][0]["contentString"]
    assert plan.timers[0].due == datetime(2026, 3, 16, 9, 30, tzinfo=STHLM)
    assert_replay_plans_nothing(after, plan, once, event, ctx(first_due), timers_allowed=True)
    _, twice = run(once, event, ctx(datetime(2026, 3, 16, 9, 30, tzinfo=STHLM)))
    assert "R-1-supplement-reminder-referrer-1-2" in messages(twice)
    last = ROUTINE.decide(twice, event, ctx(datetime(2026, 4, 30, tzinfo=STHLM)))
    assert last.empty and any("all 2 reminders sent" in n for n in last.notes)


def test_no_kom_when_the_referrer_cannot_be_reached() -> None:
    sr = service_request(note=[], requester={"display": "Dr. Remittent"})
    state = referral(sr)
    plan, after = run(state, sr_event(state), ctx())
    assert not messages(after)
    assert review(after)["status"] == "received"
    assert any("cannot be reached" in n for n in plan.notes)
    assert_replay_plans_nothing(state, plan, after, sr_event(state), ctx())


def test_without_consent_the_record_is_not_read() -> None:
    """A severe psychiatric diagnosis in a referenced Condition counts only under Consent."""
    condition = {
        "resourceType": "Condition",
        "id": "cond1",
        "meta": {"versionId": "1"},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-se", "code": "F31.1"}]},
    }
    sr = service_request(extension=ALL_MET, reasonReference=[{"reference": "Condition/cond1"}])
    from adapter.workflow.review.criteria import evaluate

    with_consent = referral(sr, condition)
    assert evaluate(with_consent, NOW).result("limited-psychiatric-comorbidity") == "not-met"
    no_consent = type(with_consent)(
        sr, {k: v for k, v in with_consent.resources.items() if not k.startswith("Consent/")}
    )
    assert evaluate(no_consent, NOW).result("limited-psychiatric-comorbidity") == "met"


def test_the_reply_counts_only_for_this_kom() -> None:
    _, _, after = _incomplete()
    stray = {
        "resourceType": "Communication",
        "id": "stray",
        "meta": {"versionId": "1"},
        "status": "completed",
        "inResponseTo": [{"reference": "Communication/other"}],
    }
    assert not ROUTINE.decide(add(after, stray), resource_event(stray), ctx()).writes
