"""Outbound authentication to the FHIR server: none, a static bearer token, or OAuth2 client credentials."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Generator

import httpx

from adapter.fhir.client import FhirError


class BearerAuth(httpx.Auth):
    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header
        yield request


class ClientCredentialsAuth(httpx.Auth):
    """OAuth2 client credentials with a cached token, refreshed before expiry and once on a 401.

    One token is shared by every request of the process; the lock keeps a burst of requests
    from fetching a token each.
    """

    requires_response_body = False

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        scope: str | None = None,
        *,
        leeway: float = 30.0,
        timeout: float = 10.0,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self._secret = client_secret
        self.scope = scope
        self.leeway = leeway
        self.timeout = timeout
        self.verify = verify
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()
        self.fetches = 0  # how many tokens were fetched: for metrics and tests

    def _fetch(self) -> None:
        data = {"grant_type": "client_credentials"}
        if self.scope:
            data["scope"] = self.scope
        r = httpx.post(
            self.token_url, data=data, auth=(self.client_id, self._secret), timeout=self.timeout, verify=self.verify
        )
        where = str(httpx.URL(self.token_url).copy_with(query=None))
        if r.status_code != 200:  # a 3xx too: following it would hand the secret to wherever it points
            raise FhirError(
                r.status_code,
                f"the token endpoint refused: {r.reason_phrase or r.status_code}",
                method="POST",
                url=where,
            )
        try:
            body = r.json()
            token = body["access_token"]
        except (ValueError, KeyError, TypeError):
            raise FhirError(
                r.status_code, "the token endpoint's answer holds no access_token", method="POST", url=where
            ) from None
        self.fetches += 1
        self._token = token
        self._expires_at = time.monotonic() + float(body.get("expires_in", 300))

    def token(self, *, force: bool = False) -> str:
        with self._lock:
            if force or self._token is None or time.monotonic() > self._expires_at - self.leeway:
                self._fetch()
            assert self._token is not None
            return self._token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token()}"
        response = yield request
        if response.status_code == 401:
            request.headers["Authorization"] = f"Bearer {self.token(force=True)}"
            yield request
