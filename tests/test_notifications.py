"""Every notification shape HAPI sends becomes the right envelopes; anything else a clear 4xx."""

from __future__ import annotations

import json

import pytest

from adapter.intake.notifications import BadNotification, parse_delete, parse_post, parse_put
from tests.shapes import r4_backport, subscription_status

TASK = {"resourceType": "Task", "id": "abc", "meta": {"versionId": "3"}, "status": "requested", "intent": "order"}
FHIR = "application/fhir+json; charset=UTF-8"


def test_put_with_payload_carries_type_id_version_and_body() -> None:
    (env,) = parse_put("Task", "abc", json.dumps(TASK).encode(), FHIR).envelopes
    assert (env.kind, env.resource_type, env.resource_id, env.version_id) == ("changed", "Task", "abc", "3")
    assert env.resource == TASK
    assert env.dedup_keys == ("changed:Task/abc/_history/3",)


def test_put_without_version_or_id_in_body_is_still_an_event() -> None:
    body = {"resourceType": "Task", "status": "requested", "intent": "order"}
    (env,) = parse_put("Task", "abc", json.dumps(body).encode(), FHIR).envelopes
    assert (env.resource_id, env.version_id, env.dedup_keys) == ("abc", None, ())


def test_put_with_relative_id_in_body_is_accepted() -> None:
    (env,) = parse_put("Task", "abc", json.dumps({**TASK, "id": "Task/abc"}).encode(), FHIR).envelopes
    assert env.resource_id == "abc"


def test_delete_has_no_body() -> None:
    (env,) = parse_delete("Task", "abc").envelopes
    assert (env.kind, env.resource_type, env.resource_id) == ("deleted", "Task", "abc")


def test_empty_post_is_a_ping() -> None:
    (env,) = parse_post(b"", None).envelopes
    assert env.kind == "ping"


@pytest.mark.parametrize("content", ["full", "id-only"])
def test_r4_backport_event(content: str) -> None:
    body = r4_backport("s1", 7, "Task/abc", TASK if content == "full" else None)
    parsed = parse_post(body, FHIR)
    (env,) = parsed.envelopes
    assert (env.kind, env.resource_type, env.resource_id) == ("changed", "Task", "abc")
    assert env.topic_event == "Subscription/s1#7"
    assert (env.resource is not None) == (content == "full")
    assert parsed.shape == f"topic-r4-{content}"


def test_r4_backport_empty_content_is_a_ping_with_its_event_number() -> None:
    (env,) = parse_post(r4_backport("s1", 8, None), FHIR).envelopes
    assert env.kind == "ping" and env.topic_event == "Subscription/s1#8"


def test_r4_backport_delete_request() -> None:
    (env,) = parse_post(r4_backport("s1", 9, "Task/abc", None, method="DELETE"), FHIR).envelopes
    assert env.kind == "deleted"


@pytest.mark.parametrize("kind", ["handshake", "heartbeat"])
@pytest.mark.parametrize("builder", [r4_backport, subscription_status])
def test_handshake_and_heartbeat_are_acknowledged_without_events(kind: str, builder) -> None:
    parsed = parse_post(builder("s1", 0, None, None, kind=kind), FHIR)
    assert parsed.acknowledge_only and kind in parsed.shape


@pytest.mark.parametrize(("r5", "shape"), [(True, "topic-r5-full"), (False, "topic-r4b-full")])
def test_subscription_status_r4b_and_r5(r5: bool, shape: str) -> None:
    parsed = parse_post(subscription_status("s2", 3, "Task/abc", TASK, r5=r5), FHIR)
    (env,) = parsed.envelopes
    assert (env.resource_id, env.topic_event, parsed.shape) == ("abc", "Subscription/s2#3", shape)


def test_posted_single_resource_is_an_event() -> None:
    (env,) = parse_post(json.dumps(TASK).encode(), FHIR).envelopes
    assert (env.resource_type, env.resource_id) == ("Task", "abc")


@pytest.mark.parametrize(("call", "status", "words"), [
    (lambda: parse_post(b"{not json", FHIR), 400, "not valid JSON"),
    (lambda: parse_post(b"<Bundle/>", "application/fhir+xml"), 415, "not supported"),
    (lambda: parse_post(b'{"resourceType":"Bundle","type":"searchset","entry":[]}', FHIR), 400, "searchset"),
    (lambda: parse_post(b'{"resourceType":"Bundle","type":"history","entry":[{"resource":{"resourceType":"Patient"}}]}',
                        FHIR), 400, "first entry"),
    (lambda: parse_post(b"[1, 2]", FHIR), 400, "resourceType"),
    (lambda: parse_put("Task", "abc", json.dumps({**TASK, "resourceType": "Patient"}).encode(), FHIR), 400,
     "path says"),
    (lambda: parse_put("Task", "xyz", json.dumps(TASK).encode(), FHIR), 400, "differs"),
    (lambda: parse_put("task", "abc", b"", FHIR), 400, "resource type"),
    (lambda: parse_put("Task", "a b", b"", FHIR), 400, "valid FHIR id"),
    (lambda: parse_post(r4_backport("s", 1, None, kind="bogus"), FHIR), 400, "Unknown notification type"),
])
def test_bad_input_is_refused_with_a_reason(call, status: int, words: str) -> None:
    with pytest.raises(BadNotification) as info:
        call()
    assert info.value.status == status and words in info.value.text
