"""The API under abuse: oversized heads, slow clients and too many at once, over real loopback sockets.

The servers here run with the options ``mmr-adapter serve`` uses (``uvicorn_options``), with
deadlines shortened so that each test ends within seconds; every wait has a deadline.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from adapter.config import load_settings
from adapter.dev.sandbox import free_port
from adapter.intake.app import Limits
from adapter.intake.server import GuardedH11Protocol, uvicorn_options
from tests.support.stack import REDIS_URL, TOKEN, wait_for
from tests.test_intake import LIMIT, Intake, intake

HEAD_TIMEOUT = 0.5
WAIT = 10.0  # the longest any test waits for the server to act


class QuickHeadProtocol(GuardedH11Protocol):
    header_timeout = HEAD_TIMEOUT


class PatientHeadProtocol(GuardedH11Protocol):
    header_timeout = 60.0


def limited(protocol: type[GuardedH11Protocol], **settings: object) -> tuple[Intake, object]:
    options = uvicorn_options(load_settings(**settings), protocol=protocol)  # type: ignore[arg-type]
    return intake(REDIS_URL, limits=Limits(max_body_bytes=LIMIT, body_timeout=HEAD_TIMEOUT), **options)


@pytest.fixture(scope="module")
def api() -> Iterator[Intake]:
    """Head limit 4096 bytes; a head deadline long enough never to race a loaded machine."""
    it, server = limited(PatientHeadProtocol, max_header_bytes=4096)
    yield it
    server.should_exit = True  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def impatient() -> Iterator[Intake]:
    """A head deadline of HEAD_TIMEOUT seconds."""
    it, server = limited(QuickHeadProtocol)
    yield it
    server.should_exit = True  # type: ignore[attr-defined]


def connect(it: Intake) -> socket.socket:
    host, port = it.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=WAIT)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or WAIT passes: then fail)."""
    data, deadline = b"", time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk
    pytest.fail(f"the server kept the connection open for {WAIT} s")


def head(path: str = "/notify", method: str = "POST", **headers: str) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: 127.0.0.1",
        f"Authorization: Bearer {TOKEN}",
        *(f"{k.replace('_', '-')}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_an_oversized_request_head_is_refused_and_reaches_nothing(api: Intake) -> None:
    before = api.queued()
    with connect(api) as sock:
        sock.sendall(head(X_Padding="a" * 8192, Content_Length="0"))
        reply = read_until_closed(sock)
    assert reply.startswith(b"HTTP/1.1 431 "), reply[:40]
    assert b'"resourceType":"OperationOutcome"' in reply.replace(b" ", b"")
    assert api.queued() == before


def test_an_oversized_head_sent_in_pieces_is_refused_too(api: Intake) -> None:
    with connect(api) as sock:
        sock.sendall(b"POST /notify HTTP/1.1\r\n")
        for _ in range(4):  # only the fourth piece takes the head past 4096 bytes: nothing is left unread
            sock.sendall(b"X-Padding: " + b"a" * 1024 + b"\r\n")
        reply = read_until_closed(sock)
    assert reply.startswith(b"HTTP/1.1 431 "), reply[:40]


def test_a_head_within_the_limit_is_served(api: Intake) -> None:
    with connect(api) as sock:
        sock.sendall(head(X_Padding="a" * 2048, Content_Length="0", Connection="close"))
        reply = read_until_closed(sock)
    assert reply.startswith(b"HTTP/1.1 202 "), reply[:40]
    with connect(api) as sock:  # a body of any size (within MMR_MAX_BODY_BYTES) does not count as head
        body = b'{"resourceType": "Task", "id": "abc", "note": [{"text": "' + b"a" * 20000 + b'"}]}'
        sock.sendall(
            head(Content_Type="application/fhir+json", Content_Length=str(len(body)), Connection="close") + body
        )
        reply = read_until_closed(sock)
    assert reply.startswith(b"HTTP/1.1 202 "), reply[:40]


def test_a_client_trickling_its_head_is_cut_off(impatient: Intake) -> None:
    """A line at a time keeps the head incomplete: the deadline runs from the connection, not the last byte."""
    with connect(impatient) as sock:
        sock.sendall(b"POST /notify HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        sock.settimeout(0.1)
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                sock.sendall(b"X-Slow: 1\r\n")
                if sock.recv(1024) == b"":
                    break
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        else:
            pytest.fail(f"a client trickling its head was served for {WAIT} s")


def test_a_silent_connection_is_closed(impatient: Intake) -> None:
    with connect(impatient) as sock:
        assert read_until_closed(sock) == b""


def test_a_slow_body_gets_408_and_nothing_is_queued(api: Intake) -> None:
    before = api.queued()
    with connect(api) as sock:
        sock.sendall(head(Content_Type="application/fhir+json", Content_Length="100") + b'{"resourceType"')
        reply = read_until_closed(sock)
    assert reply.startswith(b"HTTP/1.1 408 "), reply[:40]
    assert b'"resourceType":"OperationOutcome"' in reply and b'"code":"timeout"' in reply
    assert api.queued() == before


def test_beyond_the_concurrency_limit_the_answer_is_503() -> None:
    it, server = limited(PatientHeadProtocol, max_concurrency=3)
    held = [connect(it), connect(it)]  # two clients hold connections open without sending
    try:

        def refused() -> bool:
            return httpx.get(f"{it.url}/health", timeout=WAIT).status_code == 503

        wait_for(refused, timeout=WAIT, what="a third client to be refused")
        for sock in held:
            sock.close()
        wait_for(
            lambda: httpx.get(f"{it.url}/health", timeout=WAIT).status_code == 200,
            timeout=WAIT,
            what="the API to serve again once the connections are gone",
        )
    finally:
        for sock in held:
            sock.close()
        server.should_exit = True  # type: ignore[attr-defined]


# ------------------------------------------------------------------ the OpenAPI document


def status_of(
    it: Intake,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    token: bool = True,
    content_type: str = "application/fhir+json",
    declared: int | None = None,
    padding: int = 0,
) -> int:
    """The status the API answers a request (``declared``: a Content-Length other than the body's,
    ``padding``: header bytes added), read off a real socket."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", f"Content-Type: {content_type}"]
    lines += [f"Authorization: Bearer {TOKEN}"] if token else []
    lines += [f"Content-Length: {len(body) if declared is None else declared}"]
    lines += [f"X-Padding: {'p' * padding}"] if padding else []
    with connect(it) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        reply = read_until_closed(sock)
    return int(reply.split(b" ", 2)[1])


def test_the_openapi_document_lists_every_answer_notify_gives(api: Intake) -> None:
    """Each answer elicited from a real server, per operation, is in the served document, and each
    documented answer was elicited (but 500, a bug's: no request makes it on purpose)."""
    from tests.support.shapes import r4_backport
    from tests.test_intake import SR

    sr = json.dumps(SR).encode()
    put = delete = "/notify/ServiceRequest/sr1"
    common = {
        401: lambda m, p: status_of(api, m, p, token=False),
        408: lambda m, p: status_of(api, m, p, b'{"resourceType"', declared=100),
        413: lambda m, p: status_of(api, m, p, declared=LIMIT + 1),
        431: lambda m, p: status_of(api, m, p, padding=5000),
    }
    observed: dict[tuple[str, str], set[int]] = {
        ("post", "/notify"): {
            status_of(api, "POST", "/notify"),  # a ping: queued
            status_of(api, "POST", "/notify", r4_backport("s1", 0, None, kind="handshake")),
            status_of(api, "POST", "/notify", b"{this is not json"),
            status_of(api, "POST", "/notify", b"<Bundle/>", content_type="application/fhir+xml"),
            *(elicit("POST", "/notify") for elicit in common.values()),
        },
        ("put", "/notify/{resource_type}/{resource_id}"): {
            status_of(api, "PUT", put, sr),
            status_of(api, "PUT", "/notify/Task/sr1", sr),  # the body's type differs from the path's
            status_of(api, "PUT", put, b"<ServiceRequest/>", content_type="application/fhir+xml"),
            *(elicit("PUT", put) for elicit in common.values()),
        },
        ("delete", "/notify/{resource_type}/{resource_id}"): {
            status_of(api, "DELETE", delete),
            status_of(api, "DELETE", "/notify/lowercase/sr1"),
            *(elicit("DELETE", delete) for elicit in common.values()),
        },
    }
    dead, server = intake(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there: the queue is down
    try:
        observed[("post", "/notify")].add(status_of(dead, "POST", "/notify"))
        observed[("put", "/notify/{resource_type}/{resource_id}")].add(status_of(dead, "PUT", put))
        observed[("delete", "/notify/{resource_type}/{resource_id}")].add(status_of(dead, "DELETE", delete))
    finally:
        server.should_exit = True  # type: ignore[attr-defined]
    api.r.delete(api.queue)

    document = httpx.get(f"{api.url}/openapi.json", timeout=WAIT).json()
    for (method, path), statuses in observed.items():
        responses = document["paths"][path][method]["responses"]
        assert statuses == {int(code) for code in responses} - {500}, (method, path)
        for code, response in responses.items():
            schemas = json.dumps(response["content"]["application/fhir+json"]["schema"])
            assert "#/components/schemas/OperationOutcome" in schemas, (method, path, code)
    assert set(document["components"]["schemas"]) >= {"OperationOutcome", "TransactionResponse"}
    assert "422" not in json.dumps(document["paths"])  # FastAPI's default; this API answers 400
    # A path or method no operation has: 404 and 405, said in the document's description.
    assert status_of(api, "POST", "/notify/a/b/c") == 404 and status_of(api, "GET", "/notify") == 405
    assert "404" in document["info"]["description"] and "405" in document["info"]["description"]
