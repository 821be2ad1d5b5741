"""The fakes, named as such, for failures a real part cannot produce on demand.

FaultProxy: an HTTP proxy in front of the real sandbox FHIR server that can answer errors or hold
requests on demand, because a real server cannot be made to fail at an exact moment, and can answer
HAPI's exact bytes (a rule's ``body``) where the sandbox answers differently. Everything it does not
intercept is forwarded to the real server; the server's own base URL in a forwarded answer (``next``
links, ``Location``) is rewritten to the proxy's, as a reverse proxy in front of HAPI does.

KeepAliveServer: an HTTP server that closes a kept-alive connection behind the client's back.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

Match = Callable[[str, str, bytes], bool]


@dataclass
class Rule:
    match: Match
    status: int = 503
    times: int | None = None  # None: until cleared
    hold: threading.Event | None = None  # hold matching requests until set
    forward_after_hold: bool = True
    held: threading.Event = field(default_factory=threading.Event)  # set when a request is being held
    hits: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None  # the exact answer (e.g. HAPI's OperationOutcome); None: FaultProxy's own
    forward_first: bool = False  # forward to the server, then answer status/body instead of its reply


class FaultProxy:
    def __init__(self, target_base: str) -> None:
        self.target = target_base.rstrip("/")
        self.rules: list[Rule] = []
        self.seen: list[tuple[str, str, bytes]] | None = None  # requests forwarded while recording
        self.seen_headers: list[dict[str, str]] = []  # their headers, in the same order
        self.lock = threading.Lock()
        self.client = httpx.Client(timeout=30)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                rule = proxy._rule_for(self.command, self.path, body)
                if rule is not None and rule.hold is not None:
                    rule.held.set()
                    rule.hold.wait(60)
                    if not rule.forward_after_hold:
                        self.close_connection = True
                        return
                elif rule is not None:
                    if rule.forward_first:
                        proxy._forward(self.command, self.path, body, self.headers.items())
                    payload = (
                        rule.body
                        if rule.body is not None
                        else (
                            b'{"resourceType":"OperationOutcome","issue":[{"severity":"error",'
                            b'"code":"transient","diagnostics":"FaultProxy: injected failure"}]}'
                        )
                    )
                    self.send_response(rule.status)
                    self.send_header("Content-Type", "application/fhir+json")
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in rule.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                with proxy.lock:
                    if proxy.seen is not None:
                        proxy.seen.append((self.command, self.path, body))
                        proxy.seen_headers.append(dict(self.headers.items()))
                upstream = proxy._forward(self.command, self.path, body, self.headers.items())
                content = upstream.content.replace(proxy.target.encode(), proxy.base_url.encode())
                self.send_response(upstream.status_code)
                for k, v in upstream.headers.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(k, v.replace(proxy.target, proxy.base_url))
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/fhir"

    def _forward(self, method: str, path: str, body: bytes, headers: Iterable[tuple[str, str]]) -> httpx.Response:
        kept = {k: v for k, v in headers if k.lower() not in ("host", "content-length")}
        return self.client.request(method, self.target + path.removeprefix("/fhir"), content=body, headers=kept)

    def _rule_for(self, method: str, path: str, body: bytes) -> Rule | None:
        with self.lock:
            for rule in self.rules:
                if rule.match(method, path, body) and (rule.times is None or rule.hits < rule.times):
                    rule.hits += 1
                    return rule
        return None

    def add(self, rule: Rule) -> Rule:
        with self.lock:
            self.rules.append(rule)
        return rule

    def record(self) -> list[tuple[str, str, bytes]]:
        """Start recording the requests forwarded upstream (method, path, body); the list fills as they come."""
        with self.lock:
            self.seen = []
            self.seen_headers = []
            return self.seen

    def by_event(self) -> dict[str, list[tuple[str, str, bytes]]]:
        """The recorded requests grouped by ``X-Request-Id``: the worker sends its event's correlation id,
        so each group is what one event (or one job) cost the server. Left out: requests without one, and
        the CapabilityStatement a worker process reads once, with its first event."""
        with self.lock:
            recorded = list(zip(self.seen or (), self.seen_headers, strict=True))
        groups: dict[str, list[tuple[str, str, bytes]]] = {}
        for request, headers in recorded:
            rid = next((v for k, v in headers.items() if k.lower() == "x-request-id"), None)
            if rid and request[1].split("?")[0].rstrip("/") != "/fhir/metadata":
                groups.setdefault(rid, []).append(request)
        return groups

    def clear(self) -> None:
        with self.lock:
            for rule in self.rules:
                if rule.hold is not None:
                    rule.hold.set()
            self.rules.clear()
            self.seen = None
            self.seen_headers = []

    def close(self) -> None:
        self.clear()
        self.server.shutdown()
        self.client.close()


def request_kinds(requests: list[tuple[str, str, bytes]]) -> list[str]:
    """``read`` for a GET or a batch, ``transaction`` for a transaction, else the method."""

    def kind(method: str, body: bytes) -> str:
        if method == "GET":
            return "read"
        bundle_type = json.loads(body).get("type") if method == "POST" and body.startswith(b"{") else None
        return {"batch": "read", "transaction": "transaction"}.get(str(bundle_type), method)

    return [kind(method, body) for method, _, body in requests]


def transaction_about(text: str) -> Match:
    """Match the worker's transaction POSTs that mention ``text`` (e.g. a referral id); not its batches of reads."""
    return lambda method, path, body: (
        method == "POST"
        and path.rstrip("/") in ("/fhir", "")
        and text.encode() in body
        and request_kinds([(method, path, body)]) == ["transaction"]
    )


PATIENT = {"resourceType": "Patient", "id": "p1"}


class KeepAliveServer:
    """A FAKE, named as such: a real HTTP/1.1 server answering every request with :data:`PATIENT`.
    ``close_after_answer``: it closes the connection after each answer without saying so, as a
    server whose idle timeout ran out does, a moment no real server can be told to choose."""

    def __init__(self, close_after_answer: bool = False) -> None:
        self.requests: list[tuple[str, str, int]] = []  # method, path, client port (one per connection)
        self.closed = threading.Semaphore(0)  # released each time the server closed a connection
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                server.requests.append((self.command, self.path, self.client_address[1]))
                payload = json.dumps(PATIENT).encode()
                self.send_response(201 if self.command == "POST" else 200)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                self.close_connection = close_after_answer

            do_POST = do_GET

            def finish(self) -> None:
                super().finish()
                if close_after_answer:
                    self.connection.shutdown(socket.SHUT_RDWR)
                    server.closed.release()

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http.server_address[1]}/fhir"

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()
