"""Outbound safety of the FHIR client: requests stay on the configured base, a 3xx is an error,
searches and batches ask for fresh answers, and every page of a search is read.

The sandbox cannot be made to answer a foreign ``next`` link or a redirect, so FaultProxy (a FAKE)
serves those exact answers; ``Recorder`` is a real second server on another loopback port that only
records what reaches it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from adapter.fhir.auth import BearerAuth
from adapter.fhir.client import FhirClient, FhirError, Refused
from tests.support.faults import FaultProxy, Rule
from tests.support.stack import unique

SYSTEM = "https://test.example.se/id"
SECRET = "outbound-secret-token-0123456789"


class Recorder:
    """A real HTTP server on its own loopback port that answers an empty searchset and records every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                recorder.requests.append((self.command, self.path, dict(self.headers.items())))
                payload = b'{"resourceType":"Bundle","type":"searchset","entry":[]}'
                self.send_response(200)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_POST = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/fhir"

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    r = Recorder()
    yield r
    r.close()


def patient(value: str) -> dict[str, object]:
    return {"resourceType": "Patient", "identifier": [{"system": SYSTEM, "value": value}]}


def searchset_with_next(next_url: str) -> bytes:
    return json.dumps(
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": 2,
            "link": [{"relation": "self", "url": "Patient"}, {"relation": "next", "url": next_url}],
            "entry": [{"resource": {"resourceType": "Patient", "id": "p1"}}],
        }
    ).encode()


def test_a_next_link_to_another_host_is_refused_and_nothing_reaches_it(proxy: FaultProxy, recorder: Recorder) -> None:
    value = unique()
    foreign = f"{recorder.base_url}?_getpages=abc&_getpagesoffset=1&access=do-not-log-me"
    proxy.add(Rule(lambda m, p, b: m == "GET" and value in p, status=200, body=searchset_with_next(foreign)))
    with FhirClient(proxy.base_url, auth=BearerAuth(SECRET), retries=0) as client:
        with pytest.raises(Refused) as pages:
            list(client.pages("Patient", {"identifier": f"{SYSTEM}|{value}"}))
        with pytest.raises(Refused) as search:
            client.search("Patient", {"identifier": f"{SYSTEM}|{value}"})
        with pytest.raises(Refused):
            client.get(f"Patient?identifier={value}")
    assert recorder.requests == []  # not one request, so no token, went there
    for info in (pages, search):
        assert f"127.0.0.1:{recorder.server.server_address[1]}" in str(info.value)  # names the offending host
        assert "do-not-log-me" not in str(info.value) and SECRET not in str(info.value)
        assert not info.value.transient


def test_a_next_link_outside_the_base_path_or_on_another_scheme_is_refused(proxy: FaultProxy) -> None:
    value = unique()
    root = proxy.base_url.removesuffix("/fhir")
    for bad in (f"{root}/admin/Patient?x=1", root.replace("http://", "https://") + "/fhir/Patient?x=1"):
        proxy.clear()
        proxy.add(Rule(lambda m, p, b: m == "GET" and value in p, status=200, body=searchset_with_next(bad)))
        seen = proxy.record()
        with FhirClient(proxy.base_url, retries=0) as client, pytest.raises(Refused):
            client.search("Patient", {"identifier": value})
        assert [p for _, p, _ in seen if "/admin/" in p or "x=1" in p] == []


def test_a_next_link_inside_a_batch_reply_is_checked_too(proxy: FaultProxy, recorder: Recorder) -> None:
    value = unique()
    inner = json.loads(searchset_with_next(f"{recorder.base_url}?_getpages=x"))
    reply = {
        "resourceType": "Bundle",
        "type": "batch-response",
        "entry": [{"resource": inner, "response": {"status": "200 OK"}}] * 2,
    }
    proxy.add(Rule(lambda m, p, b: m == "POST" and value.encode() in b, status=200, body=json.dumps(reply).encode()))
    with FhirClient(proxy.base_url, auth=BearerAuth(SECRET), retries=0) as client, pytest.raises(Refused):
        client.batch_get([f"Patient?identifier={value}", f"Task?identifier={value}"])
    assert recorder.requests == []


def test_a_redirect_is_an_error_not_a_write(proxy: FaultProxy, fhir: FhirClient) -> None:
    value = unique()
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:0b7e2a4c-4a8e-4d0c-9d55-3f7b0f0d2c11",
                "resource": patient(value),
                "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={SYSTEM}|{value}"},
            }
        ],
    }
    rule = proxy.add(
        Rule(
            lambda m, p, b: value.encode() in b,
            status=302,
            body=b"",
            headers={"Location": "https://login.example.se/sso?session=do-not-log-me"},
        )
    )
    with FhirClient(proxy.base_url, retries=3, sleep=lambda _: None) as client, pytest.raises(FhirError) as info:
        client.transaction(bundle)
    assert info.value.status == 302 and "login.example.se" in info.value.message
    assert "do-not-log-me" not in str(info.value)
    assert rule.hits == 1  # neither retried nor followed
    assert fhir.search("Patient", {"identifier": f"{SYSTEM}|{value}"}) == []


def test_searches_and_batches_ask_for_a_fresh_answer(proxy: FaultProxy) -> None:
    value = unique()
    seen = proxy.record()
    with FhirClient(proxy.base_url, retries=0) as client:
        created = client.create(patient(value))
        client.search("Patient", {"identifier": f"{SYSTEM}|{value}"})
        client.get(f"Patient?identifier={SYSTEM}|{value}")
        client.batch_get([f"Patient?identifier={SYSTEM}|{value}", f"Patient?_id={created['id']}"])
        client.read("Patient", created["id"])
    ours = [
        (m, p, h)
        for (m, p, b), h in zip(seen, proxy.seen_headers, strict=True)
        if value in p or created["id"] in p or value.encode() in b
    ]  # the worker may use the proxy too
    by_request = [(m, p.split("?")[0], h.get("Cache-Control")) for m, p, h in ours]
    assert by_request == [
        ("POST", "/fhir/Patient", None),
        ("GET", "/fhir/Patient", "no-cache"),
        ("GET", "/fhir/Patient", "no-cache"),
        ("POST", "/fhir/", "no-cache"),
        ("GET", f"/fhir/Patient/{created['id']}", None),
    ]


def test_every_page_is_read_whatever_the_page_size(fhir: FhirClient) -> None:
    value = unique()
    ids = {fhir.create(patient(value))["id"] for _ in range(5)}
    query = f"Patient?identifier={SYSTEM}|{value}&_count=2"  # the server pages: 3 pages of at most 2
    whole = fhir.get(query)
    assert {e["resource"]["id"] for e in whole["entry"]} == ids
    assert not any(link["relation"] == "next" for link in whole.get("link") or ())
    in_batch = fhir.batch_get([query, f"Patient?identifier={SYSTEM}|{value}&_count=1"])
    assert [{e["resource"]["id"] for e in b["entry"]} for b in in_batch] == [ids, ids]


def test_a_search_that_never_stops_paging_is_cut_off(fhir: FhirClient) -> None:
    value = unique()
    for _ in range(3):
        fhir.create(patient(value))
    query = f"Patient?identifier={SYSTEM}|{value}&_count=1"
    assert len(fhir.whole(fhir.request("GET", query).json(), max_pages=3)["entry"]) == 3
    with pytest.raises(Refused, match="beyond 2 pages"):
        fhir.whole(fhir.request("GET", query).json(), max_pages=2)
