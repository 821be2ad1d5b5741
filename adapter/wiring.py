"""Building the real parts from settings: shared by the CLI, the API and the worker.

One auth decision (:func:`auth_mode`) for both clients: the FHIR client every process writes with
(sync, with retries) and the API's ``/health`` client (async, one short attempt per request).
"""

from __future__ import annotations

from typing import Literal

import httpx

from adapter import __version__
from adapter.config import Settings
from adapter.fhir.auth import BearerAuth, ClientCredentialsAuth
from adapter.fhir.client import FhirClient
from adapter.fhir.tls import verify

AuthMode = Literal["bearer", "client-credentials"] | None


def auth_mode(settings: Settings) -> AuthMode:
    """How the adapter authenticates to the FHIR server: a static bearer token (when one is set),
    OAuth2 client credentials, or not at all."""
    if settings.fhir_auth == "bearer" and settings.fhir_token:
        return "bearer"
    if settings.fhir_auth == "client-credentials":
        return "client-credentials"
    return None


def fhir_auth(settings: Settings) -> httpx.Auth | None:
    mode = auth_mode(settings)
    if mode == "bearer":
        assert settings.fhir_token
        return BearerAuth(settings.fhir_token.get_secret_value())
    if mode == "client-credentials":
        assert settings.oauth_client_secret and settings.oauth_client_id
        return ClientCredentialsAuth(
            str(settings.oauth_token_url),
            settings.oauth_client_id,
            settings.oauth_client_secret.get_secret_value(),
            settings.oauth_scope,
            timeout=settings.fhir_timeout,
            verify=verify(),
        )
    return None


# HAPI (the jpaserver-starter) answers a search repeated within 60 s from its cached result set
# unless the request says no-cache; no-store keeps this answer out of that cache, so a probe made
# just before a write does not serve a stale "nothing there" to the next client for a minute.
NO_CACHE = {"Cache-Control": "no-cache, no-store"}


def fhir_client(settings: Settings, fresh: bool = False) -> FhirClient:
    """``fresh``: every search asks the server's current state, never a cached result set (setup's checks)."""
    headers = {"User-Agent": f"mmr-adapter/{__version__}", **(NO_CACHE if fresh else {})}
    return FhirClient(
        settings.fhir_base,
        auth=fhir_auth(settings),
        timeout=settings.fhir_timeout,
        retries=settings.fhir_retries,
        headers=headers,
        verify=verify(),
    )


def health_client(settings: Settings) -> httpx.AsyncClient:
    """``/health``'s client: one short attempt per request, never the FHIR client's retries; with
    client-credentials auth no token (fetching one would block the check). It trusts what the FHIR
    client trusts (a region's private CA), or /health would call a healthy server down."""
    auth = fhir_auth(settings) if auth_mode(settings) == "bearer" else None
    return httpx.AsyncClient(
        timeout=settings.health_timeout, headers={"Accept": "application/fhir+json"}, auth=auth, verify=verify()
    )
