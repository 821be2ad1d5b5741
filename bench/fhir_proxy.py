"""A counting pass-through proxy in front of the sandbox FHIR server (loopback only).

Every request is forwarded unchanged (the answers name the proxy's base, not the server's, as
behind any reverse proxy) and counted by kind: ``read`` (GET Type/id), ``search`` (GET
Type?...; ``search+include`` when it has _include/_revinclude), ``transaction`` and ``batch`` (POST of
a Bundle to the base), and ``<METHOD> <Type>`` for anything else. It also sums the time the upstream
server took per kind, and counts each request's shape (parameter names, no values, no content), and
the shape of each entry of a posted batch or transaction.

Control endpoints (not forwarded): ``GET /_bench/counts`` and ``POST /_bench/reset``.
Run: ``python bench/fhir_proxy.py --target http://127.0.0.1:8090/fhir [--port 0] [--port-file F]``.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlparse

import httpx

HOP_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "content-encoding", "keep-alive"})


def classify(method: str, path: str, body: bytes) -> str:
    """What kind of FHIR interaction a request is (see the module docstring)."""
    parsed = urlparse(path)
    parts = [p for p in parsed.path.removeprefix("/fhir").split("/") if p]
    if method == "POST" and not parts:
        try:
            kind = json.loads(body).get("type")
        except (ValueError, AttributeError):
            kind = None
        return kind if kind in ("transaction", "batch") else "POST base"
    if method == "GET" and parts and not parts[0].startswith("_"):
        if len(parts) == 1:
            query = parsed.query
            return "search+include" if "_include" in query or "_revinclude" in query else "search"
        return "read" if len(parts) == 2 else "history/vread"
    return f"{method} {parts[0] if parts else 'base'}"


def bundle_entry_shapes(body: bytes) -> list[str]:
    """The shape of each entry of a posted batch or transaction (``batch: GET Consent?patient&status``)."""
    try:
        bundle = json.loads(body)
        kind, entries = bundle.get("type"), bundle.get("entry") or []
    except (ValueError, AttributeError):
        return []
    out = []
    for entry in entries:
        request = entry.get("request") or {} if isinstance(entry, dict) else {}
        url = str(request.get("url") or "")
        out.append(f"{kind}: {shape(str(request.get('method') or '?'), url if url.startswith('/') else '/' + url)}")
    return out


def shape(method: str, path: str) -> str:
    """The request without ids or values: ``GET ServiceRequest?_id&_include&_revinclude``."""
    parsed = urlparse(path)
    parts = [p for p in parsed.path.removeprefix("/fhir").split("/") if p]
    names = "&".join(sorted({k for k, _ in parse_qsl(parsed.query, keep_blank_values=True)}))
    return f"{method} {parts[0] if parts else '/'}{'/{id}' if len(parts) > 1 else ''}" + (f"?{names}" if names else "")


class Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.kinds: Counter[str] = Counter()
            self.shapes: Counter[str] = Counter()
            self.upstream_ms: Counter[str] = Counter()
            self.statuses: Counter[str] = Counter()

    def add(self, kind: str, shapes: list[str], status: int, ms: float) -> None:
        with self.lock:
            self.kinds[kind] += 1
            self.shapes.update(shapes)
            self.upstream_ms[kind] += ms
            self.statuses[str(status)] += 1

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "kinds": dict(self.kinds),
                "shapes": dict(self.shapes),
                "statuses": dict(self.statuses),
                "upstream_ms": {k: round(v, 1) for k, v in self.upstream_ms.items()},
            }


def make_handler(target: str, client: httpx.Client, counts: Counts) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _reply(self, status: int, content: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                if name.lower() not in HOP_HEADERS:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        def _control(self) -> bool:
            if self.path == "/_bench/counts":
                self._reply(200, json.dumps(counts.snapshot()).encode(), {"Content-Type": "application/json"})
            elif self.path == "/_bench/reset":
                counts.reset()
                self._reply(204, b"", {})
            else:
                return False
            return True

        def _forward(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            if self._control():
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
            started = time.perf_counter()
            upstream = client.request(
                self.command, target + self.path.removeprefix("/fhir"), content=body, headers=headers
            )
            ms = (time.perf_counter() - started) * 1000
            kind = classify(self.command, self.path, body)
            shapes = [shape(self.command, self.path)]
            if kind in ("batch", "transaction"):
                shapes += bundle_entry_shapes(body)
            counts.add(kind, shapes, upstream.status_code, ms)
            # As a reverse proxy in front of a FHIR server must: the answers name the proxy's base, for
            # the adapter follows a searchset's next link only on the base it was given.
            own = f"http://127.0.0.1:{self.server.server_address[1]}/fhir"
            content = upstream.content.replace(target.encode(), own.encode())
            headers = {k: v.replace(target, own) for k, v in upstream.headers.items()}
            self._reply(upstream.status_code, content, headers)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--target", required=True, help="FHIR base to forward to (loopback)")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--port-file", type=Path, help="write the chosen port here once listening")
    args = parser.parse_args(argv)
    if urlparse(args.target).hostname not in ("127.0.0.1", "localhost", "::1"):
        parser.error("--target must be on loopback")
    counts = Counts()
    with httpx.Client(timeout=30, limits=httpx.Limits(max_connections=16, max_keepalive_connections=16)) as client:
        server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args.target.rstrip("/"), client, counts))
        server.daemon_threads = True
        if args.port_file:
            args.port_file.write_text(str(server.server_address[1]))
        try:
            server.serve_forever()
        finally:
            server.server_close()


if __name__ == "__main__":
    main()
