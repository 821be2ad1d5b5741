"""How the API is served: uvicorn with limits on what one client may hold.

* request head (request line and headers) at most ``MMR_MAX_HEADER_BYTES``: 431 above, counted
  on the bytes as they arrive (h11's own limit applies only to a head still incomplete after a
  read, so a large head arriving at once would pass); the API runs on uvicorn's h11 protocol;
* the request head must be complete within ``MMR_HEADER_TIMEOUT`` seconds of the connection
  opening or of the previous response (a slow-loris client is disconnected); uvicorn itself only
  times out idle keep-alive connections (``MMR_KEEP_ALIVE_TIMEOUT``);
* the body within ``MMR_BODY_TIMEOUT`` (``/notify`` answers 408, see ``adapter.intake.app``);
* at most ``MMR_MAX_CONCURRENCY`` connections and requests at once (uvicorn answers 503 above);
* uvicorn's own log lines go through the adapter's JSON logs (``log_config=None``).
"""

from __future__ import annotations

import asyncio
import json
from functools import cache
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from adapter.config import Settings, load_settings
from adapter.fhir.outcome import operation_outcome


@cache
def _configured_header_timeout() -> float:
    return load_settings().header_timeout


def _too_large(limit: int) -> bytes:
    body = json.dumps(operation_outcome(f"The request head exceeds {limit} bytes", code="too-costly")).encode()
    return (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/fhir+json\r\n"
        b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a size limit and a deadline for the request head.

    The deadline runs from the connection's opening, and again from each response, until h11 has
    parsed a complete request head; then the connection is closed. Bytes trickling in do not
    extend it (uvicorn's keep-alive timer, by contrast, is cancelled by any byte).
    """

    header_timeout: ClassVar[float | None] = None  # None: MMR_HEADER_TIMEOUT

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_limit = self.config.h11_max_incomplete_event_size or 16384
        self._head_bytes = b""
        self._head_deadline: asyncio.TimerHandle | None = None
        self._arm_head_deadline()

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        timeout = self.header_timeout if self.header_timeout is not None else _configured_header_timeout()
        self._head_deadline = self.loop.call_later(timeout, self._head_too_slow)

    def _disarm_head_deadline(self) -> None:
        deadline = getattr(self, "_head_deadline", None)
        if deadline is not None:
            deadline.cancel()
            self._head_deadline = None

    def _awaiting_head(self) -> bool:
        """No request is being served: none has come yet, or the last one has been answered."""
        return self.cycle is None or self.cycle.response_complete

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if self._awaiting_head() and not self.transport.is_closing():
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._awaiting_head():
            self._head_bytes = (self._head_bytes + data)[: self._head_limit + 4]
            end = self._head_bytes.find(b"\r\n\r\n")
            if end > self._head_limit or (end < 0 and len(self._head_bytes) > self._head_limit):
                self._disarm_head_deadline()
                self.transport.write(_too_large(self._head_limit))
                self.transport.close()
                return
        super().data_received(data)
        if not self._awaiting_head():
            self._head_bytes = b""
            self._disarm_head_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.their_state is h11.SEND_BODY:  # answered (408, 413) before the body was in: done with it
            self.transport.close()
        elif not self.transport.is_closing():
            self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)


def uvicorn_options(settings: Settings, protocol: type[H11Protocol] = GuardedH11Protocol) -> dict[str, Any]:
    """The keyword arguments for ``uvicorn.run`` / ``uvicorn.Config`` that enforce the limits."""
    return {
        "http": protocol,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "timeout_keep_alive": settings.keep_alive_timeout,
        "limit_concurrency": settings.max_concurrency,
        "log_config": None,
        "access_log": False,
    }
