"""``mmr-adapter setup`` against the real sandbox: idempotent, and says plainly what is missing."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from datetime import datetime
from typing import Any

import httpx
import pytest

from adapter.conformance.install import conformance_resources
from adapter.conformance.package import is_topic, package
from adapter.fhir.client import FhirClient, NotFound
from adapter.operations.setup import (
    SEND_DELETES,
    _create,
    check_capabilities,
    directory_resources,
    wanted_subscriptions,
)
from tests.support.faults import FaultProxy, Rule
from tests.support.stack import PrivateRedis, Stack, adapter_env, spawn, start_worker, stop, unique, wait_for

pytestmark = pytest.mark.e2e


TOPIC_URL = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic.url"
TOPIC_VERSION = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic.version"


def _canonical(resource: dict[str, Any]) -> tuple[str | None, str | None]:
    """(url, version) of a conformance resource; a backport topic carries them as extensions."""
    if not is_topic(resource):
        return resource.get("url"), resource.get("version")
    ext = {e.get("url"): e.get("valueUri") or e.get("valueString") for e in resource.get("extension") or ()}
    return ext.get(TOPIC_URL), ext.get(TOPIC_VERSION)


def _setup(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "adapter.cli", "setup", *args],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_setup_twice_leaves_one_copy_of_each_resource(stack: Stack, fhir: FhirClient) -> None:
    second = _setup(stack)  # the stack fixture ran it once already
    assert second.returncode == 0, second.stderr
    assert "created" not in second.stdout and "updated" not in second.stdout.split("setup done")[0]
    for resource in directory_resources():
        matches = fhir.search(
            resource["resourceType"], {"identifier": f"urn:oid:1.2.752.29.4.19|{resource['identifier'][0]['value']}"}
        )
        assert len(matches) == 1, resource["id"]
    subs = [s for s in fhir.search("Subscription", {"_count": "100"}) if s["resourceType"] == "Subscription"]
    ours = Counter(s["criteria"] for s in subs if s["channel"]["endpoint"] == f"{stack.api_url}/notify")
    assert ours and all(n == 1 for n in ours.values()), ours
    installed = conformance_resources(package())
    assert {r["resourceType"] for r in installed} >= {"CodeSystem", "ValueSet", "StructureDefinition", "Basic"}
    topics = [b for b in fhir.search("Basic", {"_count": "100"}) if is_topic(b)]
    for resource in installed:
        url, version = _canonical(resource)
        assert url and version, resource["id"]
        rt = resource["resourceType"]
        found = topics if is_topic(resource) else fhir.search(rt, {"url": url, "version": version})
        copies = [r for r in found if r["resourceType"] == rt and _canonical(r) == (url, version)]
        assert len(copies) == 1, f"{len(copies)} copies of {rt} {url}|{version}"


def test_classic_subscriptions_ask_hapi_for_delete_messages(stack: Stack, fhir: FhirClient) -> None:
    subs = [
        s
        for s in fhir.search("Subscription", {"_count": "100"})
        if s["resourceType"] == "Subscription" and s["channel"]["endpoint"] == f"{stack.api_url}/notify"
    ]
    assert subs
    for sub in subs:
        assert {"url": SEND_DELETES, "valueBoolean": True} in sub["channel"].get("extension", []), sub["criteria"]


def test_setup_repairs_a_subscription_the_server_switched_off(stack: Stack, fhir: FhirClient) -> None:
    subs = [s for s in fhir.search("Subscription", {"_count": "100"}) if s["resourceType"] == "Subscription"]
    victim = subs[0]
    fhir.update({**victim, "status": "error", "error": "delivery failed"})
    result = _setup(stack)
    assert result.returncode == 0 and "replaced  Subscription/" in result.stdout, result.stdout
    with pytest.raises(NotFound):  # replaced, not re-activated: HAPI 8.2 may never deliver for it again
        fhir.read("Subscription", victim["id"])
    # An errored Subscription with a fallback comes back with the fallback's criteria (setup's rule), and
    # the server's order decides which Subscription is the victim.
    fallbacks = {s["criteria"]: s.get("_fallback") for s in wanted_subscriptions("", "", topic_based=False)}
    accepted = {victim["criteria"], fallbacks.get(victim["criteria"])}
    again = [
        s
        for s in fhir.search("Subscription", {"_count": "100"})
        if s["resourceType"] == "Subscription"
        and s["criteria"] in accepted
        and s["channel"]["endpoint"] == victim["channel"]["endpoint"]
    ]
    assert len(again) == 1 and again[0]["status"] in ("requested", "active")


def test_a_subscription_that_errors_on_activation_is_replaced_by_its_fallback(
    proxy: FaultProxy, fhir: FhirClient
) -> None:
    """A server that accepts a Subscription and puts it in error while activating gets the fallback
    criteria as a new Subscription, the errored one deleted: never an update that re-activates it.
    The FaultProxy (a fake) answers the look after the create with an errored Subscription, as the
    sandbox activates every criteria it accepts."""
    endpoint = "http://127.0.0.1:9/notify"  # nothing listens: the test's Subscriptions deliver nowhere
    base = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "setup fallback test",
        "channel": {"type": "rest-hook", "endpoint": endpoint},
    }
    errored = fhir.create({**base, "criteria": "Basic?code=mmr-setup-test-errored"})
    answer = json.dumps({**errored, "status": "error", "error": "criteria not supported"}).encode()
    proxy.add(
        Rule(
            lambda method, path, _: method == "GET" and path.startswith("/fhir/Subscription/"),
            status=200,
            times=1,
            body=answer,
        )
    )
    try:
        with FhirClient(proxy.base_url, retries=0) as client:
            replacement = _create(
                client,
                {**base, "criteria": "Basic?code=mmr-setup-test", "_fallback": "Basic?code=mmr-setup-test-fallback"},
            )
        assert replacement["criteria"] == "Basic?code=mmr-setup-test-fallback"
        assert replacement["id"] != errored["id"] and replacement.get("status") in ("requested", "active")
        with pytest.raises(NotFound):  # the errored one is gone, not switched back on
            fhir.read("Subscription", errored["id"])
    finally:
        ours = [
            s
            for s in fhir.search("Subscription", {"_count": "200"})
            if s.get("resourceType") == "Subscription" and (s.get("channel") or {}).get("endpoint") == endpoint
        ]
        for sub in ours:
            fhir.delete("Subscription", sub["id"])


def test_the_directory_can_be_found_by_identifier_and_name(stack: Stack, fhir: FhirClient) -> None:
    lund = fhir.search("Organization", {"name": "Smärtrehabilitering SUS Lund"})
    assert [o["id"] for o in lund] == ["SE2321000255-SML1"]
    sites = fhir.search("Location", {"organization": "Organization/SE2321000255-MMRPV"})
    assert sorted(s["address"]["city"] for s in sites) == ["Helsingborg", "Kristianstad", "Malmö"]
    reviewers = fhir.search("PractitionerRole", {"organization": "Organization/SE2321000255-SML1"})
    assert len(reviewers) == 3


def test_capability_check_names_what_is_missing() -> None:
    statement = {
        "fhirVersion": "4.0.1",
        "rest": [
            {"mode": "server", "interaction": [{"code": "batch"}], "resource": [{"type": "Patient"}, {"type": "Task"}]}
        ],
    }
    fatal, warnings = check_capabilities(statement, topic_based=True)
    assert "resource type ServiceRequest is not supported" in fatal
    assert "resource type Subscription is not supported" in fatal
    assert any("transactions" in f for f in fatal)
    assert any("SubscriptionTopic" in f for f in fatal)
    assert "resource type Consent is not supported" in warnings
    assert check_capabilities({"fhirVersion": "5.0.0", "rest": []}, False)[0][0].startswith("FHIR version 5.0.0")


def test_setup_against_nothing_fails_with_one_clear_line(stack: Stack) -> None:
    env = {**stack.env, "MMR_FHIR_BASE_URL": "http://127.0.0.1:9/fhir", "MMR_FHIR_RETRIES": "0"}
    result = subprocess.run(
        [sys.executable, "-m", "adapter.cli", "setup"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "CapabilityStatement could not be read" in result.stdout


def test_topic_based_setup_subscribes_to_our_topics_and_delivers(stack: Stack, fhir: FhirClient) -> None:
    import httpx

    from tests.support.referrals import new_referral, review_tasks, subscriptions_paused
    from tests.support.stack import wait_for

    with subscriptions_paused(fhir):
        result = _setup(stack, "--topic-based")
        assert result.returncode == 0, result.stdout + result.stderr
        backport = [
            s
            for s in fhir.search("Subscription", {"_count": "100"})
            if s["resourceType"] == "Subscription" and s["criteria"].startswith("https://mmr-adapter.se")
        ]
        try:
            assert {s["criteria"].rsplit("/", 1)[1] for s in backport} >= {"mmr-referral", "mmr-task"}
            wait_for(
                lambda: all(fhir.read("Subscription", s["id"])["status"] == "active" for s in backport),
                what="the handshakes to activate the topic subscriptions",
            )
            sr = new_referral(fhir)
            wait_for(lambda: review_tasks(fhir, sr["id"]), what="the review Task via a topic notification")
            metrics = httpx.get(f"{stack.api_url}/metrics").text
            assert 'mmr_notifications_received_total{shape="topic-r4-full"}' in metrics
            assert 'shape="topic-r4-handshake"' in metrics
        finally:
            for s in backport:
                fhir.delete("Subscription", s["id"])


def test_setup_proves_delivery_and_says_why_when_no_notification_comes_back(stack: Stack) -> None:
    """A server that accepts the Subscriptions but whose notifications never reach the adapter.

    A server of its own: the sandbox retries failed deliveries in line with every other one, so a
    dead endpoint on the suite's server would hold up everybody's notifications.
    """
    from adapter.dev.sandbox import free_port, start_sandbox

    server = start_sandbox(0)
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens: every delivery fails
    own_store = stack.env["MMR_REDIS_URL"].rsplit("/", 1)[0] + "/15"  # the stack's worker records nothing here
    env = {**stack.env, "MMR_FHIR_BASE_URL": server.base_url, "MMR_PUBLIC_URL": nowhere, "MMR_REDIS_URL": own_store}
    try:
        result = subprocess.run(
            [sys.executable, "-m", "adapter.cli", "setup", "--no-conformance", "--delivery-timeout", "6"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.stop()
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if "delivery:" in line]
    assert len(lines) == 1 and "no notification came back within 6 s" in lines[0], result.stdout


def test_the_first_setup_proved_delivery_through_the_heartbeat(stack: Stack, fhir: FhirClient) -> None:
    from adapter.pipeline.heartbeat import HEARTBEAT_ID
    from adapter.pipeline.state import State
    from tests.support.stack import REDIS_URL

    delivered = State.from_url(REDIS_URL).heartbeat.last_delivered()
    written = fhir.read("Basic", HEARTBEAT_ID)["meta"]["lastUpdated"]
    assert delivered is not None and delivered <= datetime.fromisoformat(written).timestamp()


def test_setup_moves_its_own_subscriptions_to_a_new_endpoint_and_proves_delivery_through_it(
    private_redis: PrivateRedis,
) -> None:
    """The adapter moves (a new MMR_PUBLIC_URL) on a server it already set up. setup knows its old
    Subscriptions by their mark, moves them to the new endpoint and proves delivery through it; the
    new API's /health names the old ones until then. Then an endpoint where nothing listens, while
    the API before it still runs: the proof must fail in one line, not come back through the old one.

    A server, Redis and queue of the test's own: Subscriptions to a dead endpoint would hold up the
    suite's server (the sandbox retries failed deliveries in line), and the worker must record the
    heartbeat where this setup looks for it."""
    from celery import Celery

    from adapter.dev.sandbox import free_port, start_sandbox
    from adapter.pipeline.delivery import tagged

    server = start_sandbox(0)
    old_url, new_url = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    nowhere = f"http://127.0.0.1:{free_port()}"
    env = adapter_env(server.base_url, unique("mmr-move"), old_url, MMR_REDIS_URL=private_redis.url)
    processes = [start_worker(env, "move-worker", concurrency=1, broker=Celery("move", broker=private_redis.url))]
    fhir = FhirClient(server.base_url, retries=0, headers={"Cache-Control": "no-cache"})

    def api(url: str, name: str) -> subprocess.Popen[bytes]:
        process = spawn(
            name, ["serve", "--host", "127.0.0.1", "--port", url.rsplit(":", 1)[1]], {**env, "MMR_PUBLIC_URL": url}
        )
        processes.append(process)
        wait_for(lambda: _answers(f"{url}/health"), timeout=30, what=f"{name} to become ready")
        return process

    def setup(url: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "adapter.cli", "setup", "--no-conformance", "--delivery-timeout", "10"],
            env={**env, "MMR_PUBLIC_URL": url},
            capture_output=True,
            text=True,
            timeout=120,
        )

    def endpoints() -> Counter[str]:
        subs = [s for s in fhir.search("Subscription", {"_count": "200"}) if s["resourceType"] == "Subscription"]
        assert all(tagged(s) for s in subs), "every Subscription setup writes carries the adapter's mark"
        return Counter(s["channel"]["endpoint"] for s in subs)

    try:
        old_api = api(old_url, "move-api-old")
        first = setup(old_url)
        assert first.returncode == 0, first.stdout + first.stderr
        count = endpoints()[f"{old_url}/notify"]
        assert count and set(endpoints()) == {f"{old_url}/notify"}
        stop(old_api)

        api(new_url, "move-api-new")
        named = httpx.get(f"{new_url}/health", timeout=10).json()["details"]["subscriptions"]
        assert named and f"of ours deliver to {old_url}/notify, not to {new_url}/notify" in named, named

        moved = setup(new_url)
        assert moved.returncode == 0, moved.stdout + moved.stderr
        assert endpoints() == Counter({f"{new_url}/notify": count}), "the old endpoint's Subscriptions stayed"
        assert moved.stdout.count("removed") + moved.stdout.count("replaced") >= count, moved.stdout
        wait_for(
            lambda: httpx.get(f"{new_url}/health", timeout=10).json()["details"]["subscriptions"] == "ok",
            what="/health to find nothing wrong with the Subscriptions",
        )

        fooled = setup(nowhere)  # the new API still runs: a heartbeat through it proves nothing about `nowhere`
        assert fooled.returncode == 1, fooled.stdout + fooled.stderr
        lines = [line for line in fooled.stdout.splitlines() if "delivery:" in line]
        assert len(lines) == 1 and "no notification came back within 10 s" in lines[0], fooled.stdout
    finally:
        for process in processes:
            stop(process)
        fhir.close()
        server.stop()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
