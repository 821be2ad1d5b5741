"""Routine steps 7-8: decision, forwarding (MMRpv / MMRsv), rejection and revocation, with confirmations."""

from __future__ import annotations

from adapter.mappings import codes
from adapter.workflow.core import Referral
from adapter.workflow.steps import ROUTINE
from tests.support.workflow import (
    ALL_MET,
    HASSLEHOLM,
    LUND,
    MMRPV_ANSWERS,
    NOW,
    add,
    assert_replay_plans_nothing,
    assessment,
    clinic_org,
    code,
    consent,
    ctx,
    decide_as_reviewer,
    messages,
    output_codes,
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


def recommended(extension: list | None = None, **options: object) -> Referral:  # type: ignore[type-arg]
    state = referral(service_request(extension=ALL_MET if extension is None else extension))
    _, after = run(state, sr_event(state), ctx(**options))
    return after


def reviewer_decides(level: str, state: Referral | None = None) -> tuple[Referral, Referral]:
    before = decide_as_reviewer(state or recommended(), level)
    event = resource_event(review(before))
    plan, after = run(before, event, ctx())
    assert_replay_plans_nothing(before, plan, after, event, ctx())
    return before, after


def test_mmrpv_forwarding_closes_with_he_and_hands_over_to_the_mmrpv_unit() -> None:
    _, after = reviewer_decides("MMRpv")
    rev = review(after)
    assert rev["status"] == "completed" and code(rev["businessStatus"]) == "forwarded"
    assert code(rev["statusReason"]) == "HE"
    assert rev["statusReason"]["coding"][0]["display"] == "Remiss vidareskickad"
    assert rev["statusReason"]["text"] == "Rehabiliteringsmottagning långvarig smärta nära vård, Malmö"
    assert output_codes(rev)["mmrpv-site"] == "Location/SE2321000255-MMRPV-MLM"
    intake = task(after, "R-1-mmrpv-intake")
    # The MMRpv unit registers the arrival in the same transaction (adapter.workflow.mmrpv.intake).
    assert code(intake["code"]) == "mmrpv-intake" and intake["status"] == "received"
    assert intake["partOf"] == [{"reference": f"Task/{rev['id']}"}]
    assert intake["focus"] == {"reference": "ServiceRequest/sr1"}
    assert intake["owner"]["reference"] == "Organization/SE2321000255-MMRPV"
    sent = messages(after)
    assert set(sent) == {"R-1-VID-referrer-review", "R-1-VID-patient-review"}
    to_referrer, to_patient = sent["R-1-VID-referrer-review"], sent["R-1-VID-patient-review"]
    assert to_referrer["recipient"] == [{"reference": "PractitionerRole/ref1"}]
    assert to_patient["recipient"] == [{"reference": "Patient/p1"}]
    for m in (to_referrer, to_patient):
        assert code(m["category"][0]) == "VID" and m["status"] == "completed" and m["sent"] == NOW.isoformat()
        assert m["about"] == m["basedOn"] == [{"reference": "ServiceRequest/sr1"}]
        assert "Malmö" in m["payload"][0]["contentString"]


def test_mmrsv_is_booked_at_the_clinic_with_bek() -> None:
    _, after = reviewer_decides("MMRsv")
    rev = review(after)
    assert rev["status"] == "completed" and code(rev["businessStatus"]) == "decided"
    assert "statusReason" not in rev
    booking = task(after, "R-1-booking-mmrsv")
    assert code(booking["code"]) == "booking" and booking["owner"]["reference"] == f"Organization/{LUND}"
    assert code(booking["businessStatus"]) == "awaiting-booking"
    assert set(messages(after)) == {"R-1-BEK-referrer-review", "R-1-BEK-patient-review"}
    assert not [t for t in after.all("Task") if code(t.get("code")) == "mmrpv-intake"]


def test_a_decision_against_the_recommendation_is_allowed_and_recorded() -> None:
    _, after = reviewer_decides("MMRsv")  # recommended MMRpv
    outputs = output_codes(review(after))
    assert outputs["recommendation"] == "MMRpv" and outputs["decision"] == "MMRsv"
    assert outputs["deviation"] == "Beslut MMRsv avviker från rekommendation MMRpv"


def test_auto_decide_when_every_criterion_is_determinate() -> None:
    state = referral(service_request(extension=ALL_MET))
    plan, after = run(state, sr_event(state), ctx(auto_decide=True))
    rev = review(after)
    assert output_codes(rev)["decision"] == "MMRpv" and code(rev["statusReason"]) == "HE"
    assert "R-1-VID-patient-review" in messages(after)
    assert_replay_plans_nothing(state, plan, after, sr_event(state), ctx(auto_decide=True))


def test_auto_decide_waits_for_the_reviewer_when_a_criterion_is_unknown() -> None:
    one_not_met = [assessment("work-status", "not-met")]
    after = recommended(one_not_met, auto_decide=True, questionnaire="never")
    rev = review(after)
    assert output_codes(rev)["recommendation"] == "MMRsv" and "decision" not in output_codes(rev)
    assert code(rev["businessStatus"]) == "recommended"


def test_the_patients_preferred_site_is_named() -> None:
    state = add(referral(service_request()), response({**MMRPV_ANSWERS, "mottagning-onskemal": "kristianstad"}))
    _, after = run(state, sr_event(state), ctx())
    _, forwarded = reviewer_decides("MMRpv", after)
    assert review(forwarded)["statusReason"]["text"].endswith(", Kristianstad")


def test_the_clinic_default_site() -> None:
    sr = service_request(clinic=HASSLEHOLM, extension=ALL_MET)
    state = referral(sr, clinic_org(HASSLEHOLM), consent(clinic=HASSLEHOLM))  # replaces the Lund consent
    _, after = run(state, sr_event(state), ctx(auto_decide=True))
    assert review(after)["statusReason"]["text"].endswith(", Kristianstad")


def test_english_texts() -> None:
    state = referral(service_request(extension=ALL_MET))
    _, after = run(state, sr_event(state), ctx(auto_decide=True, language="en"))
    assert messages(after)["R-1-VID-referrer-review"]["payload"][0]["contentString"].startswith(
        "Referral R-1 has arrived"
    )


def test_the_open_questionnaire_is_cancelled_when_the_reviewer_decides() -> None:
    state = referral()
    _, asked = run(state, sr_event(state), ctx())
    _, after = reviewer_decides("MMRsv", asked)
    assert task(after, "R-1-complete-questionnaire-mmr-intake")["status"] == "cancelled"
    assert review(after)["status"] == "completed"


def test_rejection_sends_avv_with_the_reason() -> None:
    after = recommended()
    rejected = update_resource(
        after, review(after), status="rejected", statusReason={"text": "Ej aktuell för multimodal rehabilitering"}
    )
    event = resource_event(review(rejected))
    plan, done = run(rejected, event, ctx())
    sent = messages(done)
    assert {"R-1-AVV-referrer-review", "R-1-AVV-patient-review"} <= set(sent)
    assert "Ej aktuell för multimodal rehabilitering" in sent["R-1-AVV-referrer-review"]["payload"][0]["contentString"]
    assert code(sent["R-1-AVV-patient-review"]["category"][0]) == "AVV"
    assert not [t for t in done.all("Task") if code(t.get("code")) in ("booking", "mmrpv-intake")]
    assert_replay_plans_nothing(rejected, plan, done, event, ctx())


def test_revocation_cancels_open_tasks_and_sends_avb() -> None:
    state = referral()
    _, asked = run(state, sr_event(state), ctx())  # review on hold, questionnaire open
    revoked = update_resource(asked, asked.service_request, status="revoked")
    plan, done = run(revoked, sr_event(revoked), ctx())
    assert review(done)["status"] == "cancelled"
    assert task(done, "R-1-complete-questionnaire-mmr-intake")["status"] == "cancelled"
    assert review(done)["statusReason"]["text"] == "Remissen har återkallats"
    sent = messages(done)
    assert {"R-1-AVB-referrer-revoked", "R-1-AVB-patient-revoked"} <= set(sent)
    assert code(sent["R-1-AVB-referrer-revoked"]["category"][0]) == "AVB"
    assert_replay_plans_nothing(revoked, plan, done, sr_event(revoked), ctx())


def test_revocation_after_forwarding_cancels_the_intake() -> None:
    _, forwarded = reviewer_decides("MMRpv")
    revoked = update_resource(forwarded, forwarded.service_request, status="revoked")
    _, done = run(revoked, sr_event(revoked), ctx())
    assert task(done, "R-1-mmrpv-intake")["status"] == "cancelled"
    assert review(done)["status"] == "completed"  # a closed review stays as it was
    assert "R-1-AVB-patient-revoked" in messages(done)


def test_revocation_before_arrival_and_after_rejection() -> None:
    revoked = referral(service_request(status="revoked"))
    plan = ROUTINE.decide(revoked, sr_event(revoked), ctx())
    assert plan.empty and any("before its arrival" in n for n in plan.notes)
    after = recommended()
    rejected = update_resource(after, review(after), status="rejected")
    _, done = run(rejected, resource_event(review(rejected)), ctx())
    assert "ingen orsak angiven" in messages(done)["R-1-AVV-referrer-review"]["payload"][0]["contentString"]
    withdrawn = update_resource(done, done.service_request, status="revoked")
    plan = ROUTINE.decide(withdrawn, sr_event(withdrawn), ctx())
    assert not [w for w in plan.writes if "AVB" in str(w.resource.get("category"))]


def test_a_decision_with_an_unknown_level_is_not_acted_on() -> None:
    after = recommended()
    c = codes()
    bad = [
        *review(after)["output"],
        {
            "type": c.concept("task-parameter", "decision"),
            "valueCodeableConcept": {"coding": [{"system": "x", "code": "MMRxx"}]},
        },
    ]
    odd = update_resource(after, review(after), output=bad)
    plan = ROUTINE.decide(odd, resource_event(review(odd)), ctx())
    # Not acted on (nothing forwarded, nothing confirmed), but refused visibly on the Task itself
    # (tests/test_review_refusal.py): the only write is the review, back at recommended, saying why.
    assert [w.resource["resourceType"] for w in plan.writes] == ["Task"]
    assert code(plan.writes[0].resource["businessStatus"]) == "recommended"
    assert plan.counts == ("decision-refused",)
