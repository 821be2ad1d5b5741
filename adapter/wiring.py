"""Building the real parts from settings: shared by the CLI, the API and the worker."""

from __future__ import annotations

import httpx

from adapter import __version__
from adapter.config import Settings
from adapter.fhir.auth import BearerAuth, ClientCredentialsAuth
from adapter.fhir.client import FhirClient
from adapter.fhir.tls import verify


def fhir_auth(settings: Settings) -> httpx.Auth | None:
    if settings.fhir_auth == "bearer" and settings.fhir_token:
        return BearerAuth(settings.fhir_token.get_secret_value())
    if settings.fhir_auth == "client-credentials":
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
