"""Configuration from the environment (prefix ``MMR_``), validated once at start-up.

A missing or malformed setting stops the process with one line naming the variable, never a
stack trace: see :func:`load_settings`.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import AnyHttpUrl, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the environment variable."""


def default_state_dir() -> Path:
    """Where a process keeps what it must find again after a restart (beat's schedule): per user,
    as the XDG base directories put state, never a fixed path in /tmp that another user can claim."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "mmr-adapter"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MMR_", env_file=".env", extra="ignore")

    fhir_base_url: AnyHttpUrl | None = Field(None, description="FHIR server base, e.g. http://hapi:8080/fhir")
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis for the queue, locks and state")
    webhook_token: SecretStr | None = Field(None, description="Bearer token the FHIR server sends on /notify")
    public_url: AnyHttpUrl = Field(
        AnyHttpUrl("http://127.0.0.1:8000"), description="Adapter address as the FHIR server sees it"
    )

    fhir_auth: Literal["none", "bearer", "client-credentials"] = Field("none", description="Outbound FHIR auth")
    fhir_token: SecretStr | None = Field(None, description="Static bearer token (fhir_auth=bearer)")
    oauth_token_url: AnyHttpUrl | None = Field(None, description="Token endpoint (fhir_auth=client-credentials)")
    oauth_client_id: str | None = Field(None, description="OAuth2 client id")
    oauth_client_secret: SecretStr | None = Field(None, description="OAuth2 client secret")
    oauth_scope: str | None = Field(None, description="OAuth2 scope, e.g. system/*.*")
    fhir_timeout: float = Field(10.0, gt=0, description="Seconds per FHIR request")
    fhir_retries: int = Field(3, ge=0, description="Retries of a transient FHIR failure within one attempt")
    allow_insecure_http: bool = Field(
        False, description="Allow outbound credentials over plain http to a non-loopback host (never in production)"
    )

    max_body_bytes: int = Field(1_048_576, gt=0, description="Largest notification body accepted")
    max_events: int = Field(100, gt=0, description="Most events one notification may carry (413 above)")
    max_header_bytes: int = Field(16384, ge=1024, description="Largest request head (request line and headers)")
    header_timeout: float = Field(10.0, gt=0, description="Seconds a client has to send a complete request head")
    body_timeout: float = Field(10.0, gt=0, description="Seconds a client has to send the whole body (408 after)")
    keep_alive_timeout: float = Field(5.0, gt=0, description="Seconds an idle keep-alive connection stays open")
    max_concurrency: int = Field(100, gt=0, description="Connections and requests served at once (503 above)")
    health_cache: float = Field(5.0, ge=0, description="Seconds a /health answer is reused")
    health_timeout: float = Field(2.0, gt=0, description="Seconds each /health check may take")
    operator_token: SecretStr | None = Field(
        None,
        description="Bearer token for /metrics, /docs and /openapi.json (unset: open, so serve stays on loopback)",
    )
    max_attempts: int = Field(8, ge=1, description="Attempts per event before it is dead-lettered")
    retry_backoff: float = Field(2.0, gt=0, description="Base seconds of the retry backoff (doubles per attempt)")
    retry_backoff_max: float = Field(120.0, gt=0, description="Longest wait between two attempts")
    lock_timeout: float = Field(120.0, gt=0, description="Seconds a referral lock lives if its holder dies")
    visibility_timeout: int = Field(300, gt=0, description="Seconds before an unacknowledged event is redelivered")
    reconcile_interval: float = Field(
        60.0,
        gt=0,
        description="Seconds between reconciliation runs (beat looks twice "
        "as often: a run killed midway is replaced at its next look)",
    )
    timer_interval: float = Field(30.0, gt=0, description="Seconds between runs of the timer job")
    sweep_interval: float = Field(300.0, gt=0, description="Seconds between sweeps of the open referrals")
    heartbeat_interval: float = Field(60.0, gt=0, description="Seconds between the adapter's heartbeat writes")
    flow_interval: float = Field(
        900.0, gt=0, description="Seconds between refreshes of the flow store and the operators' mmr_flow_* gauges"
    )
    reconcile_lookback: float = Field(86400.0, gt=0, description="First reconciliation looks this far back (s)")
    dedup_ttl: int = Field(30 * 86400, gt=0, description="Seconds a processed-event key is remembered")
    queue: str = Field("mmr-events", description="Celery queue name")
    state_dir: Path = Field(
        default_factory=default_state_dir,
        description="Directory for files a process keeps across restarts (beat's schedule)",
    )
    flow_db: Path | None = Field(
        None, description="The flow store's DuckDB file (a cache of the FHIR record; unset: state_dir/flow.duckdb)"
    )
    care_guarantee_days: int = Field(
        90,
        description="The care guarantee's limit in days (SFS 2010:349 says 90; a region may only shorten it)",
    )
    language: Literal["sv", "en"] = Field("sv", description="Language of texts sent to people")
    log_level: str = Field("INFO", description="Log level")
    log_json: bool = Field(True, description="JSON log lines (false: human-readable)")
    test_clock: bool = Field(False, description="Let tests and the demo set the clock in Redis; never in production")

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        value = value.upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return value

    @field_validator("care_guarantee_days")
    @classmethod
    def _guarantee(cls, value: int) -> int:
        if not 1 <= value <= 90:
            raise ValueError("must be 1 to 90 days: the national care guarantee is 90, a region may only shorten it")
        return value

    @property
    def fhir_base(self) -> str:
        return str(self.fhir_base_url).rstrip("/")

    @property
    def flow_path(self) -> Path:
        """The flow store's file: ``MMR_FLOW_DB``, else ``flow.duckdb`` in the state directory."""
        return self.flow_db or self.state_dir / "flow.duckdb"

    @property
    def notify_url(self) -> str:
        return str(self.public_url).rstrip("/") + "/notify"


def is_loopback(host: str | None) -> bool:
    """127.0.0.0/8, ``::1``, ``localhost``: reachable from this machine only. Any other name counts as not."""
    host = (host or "").strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback  # 127.0.0.0/8, ::1
    except ValueError:
        return False


def _insecure_credentials(settings: Settings) -> str | None:
    """Credentials over plain http to another machine can be read on the way: refuse, unless allowed."""
    if settings.fhir_auth == "none" or settings.allow_insecure_http:
        return None
    names = ["fhir_base_url"] + (["oauth_token_url"] if settings.fhir_auth == "client-credentials" else [])
    for name in names:
        url = getattr(settings, name)
        if url is not None and url.scheme == "http" and not is_loopback(url.host):
            return (
                f"{_env_name((name,))}: MMR_FHIR_AUTH={settings.fhir_auth} would send credentials over plain "
                f"http to {url.host}; use https (or MMR_ALLOW_INSECURE_HTTP=true)"
            )
    return None


def _env_name(loc: tuple[object, ...]) -> str:
    return "MMR_" + str(loc[0]).upper() if loc else "MMR_*"


REQUIRED_FOR_FHIR = ("fhir_base_url",)
REQUIRED_FOR_INTAKE = ("webhook_token",)


def load_settings(require: Iterable[str] = (), **overrides: object) -> Settings:
    """Read and check the settings; raise :class:`ConfigError` with one clear line if they are wrong."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(f"{_env_name(err['loc'])}: {err['msg']}") from None
    missing = [name for name in require if getattr(settings, name) in (None, "")]
    if missing:
        raise ConfigError(f"{_env_name((missing[0],))} is required but not set")
    if settings.fhir_auth == "bearer" and not settings.fhir_token:
        raise ConfigError("MMR_FHIR_TOKEN is required when MMR_FHIR_AUTH=bearer")
    if settings.fhir_auth == "client-credentials":
        for name in ("oauth_token_url", "oauth_client_id", "oauth_client_secret"):
            if not getattr(settings, name):
                raise ConfigError(f"{_env_name((name,))} is required when MMR_FHIR_AUTH=client-credentials")
    if problem := _insecure_credentials(settings):
        raise ConfigError(problem)
    from adapter.fhir.tls import ca_problem

    if problem := ca_problem():
        raise ConfigError(problem)
    if settings.retry_backoff_max >= settings.visibility_timeout:
        # A retry waiting longer than the visibility timeout would be delivered twice.
        raise ConfigError("MMR_RETRY_BACKOFF_MAX: must be shorter than MMR_VISIBILITY_TIMEOUT")
    if settings.webhook_token is not None and len(settings.webhook_token.get_secret_value()) < 16:
        raise ConfigError("MMR_WEBHOOK_TOKEN: must be at least 16 characters")
    if settings.operator_token is not None and len(settings.operator_token.get_secret_value()) < 16:
        raise ConfigError("MMR_OPERATOR_TOKEN: must be at least 16 characters")
    return settings
