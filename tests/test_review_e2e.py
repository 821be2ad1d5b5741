"""The specialist clinic's review end to end: sandbox, Redis, the API and a real worker (steps 3-8)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from zoneinfo import ZoneInfo

import httpx
import pytest
import structlog

from adapter.fhir.client import FhirClient
from adapter.mappings import codes
from adapter.pipeline.runner import Runner
from adapter.pipeline.state import State
from adapter.workflow.core import Event, Referral
from adapter.workflow.load import ServerSearch
from adapter.workflow.review.sources import questionnaire_canonical
from adapter.workflow.steps import ROUTINE
from tests.support.e2e_referrals import (
    SECTIONS,
    assessments,
    code,
    decide,
    key,
    messages,
    outputs,
    referral_on_server,
    review_in,
    section,
    tasks,
)
from tests.support.faults import FaultProxy, request_kinds
from tests.support.referrals import LUND
from tests.support.stack import FHIR_SERVER, Stack, wait_for
from tests.support.workflow import MMRPV_ANSWERS, response

pytestmark = pytest.mark.e2e
STHLM = ZoneInfo("Europe/Stockholm")


@pytest.fixture
def clock(state: State) -> Iterator[State]:
    """The worker's injected clock (MMR_TEST_CLOCK): set it, and put it back to real time after."""
    yield state
    state.clock.set(None)


def test_mmrpv_path_from_referral_to_vid_confirmations(stack: Stack, fhir: FhirClient) -> None:
    sr = referral_on_server(fhir)
    review = review_in(fhir, sr, "recommended")
    assert review["owner"]["reference"].startswith(f"PractitionerRole/{LUND}R")
    assert outputs(review)["recommendation"] == "MMRpv"
    decide(fhir, review, "MMRpv")
    review = review_in(fhir, sr, "forwarded")
    assert review["status"] == "completed" and code(review["statusReason"]) == "HE"
    assert review["statusReason"]["text"] == "Rehabiliteringsmottagning långvarig smärta nära vård, Malmö"
    intake = wait_for(lambda: tasks(fhir, sr).get("mmrpv-intake"), what="the MMRpv intake Task")
    assert intake["partOf"] == [{"reference": f"Task/{review['id']}"}]
    assert intake["owner"]["reference"] == "Organization/SE2321000255-MMRPV"
    sent = wait_for(lambda: (m := messages(fhir, sr)) and len(m) >= 2 and m, what="the VID confirmations")
    assert {f"{key(sr)}-VID-referrer-review", f"{key(sr)}-VID-patient-review"} <= set(sent)
    assert sent[f"{key(sr)}-VID-patient-review"]["recipient"] == [sr["subject"]]
    assert sent[f"{key(sr)}-VID-referrer-review"]["recipient"] == [sr["requester"]]


def test_mmrsv_path_books_at_the_clinic_with_bek(stack: Stack, fhir: FhirClient) -> None:
    sr = referral_on_server(fhir, extension=assessments(limited_psychiatric_comorbidity="not-met"))
    review = review_in(fhir, sr, "recommended")
    assert outputs(review)["recommendation"] == "MMRsv"
    decide(fhir, review, "MMRsv")
    booking = wait_for(lambda: tasks(fhir, sr).get("booking"), what="the booking Task")
    assert booking["owner"]["reference"] == f"Organization/{LUND}"
    sent = wait_for(lambda: (m := messages(fhir, sr)) and len(m) >= 2 and m, what="the BEK confirmations")
    assert set(sent) == {f"{key(sr)}-BEK-referrer-review", f"{key(sr)}-BEK-patient-review"}
    assert "mmrpv-intake" not in tasks(fhir, sr)


def test_a_decision_against_the_recommendation_is_recorded(stack: Stack, fhir: FhirClient) -> None:
    sr = referral_on_server(fhir)
    decide(fhir, review_in(fhir, sr, "recommended"), "MMRsv")
    review = wait_for(
        lambda: (r := tasks(fhir, sr)["referral-review"])["status"] == "completed" and r,
        what="the adapter to act on the decision",
    )
    assert outputs(review)["recommendation"] == "MMRpv" and outputs(review)["decision"] == "MMRsv"
    assert "avviker" in outputs(review)["deviation"]


def test_incomplete_referral_kom_then_supplement_resumes_the_review(stack: Stack, fhir: FhirClient) -> None:
    sr = referral_on_server(fhir, sections={k: v for k, v in SECTIONS.items() if k != "pain-history"})
    review = review_in(fhir, sr, "awaiting-supplement")
    assert review["status"] == "on-hold"
    kom = wait_for(lambda: messages(fhir, sr).get(f"{key(sr)}-KOM-referrer-1"), what="the KOM")
    assert kom["recipient"] == [sr["requester"]]
    assert "Smärtanamnes" in kom["payload"][0]["contentString"]
    assert "Aktuell behandling" not in kom["payload"][0]["contentString"]  # only what is missing
    current = fhir.read("ServiceRequest", sr["id"])  # the referrer supplements: a new version
    fhir.update({**current, "note": [*current["note"], section("pain-history", "Smärta sedan 2019.")]})
    review = review_in(fhir, sr, "recommended")
    decide(fhir, review, "MMRpv")
    review_in(fhir, sr, "forwarded")


def test_questionnaire_path_task_for_the_patient_then_answer_then_recommendation(
    stack: Stack, fhir: FhirClient
) -> None:
    sr = referral_on_server(fhir, extension=[])  # the referral says nothing about the criteria
    review_in(fhir, sr, "awaiting-patient")
    qtask = wait_for(lambda: tasks(fhir, sr).get("complete-questionnaire"), what="the questionnaire Task")
    assert qtask["owner"] == qtask["for"] == sr["subject"]
    canonical = qtask["input"][0]["valueCanonical"]
    assert canonical.startswith("https://mmr-adapter.se/fhir/Questionnaire/mmr-intake")
    answers = MMRPV_ANSWERS  # grouped as the form groups them, every required question answered
    fhir.create(
        {
            "resourceType": "QuestionnaireResponse",
            "status": "completed",
            "questionnaire": canonical,
            "basedOn": [qtask["focus"]],
            "subject": sr["subject"],
            "authored": datetime.now(STHLM).isoformat(),
            "item": response(answers)["item"],
        }
    )
    review = review_in(fhir, sr, "recommended")
    assert outputs(review)["recommendation"] == "MMRpv"
    done = tasks(fhir, sr)["complete-questionnaire"]
    assert done["status"] == "completed" and done["output"][0]["valueReference"]["reference"].startswith(
        "QuestionnaireResponse/"
    )


def _without_sandbox_answer_pages(requests: list[tuple[str, str, bytes]]) -> list[tuple[str, str, bytes]]:
    """The requests but the next pages of an answers' search on the sandbox, which ignores that search's
    parameters and answers every response it holds (the tests before may have left more than a page)."""
    return [r for r in requests if not r[1].startswith("/fhir/QuestionnaireResponse?_count=")]


def _without_answers_revinclude(client: FhirClient, state: State) -> Runner:
    """A worker's runner as on a server that cannot revinclude the answers (the sandbox, or HAPI made to look so)."""
    runner = Runner(client, state, routine=ROUTINE, now=lambda: datetime.now(STHLM))
    runner._server_search = ServerSearch(answers=False)
    return runner


def _load_through(
    proxy: FaultProxy, runner: Runner, event: Event
) -> tuple[Referral | None, list[tuple[str, str, bytes]]]:
    """One load of the event's referral, and the requests it sent (found by its own X-Request-Id: the stack's
    workers use the proxy too), the sandbox's unfiltered answer pages left out."""
    request_id = f"load-{event.resource_id}-{event.kind}"
    proxy.record()
    with structlog.contextvars.bound_contextvars(correlation_id=request_id):
        loaded = runner.read_referral(event.resource_id, event)
    seen = proxy.by_event()[request_id]
    return loaded, _without_sandbox_answer_pages(seen) if FHIR_SERVER != "hapi" else seen


def test_every_review_event_costs_one_read_and_at_most_one_transaction(
    stack: Stack, fhir: FhirClient, proxy: FaultProxy
) -> None:
    """Through the recording proxy, event by event (each event's requests carry its correlation id):
    one read, plus the transaction when the event writes. The read is the referral's search; where
    the server cannot revinclude the answers (the sandbox), a batch of it and the answers' search for
    the patient the event names, whose answer counts only if the referral as read asks for it."""
    proxy.record()
    sr = referral_on_server(fhir, extension=[])
    qtask = wait_for(lambda: tasks(fhir, sr).get("complete-questionnaire"), what="the questionnaire Task")
    fhir.create(
        {
            "resourceType": "QuestionnaireResponse",
            "status": "completed",
            "questionnaire": qtask["input"][0]["valueCanonical"],
            "basedOn": [qtask["focus"]],
            "subject": sr["subject"],
            "authored": datetime.now(STHLM).isoformat(),
            "item": response(MMRPV_ANSWERS)["item"],
        }
    )
    wait_for(lambda: tasks(fhir, sr)["complete-questionnaire"]["status"] == "completed", what="the answer linked")
    mentions = (f"ServiceRequest?_id={sr['id']}&".encode(),)
    events = {
        rid: requests
        for rid, requests in proxy.by_event().items()
        if any(m in path.encode() or m in body for m in mentions for _, path, body in requests)
    }
    if FHIR_SERVER != "hapi":
        events = {rid: _without_sandbox_answer_pages(requests) for rid, requests in events.items()}
    kinds = {rid: request_kinds(requests) for rid, requests in events.items()}
    assert len(events) >= 2, kinds  # the arrival, the answer, and the echoes of our own writes that came in time
    assert all(k in (["read"], ["read", "transaction"]) for k in kinds.values()), kinds
    assert sum(k == ["read", "transaction"] for k in kinds.values()) >= 2, kinds  # the arrival's, the answer's
    reads = [requests[0] for requests in events.values()]
    if FHIR_SERVER == "hapi":
        assert all(m == "GET" and "_revinclude:iterate=QuestionnaireResponse:based-on" in p for m, p, _ in reads)
    else:
        assert all(m == "POST" and b"QuestionnaireResponse?subject=" in body for m, _, body in reads), reads


def _overdue_counted(stack: Stack) -> int:
    """``mmr_workflow_events_total{event="review-overdue-flagged"}`` as the API's /metrics shows it."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{stack.api_url}/metrics", timeout=5).text
    return sum(
        int(s.value)
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "mmr_workflow_events_total" and s.labels.get("event") == "review-overdue-flagged"
    )


def _overdue_flags(fhir: FhirClient) -> list[str]:
    """Every overdue flag on the server (of any referral), by business identifier."""
    system = codes().system("notification-type")
    found = fhir.search("Communication", {"category": f"{system}|overdue", "_count": "100"})
    return [
        i["value"]
        for m in found
        if m["resourceType"] == "Communication"
        for i in m.get("identifier") or ()
        if i.get("system") == codes().identifier_system("communication")
    ]


def _fire(stack: Stack, at: datetime) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "adapter.cli", "fire-timers", "--at", at.isoformat()],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_due_date_across_easter_and_overdue_flagged_exactly_once(stack: Stack, fhir: FhirClient, clock: State) -> None:
    maundy_thursday = datetime(2027, 3, 25, 10, 0, tzinfo=STHLM)
    clock.clock.set(maundy_thursday)
    sr = referral_on_server(fhir, extension=assessments(work_status="not-met"))
    review = review_in(fhir, sr, "recommended")
    # Good Friday and Easter Monday are holidays: Tue 30, Wed 31, Thu 1 April are the three days.
    due = datetime.fromisoformat(review["restriction"]["period"]["end"])
    assert due == datetime(2027, 4, 1, 16, 0, tzinfo=STHLM)
    overdue = f"{key(sr)}-overdue-clinic-review"

    # Before any firing: a timer fired in 2027 also flags the reviews earlier tests left open, and a
    # snapshot taken while one of those is being written (on the server, not yet counted) never
    # balances. Taken here, every flag the firings below cause is in both differences.
    counted_before, flags_before = _overdue_counted(stack), len(_overdue_flags(fhir))
    clock.clock.set(datetime(2027, 4, 1, 15, 0, tzinfo=STHLM))  # an hour early: nothing of ours
    assert _fire(stack, datetime(2027, 4, 1, 15, 0, tzinfo=STHLM)).returncode == 0
    clock.clock.set(datetime(2027, 4, 1, 17, 0, tzinfo=STHLM))
    at = datetime(2027, 4, 1, 17, 0, tzinfo=STHLM)
    # Ours only: other tests' referrals may have theirs moved or armed by the worker meanwhile.
    ours = {m for m, when in clock.timers.all() if m.startswith(f"{sr['id']}|") and when <= at.timestamp()}
    assert ours
    with ThreadPoolExecutor(2) as pool:  # two beat runs racing
        runs = list(pool.map(lambda _: _fire(stack, at), range(2)))
    assert all(r.returncode == 0 for r in runs)
    # Each of ours fired by one of them, and gone (the sum counts other referrals' too).
    assert sum(int(r.stdout.split()[0]) for r in runs) >= len(ours)
    assert not ours & {m for m, when in clock.timers.all() if when <= at.timestamp()}
    flag = wait_for(lambda: messages(fhir, sr).get(overdue), what="the overdue flag")
    assert code(flag["category"][0]) == "overdue"
    # Counted in /metrics, once per new flag on the server: ours once (firing in 2027 also flags the
    # reviews earlier tests left open, so there may be more; a test of its own Redis counts elsewhere).
    assert overdue in wait_for(
        lambda: _overdue_counted(stack) - counted_before == len(f := _overdue_flags(fhir)) - flags_before and f,
        what="every new overdue flag counted in /metrics",
    )
    assert _fire(stack, datetime(2027, 4, 2, 9, 0, tzinfo=STHLM)).returncode == 0
    assert sum(1 for k in messages(fhir, sr) if "overdue" in k) == 1
    assert _overdue_flags(fhir).count(overdue) == 1
    assert _overdue_counted(stack) - counted_before == len(_overdue_flags(fhir)) - flags_before


def test_duplicate_and_out_of_order_notifications_change_nothing(stack: Stack, fhir: FhirClient, state: State) -> None:
    sr = referral_on_server(fhir)
    first = review_in(fhir, sr, "recommended")
    decide(fhir, first, "MMRpv")
    review_in(fhir, sr, "forwarded")
    wait_for(lambda: len(messages(fhir, sr)) >= 2, what="the confirmations")
    before = (tasks(fhir, sr), messages(fhir, sr))
    processed = sum(int(v) for v in state.metrics.events_and_latency()[0].values())
    old = fhir.vread("Task", first["id"], "1")  # the review Task as it was on arrival: a stale, late event
    for _ in range(3):
        assert stack.notify("PUT", f"/Task/{first['id']}", json.dumps(old)).status_code == 202
        assert stack.notify("PUT", f"/ServiceRequest/{sr['id']}", json.dumps(sr)).status_code == 202
    wait_for(
        lambda: sum(int(v) for v in state.metrics.events_and_latency()[0].values()) >= processed + 6, what="the replays"
    )
    after = (tasks(fhir, sr), messages(fhir, sr))
    assert {k: t["meta"]["versionId"] for k, t in after[0].items()} == {
        k: t["meta"]["versionId"] for k, t in before[0].items()
    }
    assert set(after[1]) == set(before[1])


def test_two_referrals_processed_concurrently_do_not_disturb_each_other(stack: Stack, fhir: FhirClient) -> None:
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(
            lambda ext: referral_on_server(fhir, extension=ext), [assessments(), assessments(group_treatment="not-met")]
        )
    ra, rb = review_in(fhir, a, "recommended"), review_in(fhir, b, "recommended")
    assert outputs(ra)["recommendation"] == "MMRpv" and outputs(rb)["recommendation"] == "MMRsv"
    assert ra["focus"] == {"reference": f"ServiceRequest/{a['id']}"}
    assert rb["focus"] == {"reference": f"ServiceRequest/{b['id']}"}


def test_rejection_sends_avv_to_both(stack: Stack, fhir: FhirClient) -> None:
    sr = referral_on_server(fhir)
    review = review_in(fhir, sr, "recommended")
    fhir.update(
        {**review, "status": "rejected", "statusReason": {"text": "Ej aktuell för MMR"}},
        if_match=review["meta"]["versionId"],
    )
    sent = wait_for(lambda: (m := messages(fhir, sr)) and len(m) >= 2 and m, what="the AVV")
    assert {f"{key(sr)}-AVV-referrer-review", f"{key(sr)}-AVV-patient-review"} <= set(sent)
    assert "Ej aktuell för MMR" in sent[f"{key(sr)}-AVV-referrer-review"]["payload"][0]["contentString"]


def test_revocation_cancels_open_tasks_and_sends_avb(stack: Stack, fhir: FhirClient) -> None:
    sr = referral_on_server(fhir, extension=[])  # review on hold, questionnaire open
    review_in(fhir, sr, "awaiting-patient")
    fhir.update({**fhir.read("ServiceRequest", sr["id"]), "status": "revoked"})
    wait_for(lambda: all(t["status"] == "cancelled" for t in tasks(fhir, sr).values()), what="open Tasks cancelled")
    sent = wait_for(lambda: (m := messages(fhir, sr)).get(f"{key(sr)}-AVB-patient-revoked") and m, what="the AVB")
    assert f"{key(sr)}-AVB-referrer-revoked" in sent


@pytest.mark.parametrize(
    "broken",
    [
        "no subject",
        "unknown performer",
        pytest.param(
            "broken references",
            marks=(
                pytest.mark.skipif(
                    FHIR_SERVER == "hapi",
                    reason="HAPI refuses a reference to a missing resource (HAPI-1094): "
                    "such a referral cannot exist there",
                )
            ),
        ),
    ],
)
def test_a_malformed_referral_never_crashes_the_worker(
    stack: Stack, fhir: FhirClient, state: State, broken: str
) -> None:
    # R4 requires a subject, and the server enforces it: the worst it stores is one naming no patient.
    overrides = {
        "no subject": {"subject": {"display": "Okänd patient"}},
        "unknown performer": {"performer": [{"display": "Okänd"}]},
        "broken references": {
            "requester": {"reference": "PractitionerRole/does-not-exist"},
            "supportingInfo": [{"reference": "Consent/does-not-exist"}],
        },
    }[broken]
    sr = referral_on_server(fhir, **overrides)
    if broken == "unknown performer":
        wait_for(
            lambda: state.events.seen((f"changed:ServiceRequest/{sr['id']}/_history/1",)), what="the event handled"
        )
        # An MMR referral is never dropped: the referral coordinator holds it (tests/test_mistakes_e2e.py).
        assert set(tasks(fhir, sr)) == {"referral-routing"}
    else:
        review_in(fhir, sr, "awaiting-supplement", "recommended", "registered", "assigned")
    assert not [e for e in state.dlq.entries() if e["envelope"].get("resource_id") == sr["id"]]
    healthy = referral_on_server(fhir)  # and the worker goes on with the next referral
    review_in(fhir, healthy, "recommended")


def test_a_guessed_answers_search_for_another_patient_is_never_taken_for_the_referrals(
    stack: Stack, fhir: FhirClient, proxy: FaultProxy
) -> None:  # the stack's setup installs the directory
    """A server that cannot revinclude the answers (HAPI made to look like one here, or the sandbox): the
    shell guesses the answers' search from the event's patient and sends it with the referral's search.
    A notification naming another patient must cost a second read, never that patient's answers."""
    sr = referral_on_server(fhir, extension=[])
    other = referral_on_server(fhir, extension=[])
    qr = fhir.create(
        {
            "resourceType": "QuestionnaireResponse",
            "status": "completed",
            "subject": other["subject"],
            "questionnaire": questionnaire_canonical().split("|")[0],
            "basedOn": [{"reference": f"ServiceRequest/{sr['id']}"}],
            "authored": datetime.now(STHLM).isoformat(),
        }
    )
    with FhirClient(proxy.base_url, retries=0, headers={"Cache-Control": "no-cache"}) as through_proxy:
        runner = _without_answers_revinclude(through_proxy, State.from_url("memory://"))
        forged = {**sr, "subject": other["subject"]}
        loaded, seen = _load_through(proxy, runner, Event("changed", "ServiceRequest", sr["id"], "1", forged))
    assert loaded is not None and loaded.service_request["subject"] == sr["subject"]
    sent = [(m, p, json.loads(b) if b else None) for m, p, b in seen]
    assert request_kinds(seen) == ["read", "read"], sent  # the batch with the wrong guess, then the right search
    assert other["subject"]["reference"] in json.dumps(sent[0][2])
    assert sent[1][0] == "GET" and f"subject={sr['subject']['reference']}&" in sent[1][1]
    if FHIR_SERVER == "hapi":  # the sandbox ignores the search's parameters and answers every response it holds
        assert f"QuestionnaireResponse/{qr['id']}" not in loaded.resources


def test_an_event_that_names_no_patient_still_costs_one_read(stack: Stack, fhir: FhirClient, proxy: FaultProxy) -> None:
    """A timer (or an id-only ServiceRequest notification) names no patient to guess the answers' search
    from. On a server that cannot revinclude the answers, the searches the referral's last load needed
    after its first read are remembered in Redis, so another worker process sends them with the
    referral's search: one read, not two."""
    sr = referral_on_server(fhir, extension=[])
    state = State.from_url("memory://")
    with FhirClient(proxy.base_url, retries=0, headers={"Cache-Control": "no-cache"}) as through_proxy:
        first, second = (_without_answers_revinclude(through_proxy, state) for _ in range(2))  # two processes
        assert first.read_referral(sr["id"], Event("changed", "ServiceRequest", sr["id"], "1", sr)) is not None
        remembered = state.guesses.phase_two(sr["id"])
        assert any(
            url.startswith(f"QuestionnaireResponse?subject={sr['subject']['reference']}&") for url in remembered
        ), remembered
        loaded, seen = _load_through(proxy, second, Event("timer", "ServiceRequest", sr["id"], timer="overdue"))
    assert loaded is not None
    assert request_kinds(seen) == ["read"], seen
    assert all(url.encode() in seen[0][2] for url in remembered)
