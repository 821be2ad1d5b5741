"""Process one event: route it to its referral, lock, load, decide, write one transaction.

This is the only place where the pure workflow meets the FHIR server. A version conflict
(someone else wrote in between) means: read again and plan again, never overwrite.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from adapter.fhir.client import FhirClient, FhirError, NotFound, VersionConflict
from adapter.fhir.resource import Resource, ref, version
from adapter.logs import log
from adapter.mappings import codes
from adapter.pipeline import heartbeat
from adapter.pipeline.envelope import Envelope
from adapter.pipeline.state import State
from adapter.workflow import core, load, routing
from adapter.workflow.core import Event, Plan, Referral, Routine

MAX_REPLANS = 3
MAX_HOPS = 4
SWEEP = "sweep"  # the shape of the events the periodic sweep of open referrals queues


@dataclass
class Outcome:
    status: Literal["applied", "held", "nothing", "ignored", "duplicate", "reconciled", "heartbeat"]
    referrals: list[str] = field(default_factory=list)
    writes: int = 0
    notes: list[str] = field(default_factory=list)
    done: tuple[str, ...] = ()  # the processed-event keys to mark, with the event's other bookkeeping


class Runner:
    """The shell around :meth:`adapter.workflow.core.Routine.planned`; one per worker process."""

    def __init__(
        self,
        fhir: FhirClient,
        state: State,
        *,
        routine: Routine,
        now: Callable[[], datetime],
        options: Mapping[str, Any] | None = None,
        reconcile: Callable[[], int] | None = None,
        request_reconcile: Callable[[], None] | None = None,
    ) -> None:
        self.fhir = fhir
        self.state = state
        self.routine = routine  # adapter.workflow.steps.ROUTINE: the steps, imported only by who runs them
        self.now = now
        self.options = dict(options or {})
        self.reconcile = reconcile
        self.request_reconcile = request_reconcile
        self._server_search: load.ServerSearch | None = None

    # ------------------------------------------------------------ entry point

    def process(self, env: Envelope) -> Outcome:
        """Process one event; the caller marks ``Outcome.done`` (:meth:`State.finish_event`).

        Every event of a referral sets again each timer its state requires that is missing (one
        lost between a transaction and its timer write comes back with the referral's next event,
        its next timer or the sweep)."""
        if env.kind == "ping":
            # A ping says only "something changed": search. Pings arriving while a search runs
            # are covered by the next one, not by one search each.
            if self.state.reconciliation.since(env.received_at) or self.reconcile is None:
                return Outcome("duplicate")
            found = self.reconcile()
            return Outcome("reconciled", notes=[f"ping: {found} change(s) found and queued"])
        if heartbeat.is_heartbeat(env.resource_type, env.resource_id):
            heartbeat.delivered(self.fhir, self.state)
            return Outcome("heartbeat", notes=["the adapter's own heartbeat came back"])
        if self.state.events.seen(env.dedup_keys):
            return Outcome("duplicate")
        self._watch_event_number(env)
        referral_ids, read = self.route(env)
        if not referral_ids:
            # None of the routine's business: done, counted and logged at debug, never retried.
            log.debug("event ignored: not about an MMR referral")
            return Outcome("ignored", notes=["not about a referral"], done=self._done(env, read))
        total = Outcome("nothing", referrals=referral_ids)
        for referral_id in referral_ids:
            with self.state.locks.referral(referral_id):
                result, loaded = self._process_referral(referral_id, env, read)
            read = loaded.get(f"{env.resource_type}/{env.resource_id}", read) if loaded else read
            total.writes += result.writes
            total.notes += result.notes
            if result.status in ("applied", "held"):
                total.status = result.status
            elif result.status == "ignored" and total.status == "nothing":
                total.status = "ignored"
        total.done = self._done(env, read)
        return total

    @staticmethod
    def _done(env: Envelope, server_copy: Resource | None) -> tuple[str, ...]:
        """The keys saying the event was processed: by the version the server holds, never the notified one."""
        if env.kind == "timer":
            return env.dedup_keys
        if env.kind == "changed" and server_copy is not None and (server_version := version(server_copy)):
            return (env.processed_key(server_version),)
        return ()

    def _watch_event_number(self, env: Envelope) -> None:
        """A topic event number that jumps or restarts means notifications were lost: reconcile soon."""
        if env.event_number is None or self.request_reconcile is None:
            return
        subscription, number = env.event_number
        if self.state.events.number_gap(subscription, number):
            log.info("topic event numbers jumped or restarted: reconciliation requested", subscription=subscription)
            self.request_reconcile()

    def _process_referral(
        self, referral_id: str, env: Envelope, read: dict[str, Any] | None = None
    ) -> tuple[Outcome, Mapping[str, Any]]:
        event = self._event(env, referral_id, read)
        for _ in range(MAX_REPLANS):
            referral = self.read_referral(referral_id, event)
            if referral is None:
                return Outcome("ignored", [referral_id], notes=[f"ServiceRequest/{referral_id} is gone"]), {}
            ctx = core.Context(now=self.now(), options=self.options)
            plan, after = self.routine.planned(referral, event, ctx)
            for text in plan.notes:
                level = (
                    log.debug if text.endswith(core.IGNORED) else log.warning if text.endswith(core.HELD) else log.info
                )
                level("step", referral=referral_id, note=text)
            # Timers are derived state: what the referral's state (as it will be) requires. Cheap: the
            # timers' steps find every rule the event's steps evaluated (``Routine.planned``).
            required = self.routine.due_later(after, ctx)
            if not plan.writes:
                self.state.timers.set(plan.timers, keep=required)
                # A ServiceRequest that is no MMR referral of ours: none of the routine's business.
                unrelated = bool(plan.notes) and all(n.endswith(core.IGNORED) for n in plan.notes)
                return Outcome(
                    "ignored" if unrelated else "nothing", [referral_id], notes=list(plan.notes)
                ), referral.resources
            try:
                self.apply(plan, source=f"{codes().base}/Device/mmr-adapter#{env.correlation_id}")
            except VersionConflict as exc:
                log.info("version conflict, planning again", referral=referral_id, reason=exc.summary)
                continue
            self.state.timers.set(plan.timers, keep=required)
            self.state.metrics.count_workflow(plan.counts)
            # An MMR referral no clinic can own, now held by the referral coordinator: its own outcome.
            held = any(n.endswith(core.HELD) for n in plan.notes)
            return Outcome(
                "held" if held else "applied", [referral_id], len(plan.writes), list(plan.notes)
            ), referral.resources
        raise VersionConflict(412, f"ServiceRequest/{referral_id} kept changing; {MAX_REPLANS} plans conflicted")

    @staticmethod
    def _event(env: Envelope, referral_id: str, read: dict[str, Any] | None = None) -> Event:
        if env.kind == "timer":
            return Event("timer", "ServiceRequest", referral_id, timer=env.timer)
        assert env.kind != "ping"  # process() answers a ping before any referral is read
        return Event(
            env.kind,
            env.resource_type or "",
            env.resource_id or "",
            env.version_id,
            env.resource or read,
        )

    # ------------------------------------------------------------ routing

    def route(self, env: Envelope) -> tuple[list[str], dict[str, Any] | None]:
        """The referral ids this event concerns, following references (with reads) as needed, and the
        event's resource as read from the server if routing had to read it."""
        if env.kind == "timer" or env.resource_type == "ServiceRequest":
            return ([env.resource_id] if env.resource_id else []), None
        read = None if env.resource else self._current_or_last(env.resource_type or "", env.resource_id or "")
        resource = env.resource or read
        for _ in range(MAX_HOPS):
            if resource is None:
                return [], read
            hops = routing.next_hops(resource)
            if not hops:
                return [], read
            if hops[0].startswith("ServiceRequest/"):
                return [hops[0].split("/", 1)[1]], read
            resource = None
            for hop in hops:
                rtype, rid = hop.split("/", 1)
                resource = self._current_or_last(rtype, rid)
                if resource is not None:
                    break
        return [], read

    def _current_or_last(self, resource_type: str, resource_id: str) -> dict[str, Any] | None:
        """The resource, or its last version before deletion (a DELETE notification has no body)."""
        try:
            return self.fhir.read(resource_type, resource_id)
        except NotFound:
            pass
        try:
            history = self.fhir.get(f"{resource_type}/{resource_id}/_history?_count=5")
        except NotFound:
            return None
        return next((e["resource"] for e in history.get("entry") or () if e.get("resource")), None)

    # ------------------------------------------------------------ state

    def read_referral(self, referral_id: str, event: Event | None = None) -> Referral | None:
        """The referral and what surrounds it: one search with includes (in one batch with the searches
        phase two will likely need, where the event or the referral's last load lets them be guessed),
        then at most two batches.

        On a server that cannot revinclude the answers, phase two is remembered per referral (in Redis,
        for every worker process): a timer or an event that names no patient guesses from that."""
        server = self.server_search()
        query, guessed = load.referral_query(referral_id, server), load.guessed_queries(event, server)
        remembered = [] if server.answers else self.state.guesses.phase_two(referral_id)
        guessed += [url for url in remembered if url not in guessed]
        if guessed:
            first, *pages = self.fhir.batch_get([query, *guessed], whole=False)
            first = self.fhir.whole(first)
        else:
            first, pages = self.fhir.get(query), []
        resources = _collect(first)
        service_request = resources.get(f"ServiceRequest/{referral_id}")
        if service_request is None:
            return None
        more = load.follow_up_queries(service_request, resources, event, self.options, server)
        # A guess counts if phase two asks for exactly it; only then are its further pages read
        if confirmed := [url for url in guessed if url in more]:
            for url in confirmed:
                resources.update(_collect(self.fhir.whole(pages[guessed.index(url)])))
            more = [
                url
                for url in load.follow_up_queries(service_request, resources, event, self.options, server)
                if url not in confirmed
            ]
        if not server.answers and (asked := [*confirmed, *more]) != remembered:
            self.state.guesses.remember_phase_two(referral_id, asked)
        if more:
            for reply in self.fhir.batch_get(more):
                resources.update(_collect(reply))
        referral = Referral(service_request, resources)
        record = load.record_queries(referral, self.now())
        if record:
            for reply in self.fhir.batch_get(record):
                resources.update(_collect(reply))
            referral = Referral(service_request, resources)
        return referral

    def server_search(self) -> load.ServerSearch:
        """What the server's search can do, read once per process from its CapabilityStatement; while
        that cannot be read, what every server does."""
        if self._server_search is None:
            try:
                self._server_search = load.ServerSearch.of(self.fhir.capabilities())
            except (FhirError, ValueError) as exc:
                reason = exc.summary if isinstance(exc, FhirError) else "not JSON"
                log.warning("capability statement unreadable: searching as on any server", reason=reason)
                return load.ServerSearch()
        return self._server_search

    # ------------------------------------------------------------ writing

    def apply(self, plan: Plan, source: str | None = None) -> dict[str, Any]:
        """Write the plan as one transaction; raise VersionConflict if anything moved."""
        started = time.perf_counter()
        reply = self.fhir.transaction(transaction_bundle(plan, source))
        log.info("transaction written", writes=len(plan.writes), seconds=round(time.perf_counter() - started, 3))
        return reply


def _collect(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    if doc.get("resourceType") != "Bundle":
        return {ref(doc): doc} if doc.get("id") else {}
    return {
        ref(e["resource"]): e["resource"]
        for e in doc.get("entry") or ()
        if (e.get("resource") or {}).get("id") and e["resource"].get("resourceType") != "OperationOutcome"
    }


def transaction_bundle(plan: Plan, source: str | None = None) -> dict[str, Any]:
    """A transaction Bundle: conditional creates (``ifNoneExist``) and ``ifMatch`` updates.

    ``source`` goes in every written version's ``meta.source``: the audit trail of which event
    (by correlation id) made the adapter write it.
    """
    entries = []
    for w in plan.writes:
        body = _strip_server_meta(w.resource)
        if source:
            body["meta"] = {**body.get("meta", {}), "source": source}
        rtype = body["resourceType"]
        if w.is_create:
            request = {"method": "POST", "url": rtype}
            if w.if_none_exist:
                request["ifNoneExist"] = w.if_none_exist
        else:
            request = {"method": "PUT", "url": f"{rtype}/{body['id']}"}
            if w.if_match:
                request["ifMatch"] = f'W/"{w.if_match}"'
        entry: dict[str, Any] = {"resource": body, "request": request}
        if w.is_create:
            entry = {"fullUrl": w.full_url, **entry}
        entries.append(entry)
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _strip_server_meta(resource: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in (resource.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    body = {k: v for k, v in resource.items() if k != "meta"}
    if meta:
        body["meta"] = meta
    return body
