"""Every notification shape HAPI sends becomes the right envelopes; anything else a clear 4xx."""

from __future__ import annotations

import json

import pytest

from adapter.intake.notifications import BadNotification, parse_delete, parse_post, parse_put
from tests.support.shapes import BACKPORT_STATUS, r4_backport, subscription_status

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


@pytest.mark.parametrize(
    ("call", "status", "words"),
    [
        (lambda: parse_post(b"{not json", FHIR), 400, "not valid JSON"),
        (lambda: parse_post(b"<Bundle/>", "application/fhir+xml"), 415, "not supported"),
        (
            lambda: parse_post(b'{"resourceType":"Bundle","type":"searchset","entry":[]}', FHIR),
            400,
            "history or subscription-notification",
        ),
        (
            lambda: parse_post(
                b'{"resourceType":"Bundle","type":"history","entry":[{"resource":{"resourceType":"Patient"}}]}', FHIR
            ),
            400,
            "first entry",
        ),
        (lambda: parse_post(b"[1, 2]", FHIR), 400, "resourceType"),
        (
            lambda: parse_put("Task", "abc", json.dumps({**TASK, "resourceType": "Patient"}).encode(), FHIR),
            400,
            "differs from the path's resource type",
        ),
        (lambda: parse_put("Task", "xyz", json.dumps(TASK).encode(), FHIR), 400, "differs"),
        (lambda: parse_put("task", "abc", b"", FHIR), 400, "resource type"),
        (lambda: parse_put("Task", "a b", b"", FHIR), 400, "valid FHIR id"),
        (lambda: parse_post(r4_backport("s", 1, None, kind="bogus"), FHIR), 400, "not a known notification type"),
    ],
)
def test_bad_input_is_refused_with_a_reason(call, status: int, words: str) -> None:
    with pytest.raises(BadNotification) as info:
        call()
    assert info.value.status == status and words in info.value.text


# ------------------------------------------------------------------ type confusion, depth, size


def _bundle(status_params: list, *entries: dict) -> bytes:
    status = {"resourceType": "Parameters", "meta": {"profile": [BACKPORT_STATUS]}, "parameter": status_params}
    return json.dumps({"resourceType": "Bundle", "type": "history", "entry": [{"resource": status}, *entries]}).encode()


def _event(*parts: dict) -> dict:
    return {"name": "notification-event", "part": list(parts)}


TYPE_ = {"name": "type", "valueCode": "event-notification"}
SUB = {"name": "subscription", "valueReference": {"reference": "Subscription/s1"}}
NUMBER = {"name": "event-number", "valueString": "7"}


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b'{"resourceType": 7}', "resourceType"),
        (b'{"resourceType": "Bundle", "type": "history", "entry": 3}', "Bundle.entry"),
        (b'{"resourceType": "Bundle", "type": "history", "entry": [3]}', "Bundle.entry[0]"),
        (b'{"resourceType": "Bundle", "type": ["history"]}', "Bundle.type"),
        (_bundle("abc"), "Bundle.entry[0].resource.parameter"),  # type: ignore[arg-type]
        (_bundle([TYPE_, SUB, 5]), "Bundle.entry[0].resource.parameter[2]"),
        (
            _bundle([TYPE_, SUB, {"name": "notification-event", "part": "abc"}]),
            "Bundle.entry[0].resource.parameter[2].part",
        ),
        (
            _bundle([TYPE_, SUB, _event(NUMBER, {"name": "focus", "valueReference": "Task/abc"})]),
            "Bundle.entry[0].resource.parameter[2].part[1].valueReference",
        ),
        (
            _bundle([TYPE_, SUB, _event(NUMBER, {"name": "focus", "valueReference": {"reference": 12}})]),
            "Bundle.entry[0].resource.parameter[2].part[1].valueReference.reference",
        ),
        (
            _bundle([TYPE_, SUB, _event(NUMBER, {"name": "focus", "valueReference": {"reference": "Task/a b"}})]),
            "Bundle.entry[0].resource.parameter[2].part[1].valueReference.reference",
        ),
        (
            _bundle([TYPE_, SUB, _event({"name": "event-number", "valueString": "seven"})]),
            "Bundle.entry[0].resource.parameter[2].part[0].valueString",
        ),
        (
            _bundle([TYPE_, SUB, _event({"name": "event-number", "valueBoolean": True})]),
            "Bundle.entry[0].resource.parameter[2].part[0].valueBoolean",
        ),
        (_bundle([{"name": 3, "valueCode": "event-notification"}]), "Bundle.entry[0].resource.parameter[0].name"),
        (
            _bundle([TYPE_, {"name": "subscription", "valueReference": {"reference": "Subscription/x y"}}]),
            "Bundle.entry[0].resource.parameter[1].valueReference.reference",
        ),
        (
            _bundle([TYPE_, SUB], {"resource": {"resourceType": 1, "id": "abc"}}),
            "Bundle.entry[1].resource.resourceType",
        ),
        (_bundle([TYPE_, SUB], {"resource": {"resourceType": "Task", "id": "a/../b"}}), "Bundle.entry[1].resource.id"),
        (
            _bundle([TYPE_, SUB], {"resource": {"resourceType": "Task", "id": "abc", "meta": {"versionId": 3}}}),
            "Bundle.entry[1].resource.meta.versionId",
        ),
        (_bundle([TYPE_, SUB], {"fullUrl": "http://hapi/fhir/task/abc"}), "Bundle.entry[1].fullUrl"),
        (
            _bundle([TYPE_, SUB], {"request": {"method": "PUT", "url": "Task/../../admin"}}),
            "Bundle.entry[1].request.url",
        ),
        (_bundle([TYPE_, SUB], {"request": {"method": 1, "url": "Task/abc"}}), "Bundle.entry[1].request.method"),
        (json.dumps({**TASK, "meta": {"versionId": "1 2"}}).encode(), "Resource.meta.versionId"),
        (json.dumps({**TASK, "id": 5}).encode(), "Resource.id"),
        (
            subscription_status("s2", 3, "Task/abc", TASK).replace(b'"eventNumber": "3"', b'"eventNumber": [3]'),
            "Bundle.entry[0].resource.notificationEvent[0].eventNumber",
        ),
    ],
)
def test_every_element_read_is_type_checked_and_named(body: bytes, where: str) -> None:
    with pytest.raises(BadNotification) as info:
        parse_post(body, FHIR)
    assert info.value.status == 400
    assert info.value.expression == where and info.value.text.startswith(f"{where}: ")


def test_event_numbers_may_be_integers_or_digit_strings() -> None:
    body = subscription_status("s2", 3, "Task/abc", TASK).replace(b'"eventNumber": "3"', b'"eventNumber": 3')
    (env,) = parse_post(body, FHIR).envelopes
    assert env.topic_event == "Subscription/s2#3"


def test_the_bundle_fallback_checks_what_it_queues() -> None:
    """Without notification-event parts the entries say what changed: their types and ids are checked too."""
    good = _bundle([TYPE_, SUB], {"fullUrl": "http://hapi:8080/fhir/Task/abc", "request": {"method": "DELETE"}})
    (env,) = parse_post(good, FHIR).envelopes
    assert (env.kind, env.resource_type, env.resource_id) == ("deleted", "Task", "abc")
    bad = _bundle([TYPE_, SUB], {"fullUrl": "http://hapi:8080/fhir/Task/abc%0d%0aX", "request": {"method": "PUT"}})
    with pytest.raises(BadNotification, match="valid FHIR id"):
        parse_post(bad, FHIR)


@pytest.mark.parametrize("depth", [65, 480, 5000, 200_000])
def test_deep_nesting_is_refused_before_it_is_parsed(depth: int) -> None:
    for body in (
        b'{"resourceType": "Task", "id": "abc", "x": ' + b"[" * depth + b"]" * depth + b"}",
        b'{"resourceType": "Task", "id": "abc", "x": ' + b'{"a": ' * depth + b"1" + b"}" * depth + b"}",
    ):
        with pytest.raises(BadNotification) as info:
            parse_post(body, FHIR)
        assert info.value.status == 400 and "nested deeper than 64" in info.value.text
    with pytest.raises(BadNotification) as info:  # never closed: not JSON, and never handed to the decoder
        parse_post(b"[" * depth + b"1", FHIR)
    assert info.value.status == 400 and "do not balance" in info.value.text


def test_nesting_up_to_the_limit_is_accepted_and_brackets_in_strings_do_not_count() -> None:
    inner = {"resourceType": "Task", "id": "abc", "note": [{"text": "[[[[{{{{" * 100}], "x": []}
    deep: object = []
    for _ in range(62):  # the resource object is level 1
        deep = [deep]
    (env,) = parse_post(json.dumps({**inner, "x": deep}).encode(), FHIR).envelopes
    assert env.resource_id == "abc"


def test_a_notification_carries_at_most_max_events() -> None:
    parts = [
        TYPE_,
        SUB,
        *[
            _event(
                {"name": "event-number", "valueString": str(n)},
                {"name": "focus", "valueReference": {"reference": f"Task/t{n}"}},
            )
            for n in range(4)
        ],
    ]
    assert len(parse_post(_bundle(parts), FHIR, max_events=4).envelopes) == 4
    with pytest.raises(BadNotification) as info:
        parse_post(_bundle(parts), FHIR, max_events=3)
    assert info.value.status == 413 and info.value.expression == "Bundle.entry[0].resource.parameter"
    entries = [{"fullUrl": f"http://hapi:8080/fhir/Task/t{n}", "request": {"method": "PUT"}} for n in range(4)]
    with pytest.raises(BadNotification) as info:
        parse_post(_bundle([TYPE_, SUB], *entries), FHIR, max_events=3)
    assert info.value.status == 413
