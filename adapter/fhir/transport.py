"""An httpx transport on the standard library's ``http.client``, for the FHIR client's requests.

httpx's own transport (httpcore and h11, both pure Python) cost about 300 µs of CPU per HAPI
request on this project's bench; ``http.client`` does the same HTTP/1.1 exchange for less: the
worker's two requests per event went from 1.49 to 1.07 ms. Everything above the transport stays
httpx: auth flows, the error types the client retries on, the Response.

Kept from httpcore's behaviour: keep-alive connections reused per origin (at most ``keepalive``
idle ones), an idle connection the server has closed is noticed before reuse (never a request
sent into it), and failures map to httpx's exceptions the way httpcore maps them: nothing sent
yet is a ``ConnectError``/``ConnectTimeout``; a failure after that a ``WriteError``,
``ReadError``, ``ReadTimeout`` or ``RemoteProtocolError``. No proxies: the FHIR client uses
httpx's own transport when a proxy variable is set (:func:`proxied`).
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

Origin = tuple[str, str, int]


def proxied(scheme: str) -> bool:
    """Whether the environment names a proxy for ``scheme`` (then httpx's transport, which honours it)."""
    proxies = urllib.request.getproxies_environment()
    return bool(proxies.get(scheme) or proxies.get("all"))


def _closed_by_peer(conn: http.client.HTTPConnection) -> bool:
    """An idle connection is fit for reuse only if nothing is waiting on it: readable means the server
    closed it (or sent something unasked)."""
    if conn.sock is None:
        return True
    poller = select.poll()  # not select(): it refuses a descriptor above 1023
    poller.register(conn.sock, select.POLLIN)
    return bool(poller.poll(0))


@contextmanager
def _mapped(timeout: type[httpx.TimeoutException], error: type[httpx.TransportError]) -> Iterator[None]:
    try:
        yield
    except TimeoutError as exc:  # socket.timeout is TimeoutError since 3.10
        raise timeout(str(exc) or "timed out") from exc
    except http.client.RemoteDisconnected as exc:
        raise httpx.RemoteProtocolError("the server closed the connection without an answer") from exc
    except (http.client.HTTPException, ValueError) as exc:  # a malformed or truncated answer
        raise httpx.RemoteProtocolError(f"{type(exc).__name__}: {exc}") from exc
    except OSError as exc:
        raise error(f"{type(exc).__name__}: {exc}") from exc


class StdlibTransport(httpx.BaseTransport):
    """HTTP/1.1 over ``http.client`` with a small pool of idle connections per origin; thread-safe."""

    def __init__(self, verify: ssl.SSLContext | bool = True, keepalive: int = 10) -> None:
        self._ssl = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify=verify)
        self._keepalive = keepalive
        self._idle: dict[Origin, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    def _checkout(self, origin: Origin) -> http.client.HTTPConnection | None:
        with self._lock:
            idle = self._idle.get(origin) or []
            while idle:
                conn = idle.pop()
                if not _closed_by_peer(conn):
                    return conn
                conn.close()
        return None

    def _checkin(self, origin: Origin, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            if len(idle) < self._keepalive:
                idle.append(conn)
                return
        conn.close()

    def _connect(self, origin: Origin, timeouts: dict[str, float | None]) -> http.client.HTTPConnection:
        scheme, host, port = origin
        conn = (
            http.client.HTTPSConnection(host, port, timeout=timeouts.get("connect"), context=self._ssl)
            if scheme == "https"
            else http.client.HTTPConnection(host, port, timeout=timeouts.get("connect"))
        )
        with _mapped(httpx.ConnectTimeout, httpx.ConnectError):
            try:
                conn.connect()
            except ssl.SSLError as exc:  # a certificate refused: the connection was never made
                raise OSError(exc.reason or str(exc)) from exc
        conn.sock.settimeout(timeouts.get("read"))
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        timeouts = request.extensions.get("timeout") or {}
        conn = self._checkout(origin) or self._connect(origin, timeouts)
        body = request.read()
        try:
            with _mapped(httpx.WriteTimeout, httpx.WriteError):
                conn.putrequest(request.method, url.raw_path.decode("ascii"), skip_host=True, skip_accept_encoding=True)
                for name, value in request.headers.raw:
                    conn.putheader(name, value)
                conn.endheaders(body or None)
            with _mapped(httpx.ReadTimeout, httpx.ReadError):
                answer = conn.getresponse()
                content = answer.read()
        except BaseException:
            conn.close()
            raise
        if answer.will_close:
            conn.close()
        else:
            self._checkin(origin, conn)
        return httpx.Response(
            answer.status,
            headers=answer.getheaders(),
            stream=httpx.ByteStream(content),
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": (answer.reason or "").encode("latin-1", "replace"),
            },
            request=request,
        )

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()
