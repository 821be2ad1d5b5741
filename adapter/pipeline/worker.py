"""The Celery application and its tasks: process an event, reconcile, fire due timers.

Tasks follow Celery's guidance for idempotent work: ``acks_late`` (a message is acknowledged only
after the task ran) and ``reject_on_worker_lost`` (a killed worker's message goes back on the
queue). Every effect is idempotent, so a redelivery is harmless. A transient failure is retried
with exponential backoff; an event that keeps failing is parked in the dead-letter store.
"""

from __future__ import annotations

import base64
import contextlib
import gc
import json
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from celery import Celery, Task
from celery.exceptions import Reject, Retry
from celery.signals import setup_logging, worker_init, worker_ready, worker_shutdown

from adapter.config import REQUIRED_FOR_FHIR, Settings, load_settings
from adapter.fhir.client import FhirClient, FhirError, Refused
from adapter.logs import bind_correlation, configure, log, new_correlation_id
from adapter.pipeline import heartbeat as heartbeats
from adapter.pipeline import reconcile as reconciliation
from adapter.pipeline import sweep as sweeping
from adapter.pipeline.envelope import Envelope
from adapter.pipeline.runner import SWEEP as SWEEP_SHAPE
from adapter.pipeline.runner import Runner
from adapter.pipeline.state import ALIVE_EVERY, ALIVE_WITHIN, LockBusy, State

PROCESS = "mmr.process"
RECONCILE = "mmr.reconcile"
SWEEP = "mmr.sweep"
HEARTBEAT = "mmr.heartbeat"
FLOW = "mmr.flow"
MONTHLY_REPORTS = "mmr.monthly_reports"
REPORTS_CHECK = 3600.0  # seconds between beat's looks at whether last month's MeasureReports are due
# A reconciliation's lock outlives a killed run by RECONCILE_LOCK_TTL at most (a watchdog extends it
# while the run lives); a run that finds it busy waits that out, then leaves the rest to the next tick.
RECONCILE_LOCK_TTL = 3.0
RECONCILE_BUSY_RETRIES, RECONCILE_BUSY_WAIT = 5, 1.0
PRIORITY_STEPS = [0, 3, 6, 9]  # kombu's default steps, spelled out: queue_keys() depends on them
CONTROL_PRIORITY, EVENT_PRIORITY, SWEEP_PRIORITY = 0, 3, 9
# Metric labels name only the types the adapter subscribes to: a notification's type is a hint,
# and an unbounded label set would be a way to exhaust the metrics store.
# Events the adapter queues itself; every other shape came in through the API.
INTERNAL_SHAPES = frozenset({"timer", "reconcile", SWEEP_SHAPE, "test"})
KNOWN_KINDS = frozenset(
    {
        "ServiceRequest",
        "Task",
        "Communication",
        "QuestionnaireResponse",
        "Consent",
        "Appointment",
        "CarePlan",
        "DocumentReference",
        "EpisodeOfCare",
        "timer",
        "ping",
    }
)


def make_celery(settings: Settings) -> Celery:
    app = Celery("mmr", broker=settings.redis_url, set_as_current=True)
    app.conf.update(
        task_default_queue=settings.queue,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # A failed task is acknowledged: process() has already retried or parked its event, or handed
        # it back. One killed at its hard time limit is handed back too, never acknowledged without an
        # effect (Celery's own default acknowledges it).
        task_acks_on_failure=True,
        task_acks_on_timeout=False,
        worker_prefetch_multiplier=1,
        # A task running when the broker connection drops can no longer be acknowledged: cancel it, and
        # its message is delivered again (Celery 6's default; 5.x only warns).
        worker_cancel_long_running_tasks_on_connection_loss=True,
        # No task may outlive the visibility timeout, or its message would be delivered a second time
        # while it still runs. The soft limit comes first: the event counts a failed attempt and is
        # retried or parked like any other failure; the hard limit is the backstop, and its message
        # goes back on the queue.
        task_soft_time_limit=max(settings.visibility_timeout - 45, 15),
        task_time_limit=max(settings.visibility_timeout - 30, 30),
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        # A killed worker's unacknowledged event becomes visible again after visibility_timeout;
        # look for such events often enough that redelivery follows soon after.
        # Priorities (Redis: 0 first): the beat's jobs and the reconciliations they ask for before
        # events, events before the sweep's look at every open referral, which may be thousands.
        task_default_priority=EVENT_PRIORITY,
        broker_transport_options={
            "priority_steps": PRIORITY_STEPS,
            "visibility_timeout": settings.visibility_timeout,
            "unacked_restore_interval": max(1, min(10, settings.visibility_timeout // 2)),
            "unacked_restore_throttle": 1,
        },
        worker_redirect_stdouts=False,
        # The intake must know quickly whether an event is queued: no long publish retries.
        task_publish_retry=True,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
        broker_connection_timeout=2,
        beat_schedule={
            name: {"task": task, "schedule": every, "kwargs": kwargs, "options": {"priority": CONTROL_PRIORITY}}
            for name, task, every, kwargs in (
                # Twice an interval, each tick running only when the last completed run is due for
                # its successor: a run killed midway is replaced half an interval later, not one.
                ("reconcile", RECONCILE, settings.reconcile_interval / 2, {"tick": True}),
                ("fire-timers", "mmr.fire_timers", settings.timer_interval, {}),
                ("sweep", SWEEP, settings.sweep_interval, {}),
                ("heartbeat", HEARTBEAT, settings.heartbeat_interval, {}),
                ("flow", FLOW, settings.flow_interval, {}),
                ("monthly-reports", MONTHLY_REPORTS, REPORTS_CHECK, {}),
            )
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
    from adapter.wiring import fhir_client

    return fhir_client(load_settings(require=REQUIRED_FOR_FHIR))


def now() -> datetime:
    return state().clock.now(settings().test_clock)


def _publish_options(env: Envelope) -> dict[str, Any]:
    """What Celery writes into message headers and its logs: the event's label, never its content;
    and the event's priority (the sweep's come after everything else)."""
    return {
        "argsrepr": f"[{env.label!r}]",
        "kwargsrepr": "{}",
        "priority": SWEEP_PRIORITY if env.shape == SWEEP_SHAPE else EVENT_PRIORITY,
    }


def queue_keys(queue: str) -> list[str]:
    """The Redis lists a queue's messages wait in, one per priority step (kombu's naming)."""
    return [queue if step == 0 else f"{queue}\x06\x16{step}" for step in PRIORITY_STEPS]


def queue_depth(client: Any, queue: str) -> int:
    pipe = client.pipeline(transaction=False)
    for key in queue_keys(queue):
        pipe.llen(key)
    return sum(int(n) for n in pipe.execute())


def queue_view(client: Any, queue: str, unacked_key: str = "unacked") -> tuple[float | None, int]:
    """When the oldest queued event was received (Unix time; ``None``: none queued), and how many
    messages workers have taken and not yet acknowledged, in one round trip, for ``/metrics``.

    kombu pushes on the left and workers pop on the right, so each priority's next message is its
    last, the oldest but for a fan-out (published after the events it carries were received) or a
    message handed back; the events' own ``received_at`` is read from the message body (Celery's
    headers carry no time). The sweep's priority is left out: its events wait behind all others.

    Taken messages are kombu's ``unacked`` hash: with ``acks_late`` and a prefetch of one, those
    being processed, plus retries a worker holds until their countdown ends.
    """
    pipe = client.pipeline(transaction=False)
    for key in queue_keys(queue)[:-1]:  # not the sweep's: its look at every open referral waits by design
        pipe.lindex(key, -1)
    pipe.hlen(unacked_key)
    *tails, taken = pipe.execute()
    received = [t for raw in tails if raw is not None for t in _received_at(raw)]
    return (min(received) if received else None), int(taken)


def _received_at(raw: str | bytes) -> list[float]:
    """The ``received_at`` of the events in one queued message (a fan-out carries several); none if
    the message is not one of ours or cannot be read."""
    try:
        message = json.loads(raw)
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        envelopes = args[0] if args and isinstance(args[0], list) else args[:1]
        return [float(e["received_at"]) for e in envelopes if isinstance(e, dict) and "received_at" in e]
    except (ValueError, KeyError, IndexError, TypeError):
        return []


def enqueue(env: Envelope) -> None:
    # argsrepr: otherwise Celery reprs the whole envelope, resource included, into the message
    # headers on every publish (a third of the publish's CPU) where monitoring tools show it.
    app.send_task(PROCESS, args=[env.to_dict()], queue=settings().queue, **_publish_options(env))


def run_reconcile() -> int:
    """Reconcile once; raises LockBusy while another reconciliation runs."""
    s = settings()
    with state().reconciliation.running(ttl=RECONCILE_LOCK_TTL):
        return reconciliation.reconcile(
            fhir(), state(), enqueue, now=now(), lookback=timedelta(seconds=s.reconcile_lookback)
        )


def tick_due(last_started: float | None, now: float, interval: float) -> bool:
    """Beat ticks twice an interval; a tick runs when the last completed reconciliation started at
    least three quarters of an interval ago: one run per interval while they complete, and one
    half an interval after a run that did not (completed runs stay within 1.5 intervals)."""
    return last_started is None or now - last_started >= interval * 0.75


def request_reconcile() -> None:
    """Ask for a reconciliation soon (a topic event number jumped), without waiting for it."""
    app.send_task(RECONCILE, kwargs={"requested_at": time.time()}, queue=settings().queue, priority=CONTROL_PRIORITY)


@cache
def runner() -> Runner:
    from adapter.workflow.steps import ROUTINE  # here: a process that only enqueues never loads the steps

    return Runner(
        fhir(),
        state(),
        routine=ROUTINE,
        now=now,
        options=workflow_options(),
        reconcile=run_reconcile,
        request_reconcile=request_reconcile,
    )


def workflow_options() -> dict[str, Any]:
    from adapter.mappings import load

    options: dict[str, Any] = {"language": settings().language}
    with contextlib.suppress(FileNotFoundError):
        options.update(load("review"))
    return options


def warm_up() -> None:
    """Do once what each process's first event would do: import the steps and the FHIR models, read
    the mappings and the profiles, compile the rules, by planning the published example referral's
    arrival (pure: nothing is read or written, no connection is opened)."""
    from adapter.conformance.package import example
    from adapter.workflow import core
    from adapter.workflow.steps import ROUTINE

    sr = example("ServiceRequest-mmr-example-referral.json")
    ctx = core.Context(now=datetime.now(UTC), options=workflow_options())
    _, after = ROUTINE.planned(core.Referral(sr), core.Event("changed", "ServiceRequest", sr["id"], "1", sr), ctx)
    ROUTINE.due_later(after, ctx)


@worker_init.connect
def _warm_before_the_pool_forks(**_: Any) -> None:
    """In the worker's main process, before the pool forks: every child starts warm (a first event cost
    a child about 0.2-0.4 s of CPU), and ``gc.freeze`` keeps the collector off what they share, so it
    neither scans those objects nor copies their pages. A failed warm-up only leaves the work to the
    first events."""
    try:
        warm_up()
    except Exception as exc:  # never stop a worker for it
        log.warning("warm-up failed: the first events do it", reason=type(exc).__name__)
    gc.collect()
    gc.freeze()


_alive_stop = threading.Event()
_alive_threads: list[threading.Thread] = []


@worker_ready.connect
def _say_alive(sender: Any = None, **_: Any) -> None:
    """In the worker's main process once it consumes: a thread says every ``ALIVE_EVERY`` seconds that
    this worker lives (``mmr_workers_alive``), off the events' path. Its own Redis connection, never
    one the pool's processes share; a failed write is only a missed beat."""
    name = str(getattr(sender, "hostname", None) or f"worker-{id(sender)}")
    _alive_stop.clear()

    def beat() -> None:
        try:
            store = State.from_url(settings().redis_url)
        except Exception as exc:  # never stop a worker for it: only mmr_workers_alive misses this one
            log.warning("worker liveness not reported", reason=type(exc).__name__)
            return
        while True:
            with contextlib.suppress(Exception):
                store.workers.alive(name, time.time(), forget_after=10 * ALIVE_WITHIN)
            if _alive_stop.wait(ALIVE_EVERY):
                with contextlib.suppress(Exception):
                    store.workers.gone(name)
                return

    thread = threading.Thread(target=beat, name="mmr-alive", daemon=True)
    _alive_threads.append(thread)
    thread.start()


@worker_shutdown.connect
def _say_gone(**_: Any) -> None:
    """A worker shutting down stops being counted at once (a killed one after ``ALIVE_WITHIN``)."""
    _alive_stop.set()
    for thread in _alive_threads:
        thread.join(timeout=3)
    _alive_threads.clear()


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
def process(self: Task[Any, Any], envelope: dict[str, Any], failures: int = 0) -> str:
    """Process one event; ``failures`` counts failed attempts (waiting for a lock is not one).

    The message leaves the queue only with an effect, a dead letter or a published retry. When
    even the bookkeeping fails (Redis gone while retrying or parking), the message is handed back
    (``Reject(requeue=True)``); if that cannot reach Redis either, it stays unacknowledged and is
    delivered again after the visibility timeout.
    """
    try:
        try:
            env = Envelope.from_dict(envelope)
        except (AttributeError, TypeError, ValueError) as exc:
            return _park_unreadable(envelope, exc)
        bind_correlation(env.correlation_id, event=env.label, attempt=failures + 1)
        return _attempt(self, env, failures)
    except (Retry, Reject):
        raise
    except Exception as exc:
        log.warning("event could not be retried or parked: handed back to the queue", reason=type(exc).__name__)
        time.sleep(1)  # Redis is likely down: do not spin on the message
        raise Reject(type(exc).__name__, requeue=True) from None


def _park_unreadable(envelope: Any, exc: Exception) -> str:
    """An envelope no worker can read (an API and a worker of different versions): dead-lettered as it
    came, for an operator to see, since no retry can make it readable."""
    bind_correlation(new_correlation_id(), event="unreadable envelope")
    entry = state().dlq.park_raw(envelope, f"unreadable envelope: {type(exc).__name__}")
    state().metrics.count("dead_lettered", "other")
    log.error("event dead-lettered", reason="unreadable envelope", dlq_id=entry)
    return "dead-lettered"


def _came_in(env: Envelope) -> bool:
    """The event came in through the API (not a timer's, the sweep's or a reconciliation's)."""
    return env.shape not in INTERNAL_SHAPES


def _attempt(task: Task[Any, Any], env: Envelope, failures: int) -> str:
    attempts = failures + 1
    kind = env.resource_type or env.kind
    kind = kind if kind in KNOWN_KINDS else "other"
    st = state()
    try:
        outcome = runner().process(env)
    except LockBusy:
        # Another worker holds the referral: come back soon, without counting a failure.
        raise task.retry(
            countdown=0.2 + random.random(), kwargs={"failures": failures}, **_publish_options(env)
        ) from None
    except Exception as exc:
        permanent = isinstance(exc, FhirError) and not exc.transient and exc.status not in (409, 412)
        reason = _reason(exc)
        if permanent or attempts >= settings().max_attempts:
            entry = st.dlq.park(env, reason, attempts)
            st.metrics.count_failure("dead_lettered", kind, delivered=_came_in(env), fhir_answer=_fhir_answer(exc))
            log.error("event dead-lettered", reason=reason, attempts=attempts, dlq_id=entry)
            return "dead-lettered"
        st.metrics.count_failure("retried", kind, delivered=False, fhir_answer=_fhir_answer(exc))
        log.warning("event failed, will retry", reason=reason, attempts=attempts)
        raise task.retry(
            countdown=backoff(attempts - 1), kwargs={"failures": attempts}, **_publish_options(env)
        ) from None
    latency = max(time.time() - env.received_at, 0.0) if outcome.status in ("applied", "held", "nothing") else None
    st.finish_event(outcome.done, outcome.status, kind, delivered=_came_in(env), latency=latency)
    (log.debug if outcome.status == "ignored" else log.info)(
        "event processed", outcome=outcome.status, writes=outcome.writes
    )
    return outcome.status


def _fhir_answer(exc: BaseException) -> str | None:
    """How the FHIR server failed an attempt, as a metric label of three values: ``none`` (no answer:
    refused, timed out, unreachable), ``5xx`` or ``4xx``; ``None`` when the failure was not the server's."""
    if not isinstance(exc, FhirError):
        return None
    return "none" if exc.status == 0 else f"{exc.status // 100}xx" if 400 <= exc.status < 600 else None


def _reason(exc: BaseException) -> str:
    """Why an attempt failed, for logs and dead letters: never an exception's text, which may quote data.

    One line an operator can act on: the request (method, address without its query, what it
    asked), the failure, and where the failure points at the adapter's own settings, which one.
    """
    if isinstance(exc, FhirError):
        return f"FHIR {exc.summary}{_hint(exc)}"
    return type(exc).__name__


def _hint(exc: FhirError) -> str:
    if exc.status == 0 and not isinstance(exc, Refused):
        return "; is the FHIR server up and MMR_FHIR_BASE_URL right?"
    if exc.status in (401, 403):
        return "; check MMR_FHIR_AUTH and its credentials"
    return ""


@app.task(bind=True, name=RECONCILE, acks_late=True, ignore_result=True, max_retries=None)
def reconcile_task(self: Task[Any, Any], requested_at: float | None = None, tick: bool = False) -> int:
    """Reconcile, unless one started after this was requested and completed (``tick``, beat's: unless
    the last completed one is not yet due for its successor, :func:`tick_due`).

    While another runs, this one waits for it a bounded number of times (the running one's lock
    lives only while it works, so a killed run frees it within seconds); then it gives up, logged
    once: the next scheduled run follows within one interval.
    """
    bind_correlation(new_correlation_id(), job="reconcile")
    if tick and not tick_due(state().reconciliation.last(), time.time(), settings().reconcile_interval):
        return 0
    requested_at = requested_at or time.time()
    if state().reconciliation.since(requested_at):
        return 0
    try:
        found = run_reconcile()
    except LockBusy:
        if self.request.retries >= RECONCILE_BUSY_RETRIES:
            log.info("reconciliation still running elsewhere: this request is left to the next run")
            return 0
        raise self.retry(countdown=RECONCILE_BUSY_WAIT) from None
    if found:
        log.info("reconciliation queued changes", found=found)
    return found


@app.task(name=SWEEP, acks_late=True, ignore_result=True)
def sweep_task(when_idle: bool = True) -> int:
    """Look at every open referral again: lost timers come back, deleted Tasks are noticed.

    ``when_idle`` (beat's runs): skip while the last sweep's events still wait, so sweeps never pile
    up behind a slow worker; ``mmr-adapter sweep`` sweeps whatever is queued."""
    bind_correlation(new_correlation_id(), job="sweep")
    waiting = int(state().r.llen(queue_keys(settings().queue)[-1]))  # the last sweep's, lowest priority
    if waiting and when_idle:
        log.info("sweep skipped: the last sweep's events are still queued", waiting=waiting)
        return 0
    queued = sweeping.sweep(fhir(), state(), enqueue)
    log.info("sweep queued the open referrals", referrals=queued)
    return queued


@app.task(name=HEARTBEAT, ignore_result=True)
def heartbeat_task() -> float:
    """Write the heartbeat whose notification must come back (``mmr_heartbeat_age_seconds``)."""
    bind_correlation(new_correlation_id(), job="heartbeat")
    return heartbeats.write(fhir(), state())


@app.task(name=FLOW, ignore_result=True)
def flow_task() -> int:
    """Refresh the flow store and the operators' now-gauges (``mmr_flow_*``). A run that fails
    leaves the last gauges (their age is ``mmr_flow_figures_timestamp_seconds``), says so in the log
    and is followed by the next one; a run is never retried: the next is one interval away."""
    bind_correlation(new_correlation_id(), job="flow")
    from adapter.pipeline import flow_job  # here: only the job pays for DuckDB and the views

    try:
        return flow_job.run(settings(), state(), now())
    except Exception as exc:
        log.warning("flow figures not refreshed: the gauges keep their last values", reason=type(exc).__name__)
        return 0


@app.task(name=MONTHLY_REPORTS, ignore_result=True)
def monthly_reports_task() -> int:
    """Publish last month's MeasureReports once they are due and not on the server yet (hourly: the
    look is one search; the publish, once a month, refreshes the store first). A failed run is
    caught up by the next."""
    bind_correlation(new_correlation_id(), job="monthly-reports")
    from adapter.pipeline import monthly_reports
    from adapter.workflow.calendar import STOCKHOLM

    try:
        done = monthly_reports.publish_if_due(settings(), now().astimezone(STOCKHOLM).date(), fhir())
    except Exception as exc:
        log.warning("monthly MeasureReports not published: the next look tries again", reason=type(exc).__name__)
        return 0
    if done is not None:
        log.info("monthly MeasureReports published", written=done.written, unchanged=len(done.unchanged))
    return done.written if done else 0


@app.task(name="mmr.fire_timers", acks_late=True, ignore_result=True)
def fire_timers_task(at: str | None = None) -> int:
    """Queue every due timer exactly once; ``at`` (ISO time) lets tests and the demo move the clock."""
    bind_correlation(new_correlation_id(), job="fire-timers")
    moment = datetime.fromisoformat(at) if at else now()
    return fire_due_timers(state(), moment)


def fire_due_timers(st: State, moment: datetime) -> int:
    fired = 0
    for member, due in st.timers.due(moment):
        if not st.timers.claim(member, moment):
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
    args: list[Any]  # one envelope, or the list of them
    if len(envelopes) == 1:
        name, args, shown = PROCESS, [envelopes[0].to_dict()], f"[{envelopes[0].label!r}]"
    else:
        name, args, shown = FAN_OUT, [[env.to_dict() for env in envelopes]], f"[{len(envelopes)} events]"
    app.send_task(name, args=args, queue=queue or settings().queue, argsrepr=shown, kwargsrepr="{}", **publish)


@app.task(name=FAN_OUT, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def fan_out_task(envelopes: list[dict[str, Any]]) -> int:
    """Queue each event of one notification as its own message (then processed, retried, dead-lettered alone).

    If it stops halfway (Redis gone), the message is handed back, never acknowledged, and the whole
    list is queued again: the events already queued are processed twice, which is harmless (effects
    are idempotent, processed versions are remembered).
    """
    first = envelopes[0] if envelopes and isinstance(envelopes[0], dict) else {}
    bind_correlation(str(first.get("correlation_id") or new_correlation_id()), job="fan-out", events=len(envelopes))
    try:
        for data in envelopes:
            enqueue(Envelope.from_dict(data))
    except Exception as exc:
        log.warning("notification could not be fanned out: handed back to the queue", reason=type(exc).__name__)
        time.sleep(1)  # Redis is likely down: do not spin on the message
        raise Reject(type(exc).__name__, requeue=True) from None
    return len(envelopes)
