"""Everything the shell keeps in Redis, one small class per concern, reached through :class:`State`:
``state.events`` (processed-event keys, topic event numbers), ``state.locks`` (one referral at a time),
``state.reconciliation`` (its runs and checkpoints), ``state.dlq`` (dead letters), ``state.timers``,
``state.heartbeat``, ``state.sweep``, ``state.guesses`` (what a referral's load needed last time),
``state.workers`` (which worker processes are alive), ``state.metrics`` (shared by every process),
``state.flow`` (the operators' now-figures beat last computed from the flow store) and
``state.clock`` (the test clock).

One module, not one per concern: every Redis key the adapter writes is in this file, where its
whole key space can be read at once, and :meth:`State.finish_event` writes keys of two concerns in
one round trip. All keys start with ``mmr:``; nothing here holds patient data beyond resource ids.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, cast

import redis

from adapter.pipeline.envelope import Envelope
from adapter.workflow.core import Timer

P = "mmr:"
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# A worker says it is alive this often (:class:`Workers`); one heard from in the last three periods counts.
ALIVE_EVERY = 10.0
ALIVE_WITHIN = 3 * ALIVE_EVERY


# Every client here is made with ``decode_responses=True``, so Redis answers with ``str``; redis-py's
# annotations cannot follow that flag and say ``bytes | str``. The ``cast``s below state what such a
# client returns (they check nothing at run time).


@functools.cache
def _memory_redis() -> redis.Redis:
    try:
        import fakeredis  # development only: the demo's store; not installed in production
    except ImportError:
        raise RuntimeError("memory:// (the demo's in-process store) needs fakeredis: pip install -e '.[dev]'") from None
    return fakeredis.FakeRedis(decode_responses=True)


class LockBusy(Exception):
    """Another worker is processing this referral; try again shortly."""


class ProcessedEvents:
    """Which events were processed (their dedup keys) and the topic event numbers seen."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    def seen(self, keys: tuple[str, ...]) -> bool:
        return bool(keys) and bool(self.r.exists(*(P + "done:" + k for k in keys)))

    _EVENT_NUMBER = """
    local prev = tonumber(redis.call('HGET', KEYS[1], ARGV[1]))
    local n = tonumber(ARGV[2])
    local gap = 0
    if prev == nil then
        redis.call('HSET', KEYS[1], ARGV[1], n)
    elseif n > prev then
        redis.call('HSET', KEYS[1], ARGV[1], n)
        if n > prev + 1 then gap = 1 end
    elseif n < prev and (n == 1 or prev - n > tonumber(ARGV[3])) then
        redis.call('HSET', KEYS[1], ARGV[1], n)
        gap = 1
    end
    if gap == 1 and redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[4]) then return 1 end
    return 0
    """

    def number_gap(self, subscription: str, number: int, window: int = 50, quiet: int = 10) -> bool:
        """Record a topic event number; true when it jumped or restarted (HAPI restarted, deliveries lost).

        The same number again is no gap (HAPI 6.6-6.8 sent 1 every time); a number a little below
        the highest is an event delivered out of order. At most one gap is reported per ``quiet`` seconds.
        """
        return bool(
            self.r.eval(
                self._EVENT_NUMBER, 2, P + "event-numbers", P + "event-number-gap", subscription, number, window, quiet
            )
        )


class Locks:
    """One referral's events one at a time, across every worker process."""

    def __init__(self, client: redis.Redis, timeout: float) -> None:
        self.r = client
        self.timeout = timeout

    @contextmanager
    def referral(self, referral_id: str, wait: float = 5.0) -> Iterator[None]:
        """Held while one event of the referral is processed; the lock expires if its holder dies."""
        lock = self.r.lock(f"{P}lock:referral:{referral_id}", timeout=self.timeout, blocking_timeout=wait)
        if not lock.acquire():
            raise LockBusy(referral_id)
        try:
            yield
        finally:
            with contextlib.suppress(redis.exceptions.LockError):
                lock.release()  # it may have expired meanwhile; the work was idempotent anyway


class Reconciliation:
    """Reconciliation runs (one at a time, when the last one started) and each search's checkpoint."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    @contextmanager
    def running(self, ttl: float) -> Iterator[None]:
        """One reconciliation at a time; its start is recorded once it completed.

        The lock lives ``ttl`` seconds and a watchdog thread extends it every third of that while the
        run's process lives, however long one search page takes: a run killed midway frees it within
        ``ttl``. Should the lock lapse under a live run (Redis unreachable for ``ttl``), a second run
        may overlap it, which is harmless: a run only queues events, and queued events are idempotent.
        """
        # not thread-local: the watchdog thread extends the lock this thread took
        lock = self.r.lock(f"{P}lock:reconcile", timeout=ttl, blocking_timeout=0, thread_local=False)
        if not lock.acquire():
            raise LockBusy("reconciliation")
        started, done = time.time(), threading.Event()

        def keep_alive() -> None:
            while not done.wait(ttl / 3):
                try:
                    lock.extend(ttl, replace_ttl=True)
                except (redis.exceptions.LockError, redis.exceptions.RedisError):
                    return

        watchdog = threading.Thread(target=keep_alive, name="reconcile-lock", daemon=True)
        watchdog.start()
        try:
            yield
            self.r.set(f"{P}reconciled-at", started)
        finally:
            done.set()
            watchdog.join()
            with contextlib.suppress(redis.exceptions.LockError):
                lock.release()

    def last(self) -> float | None:
        """When the last completed reconciliation started."""
        last = self.r.get(f"{P}reconciled-at")
        return float(last) if last is not None else None

    def since(self, moment: float) -> bool:
        """Did a reconciliation start after ``moment`` and complete? Then a ping from then is covered."""
        last = self.r.get(f"{P}reconciled-at")
        return last is not None and float(last) > moment

    def checkpoint(self, name: str) -> str | None:
        return cast("str | None", self.r.hget(P + "checkpoints", name))

    def set_checkpoint(self, name: str, value: str) -> None:
        self.r.hset(P + "checkpoints", name, value)


class DeadLetters:
    """Events given up on, kept for an operator to read and replay."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    def park(self, envelope: Envelope, reason: str, attempts: int) -> str:
        entry_id = uuid.uuid4().hex[:12]
        entry = {
            "id": entry_id,
            "parked_at": time.time(),
            "attempts": attempts,
            "reason": reason,
            "envelope": envelope.to_dict(),
        }
        self.r.hset(P + "dlq", entry_id, json.dumps(entry))
        return entry_id

    def park_raw(self, envelope: Any, reason: str) -> str:
        """Dead-letter a message that is no readable envelope, as it came."""
        entry_id = uuid.uuid4().hex[:12]
        entry = {
            "id": entry_id,
            "parked_at": time.time(),
            "attempts": 1,
            "reason": reason,
            "envelope": envelope if isinstance(envelope, dict) else {"unreadable": repr(type(envelope))},
        }
        self.r.hset(P + "dlq", entry_id, json.dumps(entry))
        return entry_id

    def entries(self) -> list[dict[str, Any]]:
        entries = [json.loads(v) for v in self.r.hvals(P + "dlq")]
        return sorted(entries, key=lambda e: e["parked_at"])

    def take(self, entry_id: str) -> dict[str, Any] | None:
        """Remove and return one entry; ``None`` if another replay took it first."""
        pipe = self.r.pipeline()
        pipe.hget(P + "dlq", entry_id)
        pipe.hdel(P + "dlq", entry_id)
        raw, removed = pipe.execute()
        return json.loads(raw) if raw and removed else None

    def size(self) -> int:
        return int(self.r.hlen(P + "dlq"))


class Timers:
    """The referrals' timers, by due time: beat claims and fires those due."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    def set(self, timers: tuple[Timer, ...], keep: tuple[Timer, ...] = ()) -> None:
        """Set ``timers`` (a plan's: they may move an existing one) and add those of ``keep`` that
        are missing (derived from the state: an existing one is kept as it is)."""
        if not timers and not keep:
            return
        pipe = self.r.pipeline(transaction=False)
        if keep:
            pipe.zadd(P + "timers", {t.member: t.due.timestamp() for t in keep}, nx=True)
        if timers:
            pipe.zadd(P + "timers", {t.member: t.due.timestamp() for t in timers})
        pipe.execute()

    def due(self, now: datetime, limit: int = 500) -> list[tuple[str, float]]:
        found = self.r.zrangebyscore(P + "timers", "-inf", now.timestamp(), start=0, num=limit, withscores=True)
        return cast("list[tuple[str, float]]", found)

    def claim(self, member: str, now: datetime) -> bool:
        """Exactly one caller wins a due timer, however many beat runs race."""
        script = (
            "local s = redis.call('ZSCORE', KEYS[1], ARGV[1]) "
            "if s and tonumber(s) <= tonumber(ARGV[2]) then return redis.call('ZREM', KEYS[1], ARGV[1]) end "
            "return 0"
        )
        return bool(self.r.eval(script, 1, P + "timers", member, now.timestamp()))

    def due_count(self, now: datetime) -> int:
        """Timers already due: near zero while beat runs; growing, the scheduler is down."""
        return int(self.r.zcount(P + "timers", "-inf", now.timestamp()))

    def oldest_due_age(self, now: datetime) -> float:
        """Seconds the longest-waiting due timer has been due (0 when none is): what ``check-scheduler``
        checks, as a number to alert on (a count of due timers is never zero under steady load)."""
        first = cast("list[tuple[str, float]]", self.r.zrange(P + "timers", 0, 0, withscores=True))
        return max(now.timestamp() - first[0][1], 0.0) if first else 0.0

    def all(self) -> list[tuple[str, float]]:
        return cast("list[tuple[str, float]]", self.r.zrange(P + "timers", 0, -1, withscores=True))


class Heartbeat:
    """The dead-man's switch: when a heartbeat was written and when the newest came back."""

    _LATEST = (
        "local v = tonumber(redis.call('GET', KEYS[1])) if v == nil or v < tonumber(ARGV[1]) then "
        "redis.call('SET', KEYS[1], ARGV[1]) end return 0"
    )

    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    def written(self, at: float) -> None:
        self.r.set(P + "heartbeat:first-written", at, nx=True)

    def delivered(self, at: float) -> None:
        self.r.eval(self._LATEST, 1, P + "heartbeat:delivered", at)

    def last_delivered(self) -> float | None:
        value = self.r.get(P + "heartbeat:delivered")
        return float(value) if value is not None else None

    def age(self, now: float) -> float | None:
        """Seconds since the newest delivered heartbeat was written (since the first one was written,
        if none ever came back); ``None`` before any heartbeat was written."""
        since = self.last_delivered() or self.r.get(P + "heartbeat:first-written")
        return max(now - float(since), 0.0) if since is not None else None


class Sweep:
    """The open referrals the last sweep saw (the next one visits them too, to see them closed)."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    def referrals(self) -> set[str]:
        return set(cast("set[str]", self.r.smembers(P + "swept")))

    def set_referrals(self, referral_ids: set[str]) -> None:
        pipe = self.r.pipeline()
        pipe.delete(P + "swept")
        if referral_ids:
            pipe.sadd(P + "swept", *referral_ids)
        pipe.execute()


class FlowGauges:
    """The gauge samples beat last computed from the flow store (``adapter/flow/gauges.py``'s, as
    JSON rows), replaced whole each time, read by the API at scrape time. A snapshot, not a count:
    it holds organisation ids and numbers, never a referral's identifier."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    def set(self, rows: list[list[Any]]) -> None:
        self.r.set(P + "flow:gauges", json.dumps(rows))

    def rows(self) -> list[list[Any]]:
        raw = cast("str | None", self.r.get(P + "flow:gauges"))
        return cast("list[list[Any]]", json.loads(raw)) if raw else []


class LoadGuesses:
    """What a referral's load needed last time: a guess for its next load."""

    def __init__(self, client: redis.Redis, ttl: int) -> None:
        self.r = client
        self.ttl = ttl

    def phase_two(self, referral_id: str) -> list[str]:
        """The searches the last load of the referral needed after its first read (a guess for the next
        load to send with that read; only ever used where the load asks for exactly them again)."""
        raw = self.r.get(f"{P}phase2:{referral_id}")
        with contextlib.suppress(ValueError):
            urls = json.loads(raw) if raw else []
            return [u for u in urls if isinstance(u, str)] if isinstance(urls, list) else []
        return []

    def remember_phase_two(self, referral_id: str, urls: list[str]) -> None:
        if urls:
            self.r.set(f"{P}phase2:{referral_id}", json.dumps(urls), ex=self.ttl)
        else:
            self.r.delete(f"{P}phase2:{referral_id}")


class Workers:
    """Which worker processes are alive: each says so every few seconds (by name, when), so ``/metrics``
    counts them with one Redis command instead of a Celery broadcast that waits for answers."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    def alive(self, name: str, at: float, forget_after: float) -> None:
        """``name`` is alive at ``at``; names silent for ``forget_after`` seconds are dropped, so the
        set stays as small as the workers of the last minutes (a name carries a process id)."""
        pipe = self.r.pipeline(transaction=False)
        pipe.zadd(P + "workers", {name: at})
        pipe.zremrangebyscore(P + "workers", "-inf", at - forget_after)
        pipe.execute()

    def gone(self, name: str) -> None:
        """A worker shutting down: no longer counted, without waiting for it to fall silent."""
        self.r.zrem(P + "workers", name)

    def count(self, now: float, within: float) -> int:
        """Workers that said they were alive in the last ``within`` seconds."""
        return int(self.r.zcount(P + "workers", now - within, "+inf"))


class Metrics:
    """Counters shared by every process (the API's ``/metrics`` reads them)."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    def count(self, what: str, kind: str, n: int = 1) -> None:
        self.r.hincrby(P + "metrics:events", f"{what}|{kind}", n)

    def count_failure(self, outcome: str, kind: str, *, delivered: bool, fhir_answer: str | None) -> None:
        """A failed attempt (``retried`` or ``dead_lettered``) in one round trip: its outcome, the
        delivered count for an event that came in through the API, and, when the FHIR server failed
        it, ``fhir_answer`` (``none``: no answer at all, ``4xx``, ``5xx``)."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hincrby(P + "metrics:events", f"{outcome}|{kind}", 1)
        if delivered:
            pipe.hincrby(P + "metrics:delivered", outcome, 1)
        if fhir_answer:
            pipe.hincrby(P + "metrics:fhir-failures", fhir_answer, 1)
        pipe.execute()

    def fhir_failures(self) -> dict[str, str]:
        return cast("dict[str, str]", self.r.hgetall(P + "metrics:fhir-failures"))

    def count_delivered(self, outcome: str) -> None:
        """The outcome of an event that came in through the API (not a timer's, the sweep's or a
        reconciliation's): one per accepted event, so the soak can tell none was acknowledged unseen."""
        self.r.hincrby(P + "metrics:delivered", outcome, 1)

    def delivered_outcomes(self) -> dict[str, int]:
        counts = cast("dict[str, str]", self.r.hgetall(P + "metrics:delivered"))
        return {k: int(v) for k, v in counts.items()}

    def events_and_latency(self) -> tuple[dict[str, str], dict[str, str]]:
        """The events counted by ``outcome|kind``, and the latency histogram."""
        events = cast("dict[str, str]", self.r.hgetall(P + "metrics:events"))
        return events, cast("dict[str, str]", self.r.hgetall(P + "metrics:latency"))

    def count_workflow(self, names: tuple[str, ...]) -> None:
        """Workflow events a written plan reports (``Plan.counts``), e.g. an overdue review flagged."""
        if names:
            pipe = self.r.pipeline()
            for name in names:
                pipe.hincrby(P + "metrics:workflow", name, 1)
            pipe.execute()

    def workflow_counts(self) -> dict[str, str]:
        return cast("dict[str, str]", self.r.hgetall(P + "metrics:workflow"))


class Clock:
    """The test clock: a time tests and the demo set in Redis, read by every worker."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    def now(self, test_clock: bool = False) -> datetime:
        """The time; with the test clock enabled, the one tests and the demo set in Redis."""
        return (self.frozen() if test_clock else None) or datetime.now(UTC)

    def frozen(self) -> datetime | None:
        """The test clock's time, if one is set (``mmr-adapter clock set``)."""
        frozen = cast("str | None", self.r.get(P + "clock"))
        return datetime.fromisoformat(frozen) if frozen else None

    def set(self, when: datetime | None) -> None:
        if when is None:
            self.r.delete(P + "clock")
        else:
            self.r.set(P + "clock", when.isoformat())


class State:
    """The Redis connection and one attribute per concern; what spans concerns in one round trip
    (:meth:`finish_event`) is here."""

    def __init__(self, client: redis.Redis, *, dedup_ttl: int = 30 * 86400, lock_timeout: float = 120.0) -> None:
        self.r = client
        self.dedup_ttl = dedup_ttl
        self.events = ProcessedEvents(client)
        self.locks = Locks(client, lock_timeout)
        self.reconciliation = Reconciliation(client)
        self.dlq = DeadLetters(client)
        self.timers = Timers(client)
        self.heartbeat = Heartbeat(client)
        self.sweep = Sweep(client)
        self.guesses = LoadGuesses(client, dedup_ttl)
        self.workers = Workers(client)
        self.metrics = Metrics(client)
        self.flow = FlowGauges(client)
        self.clock = Clock(client)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> State:
        """Connect to Redis; ``memory://`` gives one in-process store (the demo without Redis)."""
        if url.startswith("memory://"):
            return cls(_memory_redis(), **kwargs)
        return cls(
            redis.Redis.from_url(url, decode_responses=True, socket_timeout=5, socket_connect_timeout=2), **kwargs
        )

    def ping(self) -> bool:
        return bool(self.r.ping())

    def finish_event(
        self, done: tuple[str, ...], status: str, kind: str, *, delivered: bool, latency: float | None
    ) -> None:
        """An event's bookkeeping in one round trip: its processed keys (:attr:`events`), its outcome
        counted (and, for an event that came in through the API, :meth:`Metrics.count_delivered`'s
        count) and its latency (:attr:`metrics`)."""
        pipe = self.r.pipeline(transaction=False)
        for k in done:
            pipe.set(P + "done:" + k, "1", ex=self.dedup_ttl)
        pipe.hincrby(P + "metrics:events", f"{status}|{kind}", 1)
        if delivered:
            pipe.hincrby(P + "metrics:delivered", status, 1)
        if latency is not None:
            for le in LATENCY_BUCKETS:
                if latency <= le:
                    pipe.hincrby(P + "metrics:latency", str(le), 1)
            pipe.hincrby(P + "metrics:latency", "+Inf", 1)
            pipe.hincrbyfloat(P + "metrics:latency", "sum", latency)
        pipe.execute()
