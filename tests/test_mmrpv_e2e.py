"""The MMRpv unit and the care end to end: sandbox, Redis, the API and a real worker (steps 9-15).

The unit's own writes (Appointment, CarePlan, DocumentReference) and the patient's answer are made
here as an EHR or a patient app would; the adapter's part arrives through the real subscriptions.
The clock is the worker's injected one (MMR_TEST_CLOCK), and timers fire through the CLI.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from adapter.fhir.client import FhirClient
from adapter.mappings import HSA_SYSTEM, codes
from adapter.operations.status import journey_lines
from adapter.pipeline.state import State
from adapter.workflow.mmrpv.common import carries_out, unit_ref
from tests.support.e2e_referrals import code, decide, key, messages, referral_on_server, review_in, tasks
from tests.support.faults import FaultProxy, request_kinds
from tests.support.stack import FHIR_SERVER, Stack, wait_for
from tests.support.workflow import FOLLOW_UP_ITEMS

pytestmark = pytest.mark.e2e
STHLM = ZoneInfo("Europe/Stockholm")
SITES = {
    "helsingborg": "SE2321000255-MMRPV-HBG",
    "malmo": "SE2321000255-MMRPV-MLM",
    "kristianstad": "SE2321000255-MMRPV-KSD",
}
FOLLOW_UP = "https://mmr-adapter.se/fhir/Questionnaire/mmr-follow-up|0.1.0"


@pytest.fixture
def clock(state: State) -> Iterator[State]:
    yield state
    state.clock.set(None)


def fire(stack: Stack, at: datetime) -> int:
    done = subprocess.run(
        [sys.executable, "-m", "adapter.cli", "fire-timers", "--at", at.isoformat()],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[0])


def ours(fhir: FhirClient, rtype: str, kind: str, value: str) -> dict[str, Any] | None:
    """The resource the adapter made, by its business identifier."""
    found = fhir.search(rtype, {"identifier": f"{codes().identifier_system(kind)}|{value}"})
    return next((r for r in found if r["resourceType"] == rtype), None)


def task_by_key(fhir: FhirClient, value: str) -> dict[str, Any] | None:
    return ours(fhir, "Task", "task", value)


def at_stage(fhir: FhirClient, sr: dict[str, Any], status: str, business: str) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        intake = task_by_key(fhir, f"{key(sr)}-mmrpv-intake")
        return (
            intake if intake and (intake["status"], code(intake.get("businessStatus"))) == (status, business) else None
        )

    return wait_for(reached, what=f"the intake Task at {status} / {business}")


def forwarded(fhir: FhirClient) -> dict[str, Any]:
    sr = referral_on_server(fhir)
    decide(fhir, review_in(fhir, sr, "recommended"), "MMRpv")
    review_in(fhir, sr, "forwarded")
    return sr


def book(fhir: FhirClient, sr: dict[str, Any], site: str, start: str) -> dict[str, Any]:
    return fhir.create(
        {
            "resourceType": "Appointment",
            "status": "booked",
            "start": start,
            "end": start[:11] + "16:00:00+02:00",
            "basedOn": [{"reference": f"ServiceRequest/{sr['id']}"}],
            "participant": [
                {"actor": sr["subject"], "status": "accepted"},
                {"actor": {"reference": f"Location/{site}"}, "status": "accepted"},
            ],
        }
    )


def bek(fhir: FhirClient, sr: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: m for k, m in messages(fhir, sr).items() if "-BEK-" in k}


def careplan(fhir: FhirClient, sr: dict[str, Any]) -> dict[str, Any]:
    return wait_for(lambda: ours(fhir, "CarePlan", "careplan", f"{key(sr)}-programme"), what="the programme")


def booked_and_planned(fhir: FhirClient, sr: dict[str, Any], site: str) -> dict[str, Any]:
    appointment = book(fhir, sr, site, "2027-04-06T09:00:00+02:00")
    wait_for(
        lambda: (t := task_by_key(fhir, f"{key(sr)}-booking-mmrpv-1")) and t["status"] == "completed",
        what="the booking Task completed",
    )
    at_stage(fhir, sr, "in-progress", "booked")
    careplan(fhir, sr)
    return appointment


@pytest.mark.parametrize("site", list(SITES))
def test_the_whole_journey_from_referral_to_finished_follow_up(
    stack: Stack, fhir: FhirClient, clock: State, site: str
) -> None:
    clock.clock.set(datetime(2027, 3, 1, 10, 0, tzinfo=STHLM))
    sr = forwarded(fhir)
    intake = at_stage(fhir, sr, "received", "awaiting-booking")
    episode = ours(fhir, "EpisodeOfCare", "episodeofcare", f"{key(sr)}-care-commitment")
    assert episode and episode["status"] == "active"
    assert {"reference": f"EpisodeOfCare/{episode['id']}"} in [o.get("valueReference") for o in intake["output"]]
    booking = task_by_key(fhir, f"{key(sr)}-booking-mmrpv-1")
    assert booking and booking["owner"]["reference"] == "Organization/SE2321000255-MMRPVA"
    assert booking["input"][0]["valueReference"]["reference"] == f"Location/{SITES['malmo']}"  # the patient: Malmö

    appointment = booked_and_planned(fhir, sr, SITES[site])
    sent = wait_for(lambda: len(m := bek(fhir, sr)) == 2 and m, what="the BEK to referrer and patient")
    assert {m["recipient"][0]["reference"] for m in sent.values()} == {
        sr["subject"]["reference"],
        sr["requester"]["reference"],
    }
    assert all("2027-04-06" in m["payload"][0]["contentString"] for m in sent.values())

    clock.clock.set(datetime(2027, 7, 1, 8, 0, tzinfo=STHLM))
    plan_ = careplan(fhir, sr)
    fhir.update(
        {**plan_, "status": "completed", "period": {**plan_["period"], "end": "2027-06-30"}},
        if_match=plan_["meta"]["versionId"],
    )
    at_stage(fhir, sr, "in-progress", "awaiting-discharge-summary")
    follow = wait_for(lambda: task_by_key(fhir, f"{key(sr)}-follow-up"), what="the follow-up Task")
    assert follow["status"] == "draft" and follow["restriction"]["period"]["start"] == "2028-06-30T09:00:00+02:00"

    summary = fhir.create(
        {
            "resourceType": "DocumentReference",
            "status": "current",
            "type": {"coding": [{"system": "http://loinc.org", "code": "18842-5"}]},
            "subject": sr["subject"],
            "author": [unit_ref()],  # R4: not a Location
            "content": [{"attachment": {"contentType": "text/plain", "data": "RXBpa3Jpcw=="}}],
            "context": {"related": [{"reference": f"ServiceRequest/{sr['id']}"}]},
        }
    )
    at_stage(fhir, sr, "completed", "discharged")
    back = messages(fhir, sr)[f"{key(sr)}-discharge-summary-referrer-programme"]
    assert {"contentReference": {"reference": f"DocumentReference/{summary['id']}"}} in back["payload"]
    offer = ours(fhir, "CommunicationRequest", "communicationrequest", f"{key(sr)}-pal-meeting")
    assert offer and offer["status"] == "active" and offer["recipient"] == [sr["requester"]]

    due_at = datetime(2028, 6, 30, 9, 0, tzinfo=STHLM)
    day_before = datetime(2028, 6, 29, 9, 0, tzinfo=STHLM)
    clock.clock.set(day_before)
    fire(stack, day_before)  # the follow-up's timer is a day early: taken, handled and armed again
    member = f"{sr['id']}|mmrpv-follow-up-due"
    wait_for(lambda: dict(clock.timers.all()).get(member) == due_at.timestamp(), what="the early timer re-armed")
    assert task_by_key(fhir, f"{key(sr)}-follow-up")["status"] == "draft"  # type: ignore[index]
    due = due_at
    clock.clock.set(due)
    assert fire(stack, due) + fire(stack, due) >= 1  # two beat runs: one of them takes the timer
    # A fire at a moment this far on takes every timer of the session's referrals due by then, all
    # queued before this one's: the deadline is the queue's, which the whole suite fills.
    follow = wait_for(
        lambda: (t := task_by_key(fhir, f"{key(sr)}-follow-up")) and t["status"] == "requested" and t,
        timeout=90,
        what="the follow-up activated",
    )
    asked = wait_for(
        lambda: [m for k, m in messages(fhir, sr).items() if "follow-up-request" in k],
        what="the follow-up request to the patient",
    )
    assert len(asked) == 1 and asked[0]["recipient"] == [sr["subject"]]

    fhir.create(
        {
            "resourceType": "QuestionnaireResponse",
            "status": "completed",
            "questionnaire": FOLLOW_UP,
            "basedOn": [follow["focus"]],
            "subject": sr["subject"],
            "authored": due.isoformat(),
            "item": FOLLOW_UP_ITEMS,  # the cookbook's answer: a follow-up answer is checked against its form
        }
    )
    wait_for(
        lambda: (
            (e := ours(fhir, "EpisodeOfCare", "episodeofcare", f"{key(sr)}-care-commitment"))
            and e["status"] == "finished"
        ),
        what="the care commitment finished",
    )
    assert task_by_key(fhir, f"{key(sr)}-follow-up")["status"] == "completed"  # type: ignore[index]
    assert appointment["id"] in json.dumps(bek(fhir, sr))

    lines = "\n".join(journey_lines(fhir, sr["id"]))
    for step in (
        "referral-review",
        "mmrpv-intake",
        "booking",
        "appointment booked",
        "programme completed",
        "follow-up",
        "care commitment finished",
    ):
        assert step in lines, lines
    # One time base, the test clock's: the unit's summary (no date of its own) after the review and the booking.
    order = [line.split("  ", 1)[1] for line in lines.splitlines()]
    first = {
        what: next(i for i, o in enumerate(order) if what in o) for what in ("referral-review", "discharge summary")
    }
    assert first["referral-review"] < first["discharge summary"], lines
    assert [line[:16] for line in lines.splitlines()] == sorted(line[:16] for line in lines.splitlines()), lines


def test_a_moved_appointment_is_confirmed_once_more_and_a_duplicate_notification_sends_nothing(
    stack: Stack, fhir: FhirClient, state: State
) -> None:
    sr = forwarded(fhir)
    at_stage(fhir, sr, "received", "awaiting-booking")
    appointment = booked_and_planned(fhir, sr, SITES["helsingborg"])
    wait_for(lambda: len(bek(fhir, sr)) == 2, what="the first BEK")
    moved = fhir.update({**fhir.read("Appointment", appointment["id"]), "start": "2027-04-13T10:00:00+02:00"})
    sent = wait_for(lambda: len(m := bek(fhir, sr)) == 4 and m, what="the BEK for the new time")
    assert sum("2027-04-13" in m["payload"][0]["contentString"] for m in sent.values()) == 2
    processed = processed_events(state)
    for _ in range(3):
        assert stack.notify("PUT", f"/Appointment/{moved['id']}", json.dumps(moved)).status_code == 202
    wait_for(lambda: processed_events(state) >= processed + 3, what="the duplicates handled")
    assert len(bek(fhir, sr)) == 4
    plans = [
        t
        for t in fhir.search("CarePlan", {"subject": sr["subject"]["reference"]})
        if t["resourceType"] == "CarePlan" and carries_out(t, f"ServiceRequest/{sr['id']}")
    ]
    assert len(plans) == 1
    assert plans[0]["period"]["start"] == "2027-04-13T10:00:00+02:00"  # the programme moved with the booking


def test_a_booking_at_a_place_that_is_no_site_is_answered_and_its_correction_completes_the_round(
    stack: Stack, fhir: FhirClient
) -> None:
    """Issue 23: the unit books the patient at a mistyped HSA id (a logical reference, which any server
    takes). The booking Task says why to the administrative function; the corrected Appointment completes it."""
    wrong = {"actor": {"identifier": {"system": HSA_SYSTEM, "value": "SE2321000255-MMRPV-HBX"}}, "status": "accepted"}
    sr = forwarded(fhir)
    at_stage(fhir, sr, "received", "awaiting-booking")
    mistaken = fhir.create(
        {
            "resourceType": "Appointment",
            "status": "booked",
            "start": "2027-04-06T09:00:00+02:00",
            "end": "2027-04-06T16:00:00+02:00",
            "basedOn": [{"reference": f"ServiceRequest/{sr['id']}"}],
            "participant": [{"actor": sr["subject"], "status": "accepted"}, wrong],
        }
    )
    told = wait_for(
        lambda: (t := task_by_key(fhir, f"{key(sr)}-booking-mmrpv-1")) and t.get("statusReason") and t,
        what="the booking Task's reason",
    )
    assert told["status"] == "requested" and told["statusReason"]["text"].startswith("Bokningen kunde inte registreras")
    assert "HBX" not in told["statusReason"]["text"] and not bek(fhir, sr)
    current = fhir.read("Appointment", mistaken["id"])
    right = {"actor": {"reference": f"Location/{SITES['helsingborg']}"}, "status": "accepted"}
    fhir.update({**current, "participant": [current["participant"][0], right]}, if_match=current["meta"]["versionId"])
    done = wait_for(
        lambda: (t := task_by_key(fhir, f"{key(sr)}-booking-mmrpv-1")) and t["status"] == "completed" and t,
        what="the booking Task completed",
    )
    assert "statusReason" not in done and code(done["businessStatus"]) == "booked"
    wait_for(lambda: len(bek(fhir, sr)) == 2, what="the BEK")


def test_an_event_at_the_mmrpv_unit_costs_one_search_and_one_transaction(
    stack: Stack, fhir: FhirClient, proxy: FaultProxy
) -> None:
    sr = forwarded(fhir)
    appointment = booked_and_planned(fhir, sr, SITES["malmo"])
    wait_for(lambda: len(bek(fhir, sr)) == 2, what="the first BEK")
    proxy.record()
    fhir.update({**fhir.read("Appointment", appointment["id"]), "start": "2027-04-20T10:00:00+02:00"})
    wait_for(lambda: len(bek(fhir, sr)) == 4, what="the BEK for the new time")
    events = {
        rid: requests
        for rid, requests in proxy.by_event().items()
        if any(
            f"ServiceRequest?_id={sr['id']}&" in path or f"ServiceRequest?_id={sr['id']}&".encode() in body
            for _, path, body in requests
        )
    }
    kinds = [request_kinds(requests) for requests in events.values()]
    assert all(k in (["read"], ["read", "transaction"]) for k in kinds), kinds  # the moved booking and echoes
    assert kinds.count(["read", "transaction"]) == 1, kinds  # the new BEK and the programme, in one transaction
    if FHIR_SERVER == "hapi":  # it revincludes the answers: no batch, whatever the event
        assert all(requests[0][0] == "GET" for requests in events.values())


def processed_events(state: State) -> int:
    return sum(int(v) for v in state.metrics.events_and_latency()[0].values())


def test_a_missing_summary_waits_and_reminds_and_an_interruption_ends_cleanly(
    stack: Stack, fhir: FhirClient, clock: State
) -> None:
    clock.clock.set(datetime(2027, 3, 1, 10, 0, tzinfo=STHLM))
    waiting, interrupted = forwarded(fhir), forwarded(fhir)
    for sr in (waiting, interrupted):
        at_stage(fhir, sr, "received", "awaiting-booking")
        booked_and_planned(fhir, sr, SITES["kristianstad"])
    plan_ = careplan(fhir, waiting)
    fhir.update({**plan_, "status": "completed", "period": {**plan_["period"], "end": "2027-06-30"}})
    at_stage(fhir, waiting, "in-progress", "awaiting-discharge-summary")
    reminder_due = datetime(2027, 7, 8, 9, 0, tzinfo=STHLM)  # five working days after the end
    clock.clock.set(reminder_due)
    fire(stack, reminder_due)
    reminder = wait_for(
        lambda: messages(fhir, waiting).get(f"{key(waiting)}-discharge-reminder-unit-discharge-1"),
        what="the reminder to the unit",
    )
    assert reminder["recipient"][0]["reference"] == "Organization/SE2321000255-MMRPV"
    assert task_by_key(fhir, f"{key(waiting)}-mmrpv-intake")["status"] == "in-progress"  # type: ignore[index]

    plan_ = careplan(fhir, interrupted)
    fhir.update({**plan_, "status": "revoked"})
    at_stage(fhir, interrupted, "cancelled", "programme-interrupted")
    told = wait_for(
        lambda: messages(fhir, interrupted).get(f"{key(interrupted)}-programme-interrupted-referrer-programme"),
        what="the referrer told",
    )
    assert told["recipient"] == [interrupted["requester"]]
    episode = wait_for(
        lambda: (
            (e := ours(fhir, "EpisodeOfCare", "episodeofcare", f"{key(interrupted)}-care-commitment"))
            and e["status"] == "cancelled"
            and e
        ),
        what="the care commitment ended",
    )
    assert episode["period"]["end"]
    assert task_by_key(fhir, f"{key(interrupted)}-follow-up") is None
    assert "follow-up" not in tasks(fhir, interrupted)


def test_a_follow_up_nobody_answers_fails_at_the_end_of_its_window_and_the_care_still_ends(
    stack: Stack, fhir: FhirClient, clock: State
) -> None:
    clock.clock.set(datetime(2027, 3, 1, 10, 0, tzinfo=STHLM))
    sr = forwarded(fhir)
    at_stage(fhir, sr, "received", "awaiting-booking")
    booked_and_planned(fhir, sr, SITES["helsingborg"])
    clock.clock.set(datetime(2027, 7, 1, 8, 0, tzinfo=STHLM))
    plan_ = careplan(fhir, sr)
    fhir.update({**plan_, "status": "completed", "period": {**plan_["period"], "end": "2027-06-30"}})
    held = wait_for(lambda: task_by_key(fhir, f"{key(sr)}-follow-up"), what="the follow-up Task")
    due = datetime.fromisoformat(held["restriction"]["period"]["start"])
    until = datetime.fromisoformat(held["restriction"]["period"]["end"])
    clock.clock.set(due)
    fire(stack, due)
    wait_for(
        lambda: (t := task_by_key(fhir, f"{key(sr)}-follow-up")) and t["status"] == "requested",
        what="the follow-up activated",
    )
    clock.clock.set(until)
    fire(stack, until)
    failed = wait_for(
        lambda: (t := task_by_key(fhir, f"{key(sr)}-follow-up")) and t["status"] == "failed" and t,
        what="the follow-up failed at the end of its window",
    )
    assert code(failed["businessStatus"]) == "not-answered"
    wait_for(
        lambda: (
            (e := ours(fhir, "EpisodeOfCare", "episodeofcare", f"{key(sr)}-care-commitment"))
            and e["status"] == "finished"
        ),
        what="the care commitment finished all the same",
    )
