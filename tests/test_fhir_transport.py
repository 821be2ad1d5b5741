"""The FHIR client's HTTP transport (``adapter.fhir.transport``) against real sockets: connections
kept alive and reused, one the server closed while idle never used for a write, a proxy variable
honoured, a server that never answers a timeout the client retries, a refused connection retried
even for a write (nothing was sent)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from adapter.fhir.client import FhirClient, FhirError
from tests.support.faults import PATIENT, KeepAliveServer


@pytest.fixture
def keep_alive() -> Iterator[KeepAliveServer]:
    server = KeepAliveServer()
    yield server
    server.close()


@pytest.fixture
def closing() -> Iterator[KeepAliveServer]:
    server = KeepAliveServer(close_after_answer=True)
    yield server
    server.close()


def test_a_kept_alive_connection_is_reused(keep_alive: KeepAliveServer) -> None:
    with FhirClient(keep_alive.base_url, retries=0) as client:
        for _ in range(3):
            assert client.read("Patient", "p1") == PATIENT
    assert [r[:2] for r in keep_alive.requests] == [("GET", "/fhir/Patient/p1")] * 3
    assert len({port for _, _, port in keep_alive.requests}) == 1


def test_connections_are_reused_in_a_process_holding_many_descriptors(keep_alive: KeepAliveServer) -> None:
    """A busy process holds more than select()'s 1024 descriptors: keep-alive must still work."""
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        with FhirClient(keep_alive.base_url, retries=0) as client:
            for _ in range(2):
                assert client.read("Patient", "p1") == PATIENT
    finally:
        for fd in held:
            os.close(fd)
    assert len({port for _, _, port in keep_alive.requests}) == 1


def test_a_connection_the_server_closed_while_idle_is_never_used_for_a_write(closing: KeepAliveServer) -> None:
    with FhirClient(closing.base_url, retries=0) as client:  # no retry could hide a failed send
        assert client.read("Patient", "p1") == PATIENT
        assert closing.closed.acquire(timeout=5)
        # Not idempotent: were it sent into the closed connection, it would fail and not be retried.
        assert client.create({"resourceType": "Patient"}) == PATIENT
    assert [r[0] for r in closing.requests] == ["GET", "POST"]
    assert len({port for _, _, port in closing.requests}) == 2


def test_a_proxy_variable_sends_the_requests_through_the_proxy(
    keep_alive: KeepAliveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", keep_alive.base_url.removesuffix("/fhir"))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with FhirClient("http://fhir.region.invalid/fhir", retries=0) as client:
        assert client.read("Patient", "p1") == PATIENT
    assert keep_alive.requests[0][:2] == ("GET", "http://fhir.region.invalid/fhir/Patient/p1")  # absolute form


def test_a_server_that_never_answers_is_a_transient_error_after_the_timeout() -> None:
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (the kernel's backlog), never answers
    try:
        base = f"http://127.0.0.1:{silent.getsockname()[1]}/fhir"
        waits: list[float] = []
        with FhirClient(base, retries=1, timeout=0.2, sleep=waits.append) as client, pytest.raises(FhirError) as info:
            client.read("Patient", "p1")
        assert info.value.status == 0 and info.value.transient and "ReadTimeout" in info.value.message
        assert info.value.summary == f"GET {base}/Patient/p1 (read): no answer within the timeout"
        assert len(waits) == 1  # a read: retried
    finally:
        silent.close()


def test_a_refused_connection_is_retried_even_for_a_write() -> None:
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]  # closed on leaving: nothing listens there any more
    waits: list[float] = []
    with (
        FhirClient(f"http://127.0.0.1:{port}/fhir", retries=2, sleep=waits.append) as client,
        pytest.raises(FhirError) as info,
    ):
        client.create({"resourceType": "Patient"})
    assert info.value.transient and "ConnectError" in info.value.message
    assert len(waits) == 2  # nothing was sent, so even a create is tried again
