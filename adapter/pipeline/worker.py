"""The Celery application and its tasks: process an event, reconcile, fire due timers.

Tasks follow Celery's guidance for idempotent work: ``acks_late`` (a message is acknowledged only
after the task ran) and ``reject_on_worker_lost`` (a killed worker's message goes back on the
queue). Every effect is idempotent, so a redelivery is harmless. A transient failure is retried
with exponential backoff; an event that keeps failing is parked in the dead-letter store.
"""

from __future__ import annotations

import contextlib
import random
import time
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from celery import Celery, Task
from celery.signals import setup_logging

from adapter.config import REQUIRED_FOR_FHIR, Settings, load_settings
from adapter.fhir.client import FhirClient, FhirError
from adapter.logs import bind_correlation, configure, log
from adapter.pipeline import reconcile as reconciliation
from adapter.pipeline.envelope import Envelope
from adapter.pipeline.runner import Runner
from adapter.pipeline.state import LockBusy, State

PROCESS = "mmr.process"


def make_celery(settings: Settings) -> Celery:
    app = Celery("mmr", broker=settings.redis_url, set_as_current=True)
    app.conf.update(
        task_default_queue=settings.queue,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        # A killed worker's unacknowledged event becomes visible again after visibility_timeout;
        # look for such events often enough that redelivery follows soon after.
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            "unacked_restore_interval": max(1, min(10, settings.visibility_timeout // 2)),
            "unacked_restore_throttle": 1,
        },
        worker_redirect_stdouts=False,
        # The intake must know quickly whether an event is queued: no long publish retries.
        task_publish_retry=True,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2,
                                   "interval_max": 0.5},
        broker_connection_timeout=2,
        beat_schedule={
            "reconcile": {"task": "mmr.reconcile", "schedule": settings.reconcile_interval},
            "fire-timers": {"task": "mmr.fire_timers", "schedule": settings.timer_interval},
        },
    )
    return app


def settings() -> Settings:
    return _settings()


@cache
def _settings() -> Settings:
    return load_settings()


app = make_celery(_settings())


# ------------------------------------------------------------------ per-process parts


@cache
def state() -> State:
    s = settings()
    return State.from_url(s.redis_url, dedup_ttl=s.dedup_ttl, lock_timeout=s.lock_timeout)


@cache
def fhir() -> FhirClient:
    from adapter.cli_support import fhir_client

    return fhir_client(load_settings(require=REQUIRED_FOR_FHIR))


def now() -> datetime:
    return state().now(settings().test_clock)


def enqueue(env: Envelope) -> None:
    # argsrepr: otherwise Celery reprs the whole envelope, resource included, into the message
    # headers on every publish (a third of the publish's CPU) where monitoring tools show it.
    app.send_task(PROCESS, args=[env.to_dict()], queue=settings().queue, argsrepr=f"[{env.label!r}]",
                  kwargsrepr="{}")


def run_reconcile() -> int:
    """Reconcile once; raises LockBusy while another reconciliation runs."""
    s = settings()
    with state().reconciling():
        return reconciliation.reconcile(fhir(), state(), enqueue, now=now(),
                                        lookback=timedelta(seconds=s.reconcile_lookback))


@cache
def runner() -> Runner:
    import adapter.workflow.steps  # noqa: F401  (registers every step)

    return Runner(fhir(), state(), now=now, options=workflow_options(), reconcile=run_reconcile)


def workflow_options() -> dict[str, Any]:
    from adapter.mappings import load

    options: dict[str, Any] = {"language": settings().language}
    with contextlib.suppress(FileNotFoundError):
        options.update(load("review"))
    return options


@setup_logging.connect
def _setup_logging(**_: Any) -> None:
    """Our structured, redacting logs for the worker too, instead of Celery's own set-up."""
    s = settings()
    configure(s.log_level, s.log_json)


# ------------------------------------------------------------------ tasks


def backoff(attempt: int) -> float:
    """Exponential backoff with full jitter: spreads retries of many events over time."""
    s = settings()
    return random.uniform(s.retry_backoff / 2, min(s.retry_backoff * 2**attempt, s.retry_backoff_max))


@app.task(bind=True, name=PROCESS, acks_late=True, reject_on_worker_lost=True, max_retries=None)
def process(self: Task, envelope: dict[str, Any], failures: int = 0) -> str:
    """Process one event; ``failures`` counts failed attempts (waiting for a lock is not one)."""
    env = Envelope.from_dict(envelope)
    attempts = failures + 1
    bind_correlation(env.correlation_id, event=env.label, attempt=attempts)
    kind = env.resource_type or env.kind
    st = state()
    try:
        outcome = runner().process(env)
    except LockBusy:
        # Another worker holds the referral: come back soon, without counting a failure.
        raise self.retry(countdown=0.2 + random.random(), kwargs={"failures": failures}) from None
    except Exception as exc:
        permanent = isinstance(exc, FhirError) and not exc.transient and exc.status not in (409, 412)
        reason = _reason(exc)
        if permanent or attempts >= settings().max_attempts:
            entry = st.park(env, reason, attempts)
            st.count("dead_lettered", kind)
            log.error("event dead-lettered", reason=reason, attempts=attempts, dlq_id=entry)
            return "dead-lettered"
        st.count("retried", kind)
        log.warning("event failed, will retry", reason=reason, attempts=attempts)
        raise self.retry(countdown=backoff(attempts - 1), kwargs={"failures": attempts}) from None
    st.count(outcome.status, kind)
    if outcome.status in ("applied", "nothing"):
        st.observe_latency(max(time.time() - env.received_at, 0.0))
    log.info("event processed", outcome=outcome.status, writes=outcome.writes)
    return outcome.status


def _reason(exc: BaseException) -> str:
    if isinstance(exc, FhirError):
        return f"FHIR {exc.method} {exc.url.split('?')[0]} answered {exc.status}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


@app.task(bind=True, name="mmr.reconcile", acks_late=True, ignore_result=True, max_retries=None)
def reconcile_task(self: Task, requested_at: float | None = None) -> int:
    """Reconcile; if one is running, wait for it unless it started after this was requested."""
    requested_at = requested_at or time.time()
    if state().reconciled_since(requested_at):
        return 0
    try:
        found = run_reconcile()
    except LockBusy:
        raise self.retry(countdown=1, kwargs={"requested_at": requested_at}) from None
    if found:
        log.info("reconciliation queued changes", found=found)
    return found


@app.task(name="mmr.fire_timers", acks_late=True, ignore_result=True)
def fire_timers_task(at: str | None = None) -> int:
    """Queue every due timer exactly once; ``at`` (ISO time) lets tests and the demo move the clock."""
    moment = datetime.fromisoformat(at) if at else now()
    return fire_due_timers(state(), moment)


def fire_due_timers(st: State, moment: datetime) -> int:
    fired = 0
    for member, due in st.due_timers(moment):
        if not st.claim_timer(member, moment):
            continue
        referral_id, _, name = member.partition("|")
        enqueue(Envelope("timer", "timer", "ServiceRequest", referral_id, version_id=str(int(due)), timer=name))
        fired += 1
    return fired


# ------------------------------------------------------------------ one notification, one message

FAN_OUT = "mmr.fan_out"


def enqueue_notification(envelopes: tuple[Envelope, ...], *, queue: str | None = None, **publish: Any) -> None:
    """Queue one notification's events whole or not at all: one publish, whatever their number.

    A single event travels as itself; several travel as one fan-out message that a worker splits
    into one message per event, so a notification whose publish fails has queued nothing.
    ``publish`` goes to ``send_task`` (a connection, a retry policy).
    """
    if not envelopes:
        return
    if len(envelopes) == 1:
        name, args, shown = PROCESS, [envelopes[0].to_dict()], f"[{envelopes[0].label!r}]"
    else:
        name, args, shown = FAN_OUT, [[env.to_dict() for env in envelopes]], f"[{len(envelopes)} events]"
    app.send_task(name, args=args, queue=queue or settings().queue, argsrepr=shown, kwargsrepr="{}", **publish)


@app.task(name=FAN_OUT, acks_late=True, ignore_result=True, autoretry_for=(Exception,), retry_backoff=True,
          retry_backoff_max=30, max_retries=None)
def fan_out_task(envelopes: list[dict[str, Any]]) -> int:
    """Queue each event of one notification as its own message (then processed, retried, dead-lettered alone).

    Acknowledged late and retried on failure: if it stops halfway the whole list is queued again,
    and the events already queued are processed twice, which is harmless (effects are idempotent,
    processed versions are remembered).
    """
    for data in envelopes:
        enqueue(Envelope.from_dict(data))
    return len(envelopes)
