"""Intake that cannot be broken: fuzzed notifications, and no personal data in any answer or log line.

The fuzzed bodies start from every shape HAPI sends (tests/support/shapes.py) and replace elements at
random with any JSON value, deep nesting included, so most of them get past the first checks and
reach the parser's later ones. The parser must return envelopes or refuse with a 4xx naming an
element; the API, served over HTTP and publishing into real Redis, must never answer 5xx, must
answer every refusal with an OperationOutcome and must queue one message for an accepted
notification and nothing for a refused one.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import random
import sys
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapter.intake.notifications import ID_RE, TYPE_RE, BadNotification, parse_post, parse_put
from adapter.logs import configure
from tests.support.shapes import r4_backport, subscription_status
from tests.support.stack import REDIS_URL, TOKEN
from tests.test_intake import Intake, intake

FHIR = "application/fhir+json; charset=UTF-8"
TASK = {
    "resourceType": "Task",
    "id": "abc",
    "meta": {"versionId": "3"},
    "status": "requested",
    "intent": "order",
    "for": {"reference": "Patient/p1"},
}
BASES: list[Any] = [
    json.loads(b)
    for b in (
        r4_backport("s1", 7, "Task/abc", TASK),
        r4_backport("s1", 8, "Task/abc"),
        r4_backport("s1", 9, None),
        r4_backport("s1", 0, None, kind="heartbeat"),
        r4_backport("s1", 3, "Task/abc", None, method="DELETE"),
        subscription_status("s2", 3, "Task/abc", TASK),
        subscription_status("s2", 4, "Task/abc", None, r5=False),
    )
] + [TASK]
FUZZ = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
API_FUZZ = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def nested(depth: int) -> Any:
    value: Any = "x"
    for level in range(depth):
        value = [value] if level % 2 else {"a": value}
    return value


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.sampled_from(
        ["Task", "Task/abc", "Subscription/s1", "7", "", "a b", "event-notification", "history", "DELETE", "Bundle"]
    ),
)
json_values = st.one_of(
    scalars,
    st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "reference",
                        "resourceType",
                        "id",
                        "name",
                        "part",
                        "valueString",
                        "valueReference",
                        "resource",
                        "request",
                        "type",
                        "entry",
                        "parameter",
                        "focus",
                        "eventNumber",
                    ]
                )
                | st.text(max_size=8),
                inner,
                max_size=4,
            )
        ),
        max_leaves=12,
    ),
    st.integers(55, 75).map(nested),
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, (*prefix, i))


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    node = doc
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return doc


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    doc = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(list(_paths(doc))))
        doc = _set(doc, path, draw(json_values))
    return doc


bodies = st.one_of(
    mutated().map(lambda d: json.dumps(d).encode()),
    st.binary(max_size=64),
    st.sampled_from([b"[" * 480 + b"]" * 480, b"{" * 5000, b"", b"null", b"[]", b'"x"']),
)


def check_parsed(call: Any) -> None:
    try:
        parsed = call()
    except BadNotification as exc:
        assert 400 <= exc.status < 500
        if exc.expression is not None:
            assert exc.text.startswith(f"{exc.expression}: ")
        return
    for env in parsed.envelopes:
        assert env.resource_type is None or TYPE_RE.fullmatch(env.resource_type)
        assert env.resource_id is None or ID_RE.fullmatch(env.resource_id)
        assert env.version_id is None or ID_RE.fullmatch(env.version_id)
        json.dumps(env.to_dict())  # it travels on the queue as JSON


@FUZZ
@given(bodies)
def test_the_parser_returns_envelopes_or_a_4xx(body: bytes) -> None:
    check_parsed(lambda: parse_post(body, FHIR, max_events=5))
    check_parsed(lambda: parse_put("Task", "abc", body, FHIR))


@pytest.fixture(scope="module")
def api() -> Iterator[Intake]:
    it, server = intake(REDIS_URL)
    yield it
    server.should_exit = True
    it.r.delete(it.queue)


@API_FUZZ
@given(body=bodies, put=st.booleans(), path=st.sampled_from(["Task/abc", "task/abc", "Task/a%20b", "Task/abc.-1"]))
def test_the_api_never_answers_5xx_and_queues_nothing_it_refuses(
    api: Intake, body: bytes, put: bool, path: str
) -> None:
    before = api.queued()
    reply = api.send("PUT", f"/{path}", body) if put else api.send("POST", "", body)
    assert reply.status_code < 500, reply.text
    if reply.status_code >= 400:
        assert reply.json()["resourceType"] == "OperationOutcome"
        assert api.queued() == before
    elif reply.status_code == 202:
        assert api.queued() == before + 1  # one message per notification, however many events


# ------------------------------------------------------------------ no personal data in answers or logs


@pytest.fixture()
def logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The adapter's own JSON logs (and uvicorn's, routed through them), captured."""
    saved, handlers = structlog.get_config(), logging.getLogger().handlers[:]
    level = logging.getLogger().level
    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buffer)
    configure("DEBUG", json=True)
    yield buffer
    structlog.configure(**saved)
    logging.getLogger().handlers[:] = handlers
    logging.getLogger().setLevel(level)


def test_no_name_or_personnummer_from_a_refused_notification_reaches_an_answer_or_a_log(logs: io.StringIO) -> None:
    rng = random.Random(uuid.uuid4().int)
    pnr = f"19{rng.randint(10, 99)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}-{rng.randint(1000, 9999)}"
    name = "Tolvan" + "".join(rng.choice("bcdfghjklmnpqrstvwxz") for _ in range(8))
    patient = {
        "resourceType": "Patient",
        "name": [{"given": [name], "family": name}],
        "identifier": [{"system": "http://electronichealth.se/identifier/personnummer", "value": pnr}],
    }
    it, server = intake(REDIS_URL, log_config=None)
    try:
        bad_bundle = json.loads(r4_backport("s1", 7, f"Patient/{name} {pnr}", patient))
        refused = [
            ("POST", "", json.dumps(patient).encode(), FHIR),  # no id
            ("POST", "", json.dumps({**patient, "id": f"{name} {pnr}"}).encode(), FHIR),
            ("POST", "", json.dumps({**patient, "resourceType": name}).encode(), FHIR),
            ("POST", "", json.dumps(bad_bundle).encode(), FHIR),
            ("POST", "", json.dumps({"resourceType": "Bundle", "type": f"{name}{pnr}"}).encode(), FHIR),
            ("POST", "", f'{{"resourceType": "Patient", "name": "{name}", "pnr": "{pnr}"'.encode(), FHIR),
            ("POST", "", json.dumps(patient).encode(), f"text/{name}-{pnr}"),
            ("PUT", f"/Patient/{quote(name + ' ' + pnr)}", json.dumps(patient).encode(), FHIR),
            ("PUT", f"/{name}{pnr.replace('-', '')}/x", json.dumps(patient).encode(), FHIR),
            ("PUT", "/Task/abc", json.dumps({**patient, "id": "abc"}).encode(), FHIR),
            ("DELETE", f"/Patient/{quote(pnr + ' ' + name)}", None, FHIR),
        ]
        before = it.queued()
        for method, path, body, content_type in refused:
            reply = httpx.request(
                method,
                f"{it.url}/notify{path}",
                content=body,
                timeout=10,
                headers={
                    "Authorization": f"Bearer {TOKEN}",
                    "Content-Type": content_type,
                    "X-Request-Id": f"{name} {pnr}",
                },
            )
            assert 400 <= reply.status_code < 500, (method, path, reply.status_code)
            assert reply.json()["resourceType"] == "OperationOutcome"
            answer = reply.text + "".join(f"{k}: {v}" for k, v in reply.headers.items())
            assert name not in answer and pnr not in answer and pnr.replace("-", "") not in answer, reply.text
        assert it.queued() == before
    finally:
        server.should_exit = True
    lines = logs.getvalue()
    assert lines.count("notification refused") == len(refused)  # each refusal is logged ...
    assert name not in lines and pnr not in lines and pnr.replace("-", "") not in lines  # ... without the content
