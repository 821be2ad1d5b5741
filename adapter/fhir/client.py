"""A small, synchronous FHIR R4 client on httpx, over ``http.client`` (:mod:`adapter.fhir.transport`).

It does what the workflow needs and nothing more: read, vread, search following ``next`` links,
conditional create, version-aware update, transaction. Transient failures (connection errors, 5xx,
429) are retried with exponential backoff and full jitter, honouring ``Retry-After``; every other
error raises :class:`FhirError` carrying the server's OperationOutcome text.

Outbound safety: a request goes only to the configured base (scheme, host, port and path), so a
``next`` link pointing elsewhere is refused before anything (a token included) is sent; a 3xx
answer is an error, never a success.
"""

from __future__ import annotations

import errno
import random
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode

import httpx
import structlog

from adapter.fhir.outcome import outcome_text
from adapter.fhir.resource import ref
from adapter.fhir.transport import StdlibTransport, proxied

FHIR_JSON = "application/fhir+json"
Params = Mapping[str, str] | Sequence[tuple[str, str]]
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class FhirError(Exception):
    """The FHIR server refused or failed a request; ``message`` is its own explanation."""

    def __init__(
        self,
        status: int,
        message: str,
        outcome: dict[str, Any] | None = None,
        method: str = "",
        url: str = "",
        *,
        failure: str = "",
        interaction: str = "",
    ) -> None:
        self.status = status
        self.message = message
        self.outcome = outcome
        self.method = method
        self.url = url
        # status 0: what went wrong on the way, in our words ("connection refused"), never the exception's text
        self.failure = failure
        # what was asked ("transaction", "search", "read", ...): a POST to the base says nothing by itself
        self.interaction = interaction
        super().__init__(f"{method} {url} -> {status}: {message}".strip())

    @property
    def hapi_codes(self) -> frozenset[str]:
        """HAPI's message codes in the explanation, e.g. ``{"HAPI-0989"}``; empty for other servers."""
        return frozenset(HAPI_CODE.findall(self.message))

    @property
    def transient(self) -> bool:
        """Worth retrying later: the server was unavailable rather than the request wrong."""
        return self.status in RETRY_STATUSES or self.status == 0

    @property
    def summary(self) -> str:
        """What failed, for logs and dead letters, without the server's own words (they may quote the
        resource, names included): the request, the status, HAPI's codes and each issue's code and
        element."""
        issues = [
            f"{i.get('code') or 'issue'}"
            + (f" at {', '.join(map(str, where))}" if (where := i.get("expression") or i.get("location")) else "")
            for i in ((self.outcome or {}).get("issue") or ())
            if isinstance(i, dict)
        ]
        detail = [*sorted(self.hapi_codes), *issues[:5]]
        request = f"{self.method} {self.url.split('?')[0]}" + (f" ({self.interaction})" if self.interaction else "")
        if self.status == 0:
            return f"{request}: {self.failure or 'no answer'}"
        return f"{request}: answered {self.status}" + (f" ({'; '.join(detail)})" if detail else "")


class VersionConflict(FhirError):
    """412/409: the resource changed since it was read; re-read and re-plan, never overwrite.

    HAPI's stale ``If-Match`` is 409 with HAPI-0989 (:attr:`stale_version`); a conditional create
    that lost to another writer is :class:`AlreadyExists`.
    """

    @property
    def stale_version(self) -> bool:
        return "HAPI-0989" in self.hapi_codes


class AlreadyExists(VersionConflict):
    """HAPI-2840: the resource being created exists already. Re-read it; never write a second one.

    HAPI's source throws it as 412 (PreconditionFailed, "Can not create resource duplicating
    existing resource: Type/id"); the contract says 409. Either status maps here.
    """

    @property
    def existing(self) -> str | None:
        """``Type/id`` of the resource that exists, when HAPI names it."""
        found = EXISTING.search(self.message)
        return found.group(1) if found else None


class NotFound(FhirError):
    """404 or 410."""


class Refused(FhirError):
    """The client refused to send a request (nothing was sent); retrying cannot help."""

    def __init__(self, message: str, method: str = "", url: str = "") -> None:
        super().__init__(0, message, method=method, url=url)
        self.args = (f"{method} {url}: not sent: {message}".strip(),)

    @property
    def transient(self) -> bool:
        return False

    @property
    def summary(self) -> str:
        request = f"{self.method} {self.url.split('?')[0]}" + (f" ({self.interaction})" if self.interaction else "")
        return f"{request}: not sent: {self.message}"  # our own words


HAPI_CODE = re.compile(r"\bHAPI-\d{4}\b")
EXISTING = re.compile(r"HAPI-2840:[^;]*?\b([A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64})\b")
SUBSETTED = ("http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "SUBSETTED")


def _where(url: httpx.URL) -> str:
    """A request's address for an operator: scheme, host, port and path; never a query (it may hold
    identifiers) nor credentials."""
    path = url.raw_path.decode().split("?")[0].rstrip("/")
    return f"{url.scheme}://{url.host}" + (f":{url.port}" if url.port else "") + path


def _interaction(method: str, url: httpx.URL, base: httpx.URL, body: Any) -> str:
    """What a request asks of the server, in FHIR's words: the address alone does not tell a
    transaction from a batch, nor a search from a read."""
    path = url.path[len(base.path) :].strip("/") if url.path.startswith(base.path) else url.path.strip("/")
    parts = [p for p in path.split("/") if p]
    if method == "POST" and not parts:
        kind = body.get("type") if isinstance(body, dict) else None
        return kind if kind in ("transaction", "batch") else "bundle"
    if method == "GET":
        if parts == ["metadata"]:
            return "capabilities"
        if url.query or len(parts) <= 1:
            return "search"
        return "vread" if "_history" in parts else "read"
    if method == "POST":
        return "create"
    if method == "PUT":
        return "conditional update" if url.query else "update"
    return method.lower()


def _chain(exc: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(found) < 10:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found


def transport_failure(exc: BaseException) -> str:
    """What went wrong on the way to the server, in a few words an operator can act on.

    Read from the exception's type and causes (our transport keeps the socket's error as the cause;
    httpx's own names it in its text), never copied from its text.
    """
    chain = _chain(exc)
    text = " ".join(str(e) for e in chain).lower()
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "refused" in text:
        return "connection refused"
    if any(isinstance(e, socket.gaierror) for e in chain) or "name or service not known" in text:
        return "host name not found"
    if any(isinstance(e, ssl.SSLCertVerificationError) for e in chain) or "certificate_verify_failed" in text:
        return "the server's certificate is not trusted (certificate verify failed; a private CA goes in SSL_CERT_FILE)"
    if any(isinstance(e, ssl.SSLError) for e in chain) or "certificate" in text or "ssl" in text:
        return "TLS handshake failed (is the server's certificate trusted? see SSL_CERT_FILE)"
    if isinstance(exc, httpx.ConnectTimeout):
        return "no connection within the timeout"
    if isinstance(exc, httpx.PoolTimeout):
        return "no free connection within the timeout"
    if isinstance(exc, httpx.TimeoutException):
        return "no answer within the timeout"
    if any(isinstance(e, ConnectionResetError) for e in chain):
        return "connection reset by the server"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the server closed the connection or answered malformed HTTP"
    if any(isinstance(e, OSError) and e.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH) for e in chain):
        return "host unreachable"
    return f"transport error ({type(exc).__name__})"


def _error_for(response: httpx.Response) -> FhirError:
    try:
        body = response.json()
    except ValueError:
        body = None
    text = outcome_text(body) or response.reason_phrase or "no explanation given"
    cls = (
        VersionConflict
        if response.status_code in (409, 412)
        else NotFound
        if response.status_code in (404, 410)
        else FhirError
    )
    if cls is VersionConflict and "HAPI-2840" in HAPI_CODE.findall(text):
        cls = AlreadyExists
    outcome = body if isinstance(body, dict) else None
    return cls(response.status_code, text, outcome, response.request.method, _where(response.request.url))


def _redirect_error(response: httpx.Response) -> FhirError:
    """A 3xx is never a success: the write may not have happened, and following it is not ours to do."""
    where = response.headers.get("Location")
    target = httpx.URL(where).copy_with(query=None, fragment=None) if where else None
    text = f"unexpected redirect ({response.status_code}) to {target or 'nowhere given'}; not followed"
    return FhirError(response.status_code, text, None, response.request.method, _where(response.request.url))


def _json(response: httpx.Response) -> dict[str, Any]:
    """A FHIR response's body: always a JSON object (a resource, a Bundle or an OperationOutcome)."""
    body: dict[str, Any] = response.json()
    return body


def _is_subsetted(resource: Any) -> bool:
    tags = ((resource or {}).get("meta") or {}).get("tag") or () if isinstance(resource, dict) else ()
    return any((t.get("system"), t.get("code")) == SUBSETTED for t in tags if isinstance(t, dict))


def refuse_subsetted(resource: Any, method: str = "", url: str = "") -> None:
    """Raise :class:`Refused` if ``resource`` is a subset (``_elements``, ``_summary``): writing it would lose data."""
    if _is_subsetted(resource):
        kind = f"{resource.get('resourceType')}/{resource.get('id', '(new)')}"
        raise Refused(
            f"{kind} carries the SUBSETTED tag (read with _elements or _summary); "
            "writing it back would erase what was left out: read it whole first",
            method,
            url,
        )


def _next_link(bundle: Mapping[str, Any]) -> str | None:
    return next((link.get("url") for link in bundle.get("link") or () if link.get("relation") == "next"), None)


def _is_search(url: str) -> bool:
    """A search (``Type?…``, ``?_getpages=…``) rather than a read of one resource or the metadata."""
    path, _, query = url.partition("?")
    return bool(query) or (path.strip("/") != "metadata" and "/" not in path.strip("/"))


class FhirClient:
    """A connection-pooled client for one FHIR base URL.

    ``retries`` is the number of extra attempts for a transient failure; ``backoff`` the base
    delay in seconds, doubled each attempt up to ``backoff_max``; ``verify`` what HTTPS trusts
    (see :func:`adapter.fhir.tls.verify`).
    """

    def __init__(
        self,
        base_url: str,
        *,
        auth: httpx.Auth | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
        backoff_max: float = 10.0,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._base = httpx.URL(self.base_url + "/")
        self.retries = retries
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.sleep = sleep
        if transport is None and not proxied(self._base.scheme):
            transport = StdlibTransport(verify)  # httpx's own costs ~200 µs more CPU per request
        self._http = httpx.Client(
            base_url=self.base_url + "/",
            auth=auth,
            timeout=timeout,
            transport=transport,
            verify=verify,
            headers={"Accept": FHIR_JSON, **(headers or {})},
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
        )

    def close(self) -> None:
        self._http.close()

    def _check_target(self, method: str, target: httpx.URL) -> None:
        """Refuse a URL outside the configured base before anything (a token included) is sent there."""
        base = self._base
        same_origin = (target.scheme, target.host, target.port or _default_port(target.scheme)) == (
            base.scheme,
            base.host,
            base.port or _default_port(base.scheme),
        )
        if not same_origin or not (target.path + "/").startswith(base.path):
            where = f"{target.scheme}://{target.host}" + (f":{target.port}" if target.port else "")
            raise Refused(
                f"refusing to send a request to {where}{target.path}: outside the FHIR base "
                f"{base.scheme}://{base.host}{f':{base.port}' if base.port else ''}{base.path.rstrip('/')}",
                method,
                where + target.path,
            )

    def __enter__(self) -> FhirClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ transport

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        if response is not None and (after := response.headers.get("Retry-After")):
            try:
                return min(float(after), self.backoff_max)
            except ValueError:
                try:
                    return min(max(parsedate_to_datetime(after).timestamp() - time.time(), 0), self.backoff_max)
                except (TypeError, ValueError):
                    pass
        return random.uniform(0, min(self.backoff * 2**attempt, self.backoff_max))

    def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool = True,
    ) -> httpx.Response:
        """Send one request, retrying what is safe to retry; raise FhirError on a final failure.

        A non-idempotent request is retried only when the connection was never made.
        """
        hdrs = dict(headers or {})
        if method == "GET" and _is_search(url):
            # HAPI reuses a search's results for 60 s otherwise; a client made with its own (stricter)
            # Cache-Control keeps it.
            hdrs.setdefault("Cache-Control", self._http.headers.get("Cache-Control", "no-cache"))
        if correlation := structlog.contextvars.get_contextvars().get("correlation_id"):
            hdrs.setdefault("X-Request-Id", correlation)  # the server's logs line up with ours
        if json is not None:
            hdrs["Content-Type"] = FHIR_JSON
        # Built once: the check sees exactly what is sent. Made absolute here, httpx parses the URL once
        # (a relative one it parses, then merges with the base and parses again: 50 µs per search).
        absolute = url if url.startswith(("http://", "https://")) else f"{self.base_url}/{url.lstrip('/')}"
        request = self._http.build_request(method, absolute, json=json, headers=hdrs)
        try:
            return self._send(request, idempotent)
        except FhirError as exc:
            exc.interaction = exc.interaction or _interaction(method, request.url, self._base, json)
            raise

    def _send(self, request: httpx.Request, idempotent: bool) -> httpx.Response:
        self._check_target(request.method, request.url)
        attempt = 0
        while True:
            response = None
            try:
                response = self._http.send(request)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                failure: Exception = exc
            except httpx.TransportError as exc:
                if not idempotent:
                    raise self._transport_error(request, exc) from exc
                failure = exc
            else:
                if response.status_code < 300:
                    return response
                if response.status_code < 400:
                    raise _redirect_error(response)
                if response.status_code not in RETRY_STATUSES or (not idempotent and response.status_code != 429):
                    raise _error_for(response)
                failure = _error_for(response)
            if attempt >= self.retries:
                if isinstance(failure, FhirError):
                    raise failure
                raise self._transport_error(request, failure) from failure
            self.sleep(self._delay(attempt, response))
            attempt += 1

    @staticmethod
    def _transport_error(request: httpx.Request, exc: Exception) -> FhirError:
        failure = transport_failure(exc)
        return FhirError(
            0,
            f"transport error: {failure} ({type(exc).__name__})",
            method=request.method,
            url=_where(request.url),
            failure=failure,
        )

    # ------------------------------------------------------------ interactions

    def capabilities(self) -> dict[str, Any]:
        return _json(self.request("GET", "metadata"))

    def read(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        return _json(self.request("GET", f"{resource_type}/{resource_id}"))

    def vread(self, resource_type: str, resource_id: str, version_id: str) -> dict[str, Any]:
        return _json(self.request("GET", f"{resource_type}/{resource_id}/_history/{version_id}"))

    def get(self, relative_url: str) -> dict[str, Any]:
        """GET a relative URL, e.g. a search written out as ``Task?focus=ServiceRequest/1``.

        A searchset is returned whole: its ``next`` pages are fetched and merged into it.
        """
        return self.whole(self.request("GET", relative_url).json())

    def whole(self, first: dict[str, Any], max_pages: int = 1000) -> dict[str, Any]:
        """One searchset holding the entries of ``first`` and of every page after it (``first`` itself if
        it is no searchset or has no next page)."""
        if first.get("resourceType") != "Bundle" or first.get("type") != "searchset" or not _next_link(first):
            return first
        entries = list(first.get("entry") or ())
        bundle, fetched = first, 1
        while (url := _next_link(bundle)) is not None:
            if fetched >= max_pages:
                raise Refused(f"a search kept paging beyond {max_pages} pages", "GET", self.base_url)
            bundle = self.request("GET", url).json()
            entries += bundle.get("entry") or ()
            fetched += 1
        links = [link for link in first.get("link") or () if link.get("relation") != "next"]
        return {**first, "link": links, "entry": entries}

    def pages(
        self, resource_type: str, params: Params | None = None, max_pages: int = 1000
    ) -> Iterator[dict[str, Any]]:
        """Yield each searchset Bundle, following ``next`` links (only within the FHIR base)."""
        query = urlencode(list(params.items()) if isinstance(params, Mapping) else list(params or ()))
        url: str | None = f"{resource_type}?{query}" if query else resource_type
        for _ in range(max_pages):
            if url is None:
                return
            bundle = self.request("GET", url).json()
            yield bundle
            url = _next_link(bundle)

    def search(self, resource_type: str, params: Params | None = None) -> list[dict[str, Any]]:
        """Every resource of every page (matches and includes), without OperationOutcomes."""
        return [
            e["resource"]
            for bundle in self.pages(resource_type, params)
            for e in bundle.get("entry") or ()
            if (e.get("resource") or {}).get("resourceType") not in (None, "OperationOutcome")
        ]

    def create(self, resource: dict[str, Any], if_none_exist: str | None = None) -> dict[str, Any]:
        """POST a resource; with ``if_none_exist`` only if none matches.

        Write the criteria with :func:`adapter.fhir.search.identifier_criteria` (escaped, URL-encoded).
        """
        refuse_subsetted(resource, "POST", resource["resourceType"])
        headers = {"Prefer": "return=representation"}
        if if_none_exist:
            headers["If-None-Exist"] = if_none_exist
        response = self.request(
            "POST", resource["resourceType"], json=resource, headers=headers, idempotent=if_none_exist is not None
        )
        return _json(response)

    def update(self, resource: dict[str, Any], if_match: str | None = None) -> dict[str, Any]:
        """PUT a resource; with ``if_match`` (a versionId) the server refuses if it has moved on."""
        refuse_subsetted(resource, "PUT", f"{resource['resourceType']}/{resource.get('id')}")
        headers = {"Prefer": "return=representation"}
        if if_match:
            headers["If-Match"] = f'W/"{if_match}"'
        return _json(self.request("PUT", ref(resource), json=resource, headers=headers))

    def conditional_update(self, resource: dict[str, Any], criteria: str) -> dict[str, Any]:
        """PUT ``Type?criteria``: update the single match, or create when there is none."""
        refuse_subsetted(resource, "PUT", resource["resourceType"])
        return _json(
            self.request(
                "PUT",
                f"{resource['resourceType']}?{criteria}",
                json=resource,
                headers={"Prefer": "return=representation"},
            )
        )

    def delete(self, resource_type: str, resource_id: str) -> None:
        self.request("DELETE", f"{resource_type}/{resource_id}")

    def transaction(self, bundle: dict[str, Any], *, idempotent: bool = True) -> dict[str, Any]:
        """POST a transaction Bundle; atomic on the server.

        The workflow's transactions are idempotent by construction (conditional creates and
        ``If-Match`` updates), so they are retried like reads. A subsetted resource in any entry
        refuses the whole Bundle before it is sent.
        """
        for entry in bundle.get("entry") or ():
            refuse_subsetted(
                entry.get("resource"),
                (entry.get("request") or {}).get("method", ""),
                (entry.get("request") or {}).get("url", ""),
            )
        return _json(self.request("POST", "", json=bundle, idempotent=idempotent))

    def batch_get(self, urls: Sequence[str], *, whole: bool = True) -> list[dict[str, Any]]:
        """Run several GETs in one round trip (a batch Bundle); each answer's Bundle or resource.

        A search's searchset comes back whole: its ``next`` pages (HAPI caps a page, and a search
        inside a batch is paged like any other) are fetched and merged into it; with ``whole=False``
        only its first page, its ``next`` link kept (for :meth:`whole`). ``Cache-Control: no-cache``
        on the batch POST reaches the searches inside it (HAPI passes the headers on).
        """
        if len(urls) == 1 and whole:
            return [self.get(urls[0])]
        bundle = {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [{"request": {"method": "GET", "url": u}} for u in urls],
        }
        reply = self.request("POST", "", json=bundle, headers={"Cache-Control": "no-cache"})
        out = []
        for url, entry in zip(urls, reply.json().get("entry") or (), strict=False):
            status = (entry.get("response") or {}).get("status", "")
            if not status.startswith("2"):
                raise FhirError(
                    int(status[:3] or 0),
                    outcome_text((entry.get("response") or {}).get("outcome")) or status,
                    method="GET",
                    url=url,
                )
            out.append(self.whole(entry.get("resource") or {}) if whole else entry.get("resource") or {})
        return out


def _default_port(scheme: str) -> int | None:
    return {"http": 80, "https": 443}.get(scheme)
