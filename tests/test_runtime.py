"""The runtime end to end: sandbox FHIR server, Redis, the API and a Celery worker, all real."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from adapter.fhir.client import FhirClient
from adapter.pipeline.envelope import Envelope
from adapter.pipeline.state import State
from adapter.workflow.core import Timer
from tests.support.faults import FaultProxy, Rule, transaction_about
from tests.support.referrals import (
    TEST_NAME,
    TEST_PERSONNUMMER,
    new_referral,
    review_tasks,
    subscriptions_paused,
)
from tests.support.shapes import r4_backport, subscription_status
from tests.support.stack import LOGS, REDIS_URL, PrivateRedis, Stack, adapter_env, start_worker, stop, unique, wait_for

pytestmark = pytest.mark.e2e


def one_review_task(fhir: FhirClient, referral_id: str, timeout: float = 20) -> dict[str, Any]:
    tasks = wait_for(
        lambda: review_tasks(fhir, referral_id),
        timeout=timeout,
        what=f"the review Task of ServiceRequest/{referral_id}",
    )
    assert len(tasks) == 1, f"expected one review Task, found {len(tasks)}"
    return tasks[0]


def processed(state: State) -> int:
    events, _ = state.metrics.events_and_latency()
    return sum(int(v) for k, v in events.items() if k.split("|")[0] in ("applied", "nothing", "duplicate", "ignored"))


@pytest.fixture
def quiet(stack: Stack, fhir: FhirClient) -> Iterator[Stack]:
    """Subscriptions off: the only notifications are the ones the test sends."""
    with subscriptions_paused(fhir):
        yield stack


# ------------------------------------------------------------------ real subscription


def test_a_real_subscription_delivers_a_change_that_ends_in_the_review_task(stack: Stack, fhir: FhirClient) -> None:
    sr = new_referral(fhir)
    task = one_review_task(fhir, sr["id"])
    assert task["status"] == "received"
    assert task["owner"]["reference"].startswith("PractitionerRole/SE2321000255-SML1R")  # a Lund reviewer
    assert task["for"] == sr["subject"]
    assert task["identifier"][0]["value"] == f"{sr['identifier'][0]['value']}-referral-review"
    assert task["meta"]["source"].startswith("https://mmr-adapter.se/fhir/Device/mmr-adapter#")  # audit trail


# ------------------------------------------------------------------ every HAPI shape


def _shapes() -> dict[str, Any]:
    def put_payload(sr: dict[str, Any], _t: Any) -> tuple[str, str, bytes]:
        return "PUT", f"/ServiceRequest/{sr['id']}", json.dumps(sr).encode()

    def put_stripped(sr: dict[str, Any], _t: Any) -> tuple[str, str, bytes]:
        body = {k: v for k, v in sr.items() if k not in ("meta", "id")}
        return "PUT", f"/ServiceRequest/{sr['id']}", json.dumps(body).encode()

    def ping(_sr: Any, _t: Any) -> tuple[str, str, bytes]:
        return "POST", "", b""

    def r4_full(sr: dict[str, Any], n: int) -> tuple[str, str, bytes]:
        return "POST", "", r4_backport(unique("sub"), n, f"ServiceRequest/{sr['id']}", sr)

    def r4_id_only(sr: dict[str, Any], n: int) -> tuple[str, str, bytes]:
        return "POST", "", r4_backport(unique("sub"), n, f"ServiceRequest/{sr['id']}")

    def r4_empty(_sr: Any, n: int) -> tuple[str, str, bytes]:
        return "POST", "", r4_backport(unique("sub"), n, None)

    def r4b(sr: dict[str, Any], n: int) -> tuple[str, str, bytes]:
        return "POST", "", subscription_status(unique("sub"), n, f"ServiceRequest/{sr['id']}", sr, r5=False)

    def r5(sr: dict[str, Any], n: int) -> tuple[str, str, bytes]:
        return "POST", "", subscription_status(unique("sub"), n, f"ServiceRequest/{sr['id']}", None, r5=True)

    def post_resource(sr: dict[str, Any], _t: Any) -> tuple[str, str, bytes]:
        return "POST", "", json.dumps(sr).encode()

    return {
        "rest-hook PUT with payload": put_payload,
        "rest-hook PUT without id and versionId": put_stripped,
        "rest-hook empty POST (ping)": ping,
        "R4 backport full-resource": r4_full,
        "R4 backport id-only": r4_id_only,
        "R4 backport empty": r4_empty,
        "R4B SubscriptionStatus": r4b,
        "R5 subscription-notification id-only": r5,
        "POST of a single resource": post_resource,
    }


@pytest.mark.parametrize("shape", list(_shapes()))
def test_each_hapi_notification_shape_leads_to_the_event_being_processed(
    quiet: Stack, fhir: FhirClient, shape: str
) -> None:
    sr = new_referral(fhir)
    method, path, body = _shapes()[shape](sr, 1)
    reply = quiet.notify(method, path, body)
    assert reply.status_code == 202, reply.text
    # HAPI parses its topic notification's reply as a transaction response: a Bundle, never an outcome.
    topic = shape.startswith(("R4 backport", "R4B", "R5"))
    assert reply.json()["resourceType"] == ("Bundle" if topic else "OperationOutcome")
    one_review_task(fhir, sr["id"])


def test_rest_hook_delete_is_processed(quiet: Stack, fhir: FhirClient) -> None:
    sr = new_referral(fhir)
    assert quiet.notify("PUT", f"/ServiceRequest/{sr['id']}", json.dumps(sr)).status_code == 202
    first = one_review_task(fhir, sr["id"])
    fhir.delete("Task", first["id"])
    reply = quiet.notify("DELETE", f"/Task/{first['id']}", None)
    assert reply.status_code == 202
    second = one_review_task(fhir, sr["id"])  # registered anew: the referral does not go silent
    assert second["id"] != first["id"]


@pytest.mark.parametrize("kind", ["handshake", "heartbeat"])
def test_handshake_and_heartbeat_are_acknowledged(stack: Stack, kind: str) -> None:
    for body in (r4_backport("s1", 0, None, kind=kind), subscription_status("s1", 0, None, kind=kind)):
        reply = stack.notify("POST", "", body)
        assert reply.status_code == 200
        assert reply.json() == {"resourceType": "Bundle", "type": "transaction-response"}


# ------------------------------------------------------------------ nothing doubled


def test_the_same_notification_five_times_concurrently_has_one_effect(
    quiet: Stack, fhir: FhirClient, state: State
) -> None:
    sr = new_referral(fhir)
    before = processed(state)
    with ThreadPoolExecutor(5) as pool:
        replies = list(pool.map(lambda _: quiet.notify("PUT", f"/ServiceRequest/{sr['id']}", json.dumps(sr)), range(5)))
    assert [r.status_code for r in replies] == [202] * 5
    wait_for(lambda: processed(state) >= before + 5, what="all five deliveries to be processed")
    one_review_task(fhir, sr["id"])


def test_a_referral_whose_identifier_holds_search_syntax_delivered_five_times_at_once_gets_one_review_task(
    quiet: Stack, fhir: FhirClient
) -> None:
    """HAPI parses If-None-Exist as a search URL: , is OR, | splits system and value, \\ escapes, + is a space."""
    value = f"R,1|a\\b+c&d#e-{uuid.uuid4().hex[:8]}"
    sr = new_referral(fhir, identifier=[{"system": "https://ehr.example.se/remiss", "value": value}])
    with ThreadPoolExecutor(5) as pool:
        replies = list(pool.map(lambda _: quiet.notify("PUT", f"/ServiceRequest/{sr['id']}", json.dumps(sr)), range(5)))
    assert [r.status_code for r in replies] == [202] * 5
    task = one_review_task(fhir, sr["id"])
    assert {"system": "https://mmr-adapter.se/fhir/identifier/task", "value": f"{value}-referral-review"} in task[
        "identifier"
    ]


def test_a_topic_event_number_is_no_identity_two_events_with_one_number_are_both_processed(
    quiet: Stack, fhir: FhirClient
) -> None:
    """HAPI's event number is an in-memory delivery counter: after a restart the same pair recurs."""
    first, second = new_referral(fhir), new_referral(fhir)
    sub = unique("sub")
    assert quiet.notify("POST", "", r4_backport(sub, 7, f"ServiceRequest/{first['id']}")).status_code == 202
    one_review_task(fhir, first["id"])
    assert quiet.notify("POST", "", r4_backport(sub, 7, f"ServiceRequest/{second['id']}")).status_code == 202
    one_review_task(fhir, second["id"])


def test_event_numbers_restarting_at_one_request_a_reconciliation_and_later_events_are_processed(
    quiet: Stack, fhir: FhirClient, state: State
) -> None:
    sub = unique("sub")
    before = new_referral(fhir)
    assert quiet.notify("POST", "", r4_backport(sub, 41, f"ServiceRequest/{before['id']}")).status_code == 202
    one_review_task(fhir, before["id"])
    reconciled = state.reconciliation.last() or 0.0
    state.r.delete("mmr:event-number-gap")  # another test's gap may still hold the one-per-10-s report
    after = new_referral(fhir)  # HAPI restarted: its counter starts again
    assert quiet.notify("POST", "", r4_backport(sub, 1, f"ServiceRequest/{after['id']}")).status_code == 202
    one_review_task(fhir, after["id"])
    wait_for(lambda: (state.reconciliation.last() or 0.0) > reconciled, what="the reconciliation the restart asked for")


@pytest.mark.parametrize("write_lands", [True, False], ids=["killed-after-write", "killed-before-write"])
def test_a_worker_killed_mid_event_gets_it_redelivered_and_the_effect_happens_once(
    stack: Stack, fhir: FhirClient, proxy: FaultProxy, state: State, write_lands: bool
) -> None:
    from adapter.pipeline.worker import PROCESS, app

    queue = unique("mmr-kill")
    env = adapter_env(proxy.base_url, queue, stack.api_url, MMR_VISIBILITY_TIMEOUT="2", MMR_LOCK_TIMEOUT="3")
    with subscriptions_paused(fhir):
        sr = new_referral(fhir)
        hold = proxy.add(
            Rule(transaction_about(sr["id"]), hold=threading.Event(), forward_after_hold=write_lands, times=1)
        )
        worker = start_worker(env, f"kill-{write_lands}", concurrency=1)
        envelope = Envelope("changed", "test", "ServiceRequest", sr["id"], "1", sr)
        app.send_task(PROCESS, args=[envelope.to_dict()], queue=queue)
        wait_for(hold.held.is_set, what="the worker to reach its transaction")
        stop(worker, sig=9)  # SIGKILL: no chance to acknowledge or clean up
        assert hold.hold is not None
        hold.hold.set()
        if write_lands:
            one_review_task(fhir, sr["id"])
        replacement = start_worker(env, f"kill-{write_lands}-replacement", concurrency=1)
        try:
            wait_for(lambda: state.events.seen(envelope.dedup_keys), timeout=30, what="the redelivered event")
            one_review_task(fhir, sr["id"])
        finally:
            stop(replacement)


def test_an_event_past_its_time_limit_is_retried_not_acknowledged_without_effect(
    stack: Stack, fhir: FhirClient, proxy: FaultProxy, state: State
) -> None:
    """A FHIR server that holds a transaction longer than the task may run: the soft time limit ends
    the attempt, which counts as a failure and is retried; the event has its effect once."""
    from adapter.pipeline.worker import PROCESS, app

    queue = unique("mmr-limit")
    # Visibility 2 s: the soft limit is its floor, 15 s; the FHIR timeout is longer, so the limit ends it.
    env = adapter_env(
        proxy.base_url, queue, stack.api_url, MMR_VISIBILITY_TIMEOUT="2", MMR_LOCK_TIMEOUT="60", MMR_FHIR_TIMEOUT="120"
    )
    with subscriptions_paused(fhir):
        sr = new_referral(fhir)
        hold = proxy.add(Rule(transaction_about(sr["id"]), hold=threading.Event(), forward_after_hold=False, times=1))
        worker = start_worker(env, "limit", concurrency=1)
        try:
            envelope = Envelope("changed", "test", "ServiceRequest", sr["id"], "1", sr)
            app.send_task(PROCESS, args=[envelope.to_dict()], queue=queue)
            wait_for(hold.held.is_set, what="the worker to reach its transaction")
            one_review_task(fhir, sr["id"], timeout=60)
            wait_for(lambda: state.events.seen(envelope.dedup_keys), timeout=30, what="the retried event to be done")
            assert not [e for e in state.dlq.entries() if e["envelope"].get("resource_id") == sr["id"]]
        finally:
            assert hold.hold is not None
            hold.hold.set()
            stop(worker)


def test_an_unreadable_envelope_is_dead_lettered_not_dropped(stack: Stack, state: State) -> None:
    from adapter.pipeline.worker import PROCESS, app

    queue = unique("mmr-unreadable")
    worker = start_worker({**stack.env, "MMR_QUEUE": queue}, "unreadable", concurrency=1)
    try:
        marker = unique("odd")
        app.send_task(PROCESS, args=[{"kind": "changed", "unexpected": marker}], queue=queue)
        found = wait_for(
            lambda: next((e for e in state.dlq.entries() if e["envelope"].get("unexpected") == marker), None),
            what="the unreadable envelope in the dead-letter store",
        )
        assert found["reason"] == "unreadable envelope: TypeError"
        state.dlq.take(found["id"])
    finally:
        stop(worker)


def test_poison_notifications_get_a_4xx_outcome_and_the_next_referral_is_processed(
    stack: Stack, fhir: FhirClient
) -> None:
    many = {
        "resourceType": "Bundle",
        "type": "history",
        "entry": [{"resource": {"resourceType": "Basic", "id": f"b{i}"}} for i in range(10_000)],
    }
    poison = [
        b"[" * 480 + b"]" * 480,
        b"{" * 5000,
        json.dumps(many).encode(),
        json.dumps({"resourceType": 5}).encode(),
        json.dumps({"resourceType": "Bundle", "entry": 7}).encode(),
        json.dumps({"resourceType": "Parameters", "parameter": "abc"}).encode(),
    ]
    for body in poison:
        reply = stack.notify("POST", "", body)
        assert 400 <= reply.status_code < 500, (reply.status_code, body[:40])
        assert reply.json()["resourceType"] == "OperationOutcome"
    sr = new_referral(fhir)  # the sandbox notifies the API, as for every write
    one_review_task(fhir, sr["id"])


# ------------------------------------------------------------------ failures: retried, parked, replayed


def test_fhir_server_answering_503_for_a_while_then_recovering(
    quiet: Stack, fhir: FhirClient, proxy: FaultProxy
) -> None:
    sr = new_referral(fhir)
    rule = proxy.add(Rule(transaction_about(sr["id"]), status=503, times=4))
    assert quiet.notify("PUT", f"/ServiceRequest/{sr['id']}", json.dumps(sr)).status_code == 202
    one_review_task(fhir, sr["id"])
    assert rule.hits == 4


def _cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "adapter.cli", *args], env=stack.env, capture_output=True, text=True, timeout=60
    )


def _dead_letter_for(stack: Stack, referral_id: str) -> dict[str, Any] | None:
    listing = _cli(stack, "dlq", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    return next((e for e in json.loads(listing.stdout) if e["envelope"]["resource_id"] == referral_id), None)


@pytest.mark.parametrize("status", [422, 503], ids=["permanent-4xx", "transient-until-attempts-run-out"])
def test_a_failing_event_is_dead_lettered_and_replays_after_the_fix(
    quiet: Stack, fhir: FhirClient, proxy: FaultProxy, status: int
) -> None:
    sr = new_referral(fhir)
    proxy.add(Rule(transaction_about(sr["id"]), status=status))
    assert quiet.notify("PUT", f"/ServiceRequest/{sr['id']}", json.dumps(sr)).status_code == 202
    entry = wait_for(lambda: _dead_letter_for(quiet, sr["id"]), timeout=30, what="the dead letter")
    # The status and the code; never the server's own words, which may quote the resource.
    assert str(status) in entry["reason"] and "transient" in entry["reason"] and "FaultProxy" not in entry["reason"]
    assert review_tasks(fhir, sr["id"]) == []
    table = _cli(quiet, "dlq", "list")
    assert entry["id"] in table.stdout
    proxy.clear()  # the cause is fixed
    replay = _cli(quiet, "dlq", "replay", entry["id"])
    assert replay.returncode == 0, replay.stderr
    one_review_task(fhir, sr["id"])
    assert _dead_letter_for(quiet, sr["id"]) is None


def test_a_version_conflict_is_planned_again_not_overwritten(quiet: Stack, fhir: FhirClient, proxy: FaultProxy) -> None:
    sr = new_referral(fhir)
    rule = proxy.add(Rule(transaction_about(sr["id"]), status=412, times=1))
    assert quiet.notify("PUT", f"/ServiceRequest/{sr['id']}", json.dumps(sr)).status_code == 202
    one_review_task(fhir, sr["id"])
    assert rule.hits == 1


# ------------------------------------------------------------------ reconciliation


def test_reconciliation_picks_up_a_change_made_while_no_subscription_existed(quiet: Stack, fhir: FhirClient) -> None:
    from adapter.pipeline.worker import app

    sr = new_referral(fhir)
    assert review_tasks(fhir, sr["id"]) == []
    app.send_task("mmr.reconcile", queue=quiet.queue)
    one_review_task(fhir, sr["id"])


# ------------------------------------------------------------------ operations


def test_health_and_metrics(stack: Stack) -> None:
    import httpx

    health = httpx.get(f"{stack.api_url}/health")
    assert health.status_code == 200 and health.json()["checks"] == {"redis": "ok", "fhir": "ok"}
    assert set(health.json()["details"]) == {"subscriptions"}  # reported, never deciding readiness
    text = httpx.get(f"{stack.api_url}/metrics").text
    for name in (
        "mmr_notifications_received_total",
        "mmr_events_total",
        "mmr_queue_depth",
        "mmr_dead_letters",
        "mmr_event_processing_seconds_bucket",
        "mmr_notify_seconds_bucket",
        "mmr_timers_due",
    ):
        assert name in text, name


def test_the_heartbeat_comes_back_and_its_age_shows_in_metrics(stack: Stack, fhir: FhirClient, state: State) -> None:
    import time

    import httpx

    from adapter.pipeline import heartbeat

    written = heartbeat.write(fhir, state)
    wait_for(lambda: (state.heartbeat.last_delivered() or 0.0) >= written, what="the heartbeat's notification")
    text = httpx.get(f"{stack.api_url}/metrics").text
    age = float(re.search(r"^mmr_heartbeat_age_seconds (\S+)$", text, re.M)[1])  # type: ignore[index]
    assert 0 <= age <= time.time() - written + 1


def test_the_heartbeat_age_counts_from_the_last_heartbeat_that_came_back(redis_client: Any) -> None:
    """Not from the last one written: a heartbeat the server never notified does not make it young."""
    import redis

    own = State(redis.Redis.from_url(REDIS_URL.rsplit("/", 1)[0] + "/15", decode_responses=True))
    own.r.delete("mmr:heartbeat:first-written", "mmr:heartbeat:delivered")
    try:
        assert own.heartbeat.age(1000.0) is None  # nothing written yet: no claim either way
        own.heartbeat.written(100.0)
        assert own.heartbeat.age(160.0) == 60.0  # written, never came back
        own.heartbeat.delivered(100.0)
        own.heartbeat.written(200.0)  # the server stops delivering: this one never comes back
        own.heartbeat.delivered(90.0)  # a late notification of an older one changes nothing
        assert own.heartbeat.age(260.0) == 160.0
    finally:
        own.r.delete("mmr:heartbeat:first-written", "mmr:heartbeat:delivered")


def test_the_worker_and_scheduler_health_checks(stack: Stack, state: State) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "adapter.cli", *args], env=stack.env, capture_output=True, text=True, timeout=60
        )

    assert run("ping-worker").returncode == 0  # the stack's worker runs on this host
    stale = Timer("health-probe", "no-such-referral", datetime.now(UTC) - timedelta(hours=2))
    state.timers.set((stale,))  # as if beat had been down for two hours
    try:
        late = run("check-scheduler", "--lag", "3600")
        assert late.returncode == 1 and "1 timer(s) due" in late.stdout
    finally:
        state.timers.claim(stale.member, datetime.now(UTC))
    assert run("check-scheduler", "--lag", "3600").returncode == 0


def test_metrics_show_timers_left_unfired(stack: Stack, state: State) -> None:
    import httpx

    def due() -> float:
        text = httpx.get(f"{stack.api_url}/metrics").text
        return float(next(line.split()[1] for line in text.splitlines() if line.startswith("mmr_timers_due ")))

    before = due()
    missed = Timer("metrics-probe", "no-such-referral", datetime.now(UTC) - timedelta(minutes=5))
    state.timers.set((missed,))  # as if beat had not run for five minutes
    try:
        assert due() == before + 1
    finally:
        state.timers.claim(missed.member, datetime.now(UTC))


def test_no_personnummer_or_name_reaches_a_log_line(stack: Stack, fhir: FhirClient) -> None:
    sr = new_referral(fhir, note=[{"text": f"Patient {TEST_NAME} {TEST_PERSONNUMMER}"}])
    one_review_task(fhir, sr["id"])
    logs = "".join(p.read_text(errors="replace") for p in LOGS.glob("*.log"))
    assert sr["id"] in logs  # the logs do talk about this referral ...
    for secret in (TEST_PERSONNUMMER, "19121212-1212", "Tolvansson", "Tolvan"):
        assert secret not in logs  # ... but never name the patient


def test_a_planted_personnummer_and_name_never_reach_a_log_line_even_through_retries(
    stack: Stack, fhir: FhirClient, proxy: FaultProxy, state: State
) -> None:
    planted = uuid.uuid4().int
    personnummer = f"19{planted % 90 + 10:02d}0{planted % 9 + 1}1{planted % 9 + 1}-{planted % 9000 + 1000}"
    name = f"Plantedname{uuid.uuid4().hex[:8]}"
    events_before, _ = state.metrics.events_and_latency()
    with subscriptions_paused(fhir):
        sr = new_referral(fhir, note=[{"text": f"Patient {name} {personnummer}"}])
        proxy.add(Rule(transaction_about(sr["id"]), status=503, times=3))  # more than one attempt absorbs
        reply = stack.notify("PUT", f"/ServiceRequest/{sr['id']}", json.dumps(sr))
        assert reply.status_code == 202
        one_review_task(fhir, sr["id"])
    retried = "retried|ServiceRequest"
    assert int(state.metrics.events_and_latency()[0].get(retried, 0)) > int(events_before.get(retried, 0))
    logs = "".join(p.read_text(errors="replace") for p in LOGS.glob("*.log"))
    seen = reply.text + json.dumps(dict(reply.headers)) + logs
    assert sr["id"] in seen
    assert personnummer not in seen and personnummer.replace("-", "") not in seen and name not in seen


def _log_lines(name: str) -> list[dict[str, Any]]:
    """The JSON lines of one process's log (Celery's own banner lines are not JSON and are skipped)."""
    path = LOGS / f"{name}.log"
    lines = []
    for line in path.read_text(errors="replace").splitlines() if path.exists() else ():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            lines.append(record)
    return lines


def test_the_correlation_id_goes_from_the_webhook_to_the_fhir_write(quiet: Stack, fhir: FhirClient) -> None:
    sr = new_referral(fhir)
    request_id = unique("req")
    reply = quiet.notify("PUT", f"/ServiceRequest/{sr['id']}", json.dumps(sr), extra={"X-Request-Id": request_id})
    assert reply.status_code == 202, reply.text
    task = one_review_task(fhir, sr["id"])
    assert task["meta"]["source"].endswith(f"#{request_id}")  # the write says which request caused it
    accepted = [r for r in _log_lines("api") if r.get("correlation_id") == request_id]
    assert [r["message"] for r in accepted] == ["notification queued"]

    def processed_line() -> list[dict[str, Any]]:
        return [
            r
            for r in _log_lines("worker")
            if r.get("correlation_id") == request_id and r.get("message") == "event processed"
        ]

    done = wait_for(processed_line, what="the worker's log line for the event")
    assert done[0]["outcome"] == "applied"
    steps = [r for r in _log_lines("worker") if r.get("correlation_id") == request_id and r.get("message") == "step"]
    assert steps and all(r["referral"] == sr["id"] for r in steps)  # every step of the event carries it


def test_a_job_after_an_event_logs_under_its_own_correlation_id_not_the_events(
    stack: Stack, fhir: FhirClient, proxy: FaultProxy
) -> None:
    """A worker process that handled an event, then a job: the job's lines carry no trace of the event."""
    from adapter.pipeline.worker import PROCESS, SWEEP, app

    queue = unique("mmr-jobs")  # its own queue: the sweep queues every open referral of the session there
    worker = start_worker(adapter_env(proxy.base_url, queue, stack.api_url), "jobs", concurrency=1)
    try:
        with subscriptions_paused(fhir):
            sr = new_referral(fhir)
        request_id = unique("req")
        app.send_task(
            PROCESS,
            args=[Envelope("changed", "test", "ServiceRequest", sr["id"], correlation_id=request_id).to_dict()],
            queue=queue,
        )
        wait_for(
            lambda: [
                r
                for r in _log_lines("jobs")
                if r.get("correlation_id") == request_id and r.get("message") == "event processed"
            ],
            what="the event's line",
        )
        app.send_task(SWEEP, queue=queue)
        [line, *_] = wait_for(
            lambda: [r for r in _log_lines("jobs") if r.get("job") == "sweep"], what="the sweep's line"
        )
        assert line["correlation_id"] != request_id and "event" not in line and "attempt" not in line
    finally:
        stop(worker)


def test_a_request_id_longer_than_hapi_keeps_is_replaced_by_one_that_survives_in_meta_source(
    quiet: Stack, fhir: FhirClient
) -> None:
    sr = new_referral(fhir)
    too_long = "r" * 17  # HAPI would keep 16 of these as meta.source's fragment: no longer our id
    reply = quiet.notify("PUT", f"/ServiceRequest/{sr['id']}", json.dumps(sr), extra={"X-Request-Id": too_long})
    assert reply.status_code == 202, reply.text
    fragment = one_review_task(fhir, sr["id"])["meta"]["source"].rpartition("#")[2]
    assert fragment != too_long and re.fullmatch(r"[A-Za-z0-9._-]{1,16}", fragment)
    assert [r for r in _log_lines("api") if r.get("correlation_id") == fragment]  # the logs know it


def test_a_referral_that_is_not_ours_is_ignored_at_debug_level(quiet: Stack, fhir: FhirClient, state: State) -> None:
    other = {"coding": [{"system": "http://snomed.info/sct", "code": "71388002"}]}  # not a referral for MMR
    sr = new_referral(fhir, category=[other], code=other)
    request_id = unique("req")
    events_before, _ = state.metrics.events_and_latency()
    delivered_before = state.metrics.delivered_outcomes().get("ignored", 0)
    reply = quiet.notify("PUT", f"/ServiceRequest/{sr['id']}", json.dumps(sr), extra={"X-Request-Id": request_id})
    assert reply.status_code == 202, reply.text
    wait_for(
        lambda: (
            int(state.metrics.events_and_latency()[0].get("ignored|ServiceRequest", 0))
            > int(events_before.get("ignored|ServiceRequest", 0))
        ),
        what="the ServiceRequest to be ignored",
    )
    wait_for(
        lambda: state.metrics.delivered_outcomes().get("ignored", 0) > delivered_before,
        what="the accepted event's own outcome",
    )
    assert state.events.seen(
        Envelope("changed", "test", "ServiceRequest", sr["id"], sr["meta"]["versionId"]).dedup_keys
    )
    worker_lines = [r for r in _log_lines("worker") if r.get("correlation_id") == request_id]
    assert [r for r in worker_lines if r.get("level") not in ("debug",)] == []  # the stack logs at info: silent
    assert not review_tasks(fhir, sr["id"])


# ------------------------------------------------------------------ the notification is a hint


def test_an_event_about_someone_elses_resource_is_ignored_done_and_never_retried(
    quiet: Stack, fhir: FhirClient, state: State
) -> None:
    appointment = fhir.create(
        {
            "resourceType": "Appointment",
            "status": "booked",
            "participant": [{"status": "accepted", "actor": {"display": "Someone else"}}],
        }
    )
    events_before, _ = state.metrics.events_and_latency()
    dead_before = state.dlq.size()
    assert quiet.notify("PUT", f"/Appointment/{appointment['id']}", json.dumps(appointment)).status_code == 202
    wait_for(
        lambda: (
            int(state.metrics.events_and_latency()[0].get("ignored|Appointment", 0))
            > int(events_before.get("ignored|Appointment", 0))
        ),
        what="the Appointment to be ignored",
    )
    events_after, _ = state.metrics.events_and_latency()
    assert events_after.get("retried|Appointment") == events_before.get("retried|Appointment")
    assert state.dlq.size() == dead_before


def test_a_forged_version_in_a_notification_neither_skips_nor_pre_marks_the_real_one(
    quiet: Stack, fhir: FhirClient, state: State
) -> None:
    sr = new_referral(fhir)
    forged = {**sr, "meta": {**sr["meta"], "versionId": "99"}}
    assert quiet.notify("PUT", f"/ServiceRequest/{sr['id']}", json.dumps(forged)).status_code == 202
    one_review_task(fhir, sr["id"])
    real = Envelope("changed", "test", "ServiceRequest", sr["id"], sr["meta"]["versionId"])
    wait_for(lambda: state.events.seen(real.dedup_keys), what="the version read from the server to be marked")
    assert not state.events.seen(Envelope("changed", "test", "ServiceRequest", sr["id"], "99").dedup_keys)


def test_a_retried_event_carries_only_its_label_in_the_message_headers_and_no_debug_line_quotes_it(
    stack: Stack, fhir: FhirClient, proxy: FaultProxy, private_redis: PrivateRedis
) -> None:
    """Every publish, retries included, says only the event's label in Celery's argsrepr (monitoring
    tools show the headers); a worker logging at DEBUG still never writes the resource's content."""
    from celery import Celery

    from adapter.pipeline.worker import PROCESS, _publish_options

    name = f"Plantedname{uuid.uuid4().hex[:8]}"
    queue = unique("mmr-headers")
    # The retry waits 7.5-15 s in kombu's unacked hash: longer than the worker takes to answer its
    # first ping on a loaded machine (with 2-4 s the retry was over before the test looked, once in CI).
    env = adapter_env(
        proxy.base_url,
        queue,
        stack.api_url,
        MMR_REDIS_URL=private_redis.url,
        MMR_LOG_LEVEL="DEBUG",
        MMR_RETRY_BACKOFF="15",
        MMR_VISIBILITY_TIMEOUT="120",
    )
    raw = redis.Redis.from_url(private_redis.url, decode_responses=True)
    with subscriptions_paused(fhir):
        sr = new_referral(fhir, note=[{"text": f"Patient {name}"}])
        proxy.add(Rule(transaction_about(sr["id"]), status=503, times=2))
        envelope = Envelope("changed", "test", "ServiceRequest", sr["id"], sr["meta"]["versionId"], sr)
        Celery("headers", broker=private_redis.url).send_task(
            PROCESS, args=[envelope.to_dict()], queue=queue, **_publish_options(envelope)
        )
        worker = start_worker(env, "headers", concurrency=1, broker=Celery("headers-ping", broker=private_redis.url))
        try:

            def retried_message() -> list[dict[str, Any]]:  # a retry waits its countdown in kombu's unacked hash
                held = [json.loads(v)[0] for v in raw.hvals("unacked")]
                return [m for m in held if m["headers"].get("task") == PROCESS and m["headers"].get("retries")]

            [message, *_] = wait_for(retried_message, timeout=30, what="the retried message")
            assert message["headers"]["argsrepr"] == f"[{envelope.label!r}]"
            assert name not in json.dumps(message["headers"])
            one_review_task(fhir, sr["id"], timeout=60)
        finally:
            stop(worker)
    debug = (LOGS / "headers.log").read_text(errors="replace")
    assert '"level": "debug"' in debug and sr["id"] in debug
    assert name not in debug
