"""The pure heart of the adapter: state in, planned writes and timers out.

A *step* is a function ``(Referral, Event, Context) -> Plan``. It reads nothing and writes
nothing; the shell (``adapter.pipeline.runner``) loads the referral, runs the steps the
:class:`Routine` lists for the event's kind and applies the plan as one FHIR transaction. Steps
are level-triggered: they compare what the server holds with what the routine requires, so a
duplicate, late or out-of-order event plans nothing new.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import cached_property, wraps
from typing import Any, Literal, TypeVar

from adapter.fhir.resource import Resource, identifier_value, local_reference, ref, version
from adapter.fhir.search import identifier_criteria

T = TypeVar("T")

EventKind = Literal["changed", "deleted", "timer"]


@dataclass(frozen=True)
class Event:
    """Something happened to one resource, or a timer came due, for one referral."""

    kind: EventKind
    resource_type: str
    resource_id: str
    version_id: str | None = None
    resource: Resource | None = None  # the notified body or routing's read, if any: a hint, never state
    timer: str | None = None  # the timer's name, for kind == "timer"

    @property
    def key(self) -> str:
        """The key the routine lists the steps under: ``Task``, ``deleted:Task``, ``timer:overdue``."""
        if self.kind == "timer":
            return f"timer:{self.timer}"
        return self.resource_type if self.kind == "changed" else f"deleted:{self.resource_type}"


def per_state(reads: frozenset[str] | None = None) -> Callable[[Callable[[Referral], T]], Callable[[Referral], T]]:
    """Make a function of the state alone (what a step looks up: our Task, the CarePlan) derived once
    per state (:meth:`Referral.derived`), kept by the next state unless its plan writes ``reads``."""

    def wrap(lookup: Callable[[Referral], T]) -> Callable[[Referral], T]:
        @wraps(lookup)
        def once(referral: Referral) -> T:
            return referral.derived(lookup, lambda: lookup(referral), reads)

        return once

    return wrap


@dataclass(frozen=True)
class Referral:
    """One referral as the server holds it: the ServiceRequest and everything loaded around it.

    ``resources`` maps ``Type/id`` to the resource; resources a plan creates in the same
    transaction are present under their ``urn:uuid:`` placeholder.
    """

    service_request: Resource
    resources: Mapping[str, Resource] = field(default_factory=dict)
    # What steps derive from this state, with the resource types it was derived from (None: all).
    _derived: dict[Hashable, tuple[Any, frozenset[str] | None]] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    def derived(self, key: Hashable, compute: Callable[[], T], reads: frozenset[str] | None = None) -> T:
        """``compute()``, once per state and ``key`` (what besides the state it depends on).

        A state never changes; the next one (:meth:`with_plan`) keeps what was derived only from
        ``reads``, the resource types the plan did not write.
        """
        if key not in self._derived:
            self._derived[key] = (compute(), reads)
        value: T = self._derived[key][0]  # stored as Any: one cache holds every key's type
        return value

    @property
    def id(self) -> str:
        ident: str = self.service_request["id"]
        return ident

    @property
    def reference(self) -> str:
        return f"ServiceRequest/{self.id}"

    def get(self, reference: str | Mapping[str, Any] | None) -> Resource | None:
        """Resolve a reference (string or Reference) among the loaded resources."""
        if isinstance(reference, Mapping):
            reference = reference.get("reference")
        if not reference:
            return None
        if reference.startswith("urn:"):  # a resource planned in the same transaction
            return self.resources.get(reference)
        key = local_reference(reference)
        return self.resources.get(key) if key else None

    def all(self, resource_type: str) -> list[Resource]:
        return list(self.derived("resources by type", self._by_type).get(resource_type, ()))

    def _by_type(self) -> dict[str, list[Resource]]:
        out: dict[str, list[Resource]] = {}
        for r in self.resources.values():
            if isinstance(kind := r.get("resourceType"), str):  # (one from elsewhere may hold anything)
                out.setdefault(kind, []).append(r)
        return out

    def tasks(self, code: str | None = None, system: str | None = None) -> list[Resource]:
        """Tasks whose focus is this referral, optionally with a given code."""
        out = []
        for t in self.all("Task"):
            codings = (t.get("code") or {}).get("coding") or ()
            if code is None or any(
                c.get("code") == code and (system is None or c.get("system") == system) for c in codings
            ):
                out.append(t)
        return out

    def by_identifier(self, system: str, value: str) -> Resource | None:
        return next((r for r in self.resources.values() if identifier_value(r, system) == value), None)

    def with_plan(self, plan: Plan) -> Referral:
        """The state as it will be once ``plan`` is applied: lets later steps build on earlier ones."""
        if not plan.writes:  # most steps of an event write nothing: the same state, with all it derived
            return self
        resources = dict(self.resources)
        service_request = self.service_request
        for w in plan.writes:
            resources[w.key] = w.resource
            if w.key == self.reference:
                service_request = w.resource
        after = replace(self, resources=resources, service_request=service_request)
        written = {w.resource.get("resourceType") for w in plan.writes}
        after._derived.update(
            {
                k: (value, reads)
                for k, (value, reads) in self._derived.items()
                if reads is not None and not written & reads
            }
        )
        return after


@dataclass(frozen=True)
class Write:
    """One entry of the transaction: a conditional create or a version-aware update."""

    resource: Resource
    if_none_exist: str | None = None  # create: "identifier=system|value", escaped and URL-encoded
    if_match: str | None = None  # update: the versionId the plan was made against

    @property
    def is_create(self) -> bool:
        return "id" not in self.resource

    @cached_property  # a plan looks its writes up by key on every step it adds
    def key(self) -> str:
        return self.full_url if self.is_create else ref(self.resource)

    @property
    def full_url(self) -> str:
        """A stable placeholder for a new resource, so other writes in the plan can point at it."""
        if not self.is_create:
            return ref(self.resource)
        return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, self.if_none_exist or repr(self.resource))}"


def create(resource: Resource, identifier_system: str, identifier_value_: str) -> Write:
    """Plan the creation of a resource carrying a deterministic business identifier.

    The server keeps it idempotent (``If-None-Exist`` on that identifier), so replaying the
    event never makes a second one.
    """
    ident = {"system": identifier_system, "value": identifier_value_}
    others = [i for i in resource.get("identifier") or () if i.get("system") != identifier_system]
    body = {**resource, "identifier": [ident, *others]}
    return Write(body, if_none_exist=identifier_criteria(identifier_system, identifier_value_))


def update(resource: Resource, **changes: Any) -> Write:
    """Plan an update of a loaded resource, guarded by the version it was read at.

    ``None`` as a value removes the element. A resource created in the same plan has no version
    to guard; build it complete in its ``create`` instead.
    """
    if "id" not in resource:
        raise ValueError("update() needs a stored resource; build a new one complete in create()")
    body = {k: v for k, v in {**resource, **changes}.items() if v is not None}
    return Write(_in_order(body), if_match=version(resource))


def _in_order(resource: Resource) -> Resource:
    """Nothing ends before it began: a Task is not modified before it was authored (``inv-1``), a
    period does not end before its start (``per-1``); HAPI's validator checks both.

    The earlier moment may come from a clock running ahead of ours: another worker's, an EHR's.
    """
    if resource.get("resourceType") == "Task" and _before(resource.get("lastModified"), resource.get("authoredOn")):
        resource = {**resource, "lastModified": resource["authoredOn"]}
    period = resource.get("period")
    if isinstance(period, dict) and _before(period.get("end"), period.get("start")):
        resource = {**resource, "period": {**period, "end": period["start"]}}
    return resource


def _before(later: Any, earlier: Any) -> bool:
    """``later`` is a dateTime before ``earlier``; False for anything that is not two comparable moments."""
    if not (isinstance(later, str) and isinstance(earlier, str)):
        return False
    try:
        return datetime.fromisoformat(later) < datetime.fromisoformat(earlier)
    except (TypeError, ValueError):  # a partial date, or one with a zone and one without
        return False


@dataclass(frozen=True)
class Timer:
    """Come back to this referral at ``due`` with the event ``timer:<name>``."""

    name: str
    referral_id: str
    due: datetime

    @property
    def member(self) -> str:
        return f"{self.referral_id}|{self.name}"


@dataclass(frozen=True)
class Plan:
    writes: tuple[Write, ...] = ()
    timers: tuple[Timer, ...] = ()
    notes: tuple[str, ...] = ()  # what the step decided and why: logged, never containing PII
    counts: tuple[str, ...] = ()  # workflow events the shell counts (metrics) once the writes are applied

    def __add__(self, other: Plan) -> Plan:
        if other.empty and not other.notes and not other.counts:  # most steps of an event plan nothing
            return self
        merged: dict[str, Write] = {w.key: w for w in self.writes}
        for w in other.writes:
            earlier = merged.get(w.key)
            # A later step's update of something an earlier step planned keeps the original guard.
            merged[w.key] = replace(w, if_match=earlier.if_match, if_none_exist=earlier.if_none_exist) if earlier else w
        return Plan(
            tuple(merged.values()), self.timers + other.timers, self.notes + other.notes, self.counts + other.counts
        )

    @property
    def empty(self) -> bool:
        return not self.writes and not self.timers


NOTHING = Plan()
IGNORED = ": ignored"  # a note ending so says the event is none of the routine's business (logged at debug)
# A note ending so says an MMR referral could not be routed and is held by the region's referral
# coordinator: the event's own outcome ("held"), logged at WARNING, never "ignored".
HELD = ": held"


def note(text: str) -> Plan:
    return Plan(notes=(text,))


@dataclass(frozen=True)
class Context:
    """Everything a step may know besides the referral: the time and configuration."""

    now: datetime
    options: Mapping[str, Any] = field(default_factory=dict)


Step = Callable[[Referral, Event, Context], Plan]


@dataclass(frozen=True)
class Routine:
    """Which steps run for which event key (``ServiceRequest``, ``deleted:Task``, ``timer:overdue``),
    in which order: the routine's table (``adapter.workflow.steps.ROUTINE``), built from one explicit
    list, so the order a referral's steps run in is read in one place, never made by imports."""

    steps: Mapping[str, tuple[Step, ...]]

    @classmethod
    def of(cls, *rows: tuple[Step, Iterable[str]]) -> Routine:
        """The routine from ``(step, keys)`` rows in its order: each key runs its steps in row order."""
        table: dict[str, list[Step]] = {}
        for step, keys in rows:
            for key in keys:
                steps = table.setdefault(key, [])
                if step in steps:
                    raise ValueError(f"{step.__qualname__} is listed twice for {key}")
                steps.append(step)
        return cls({key: tuple(steps) for key, steps in table.items()})

    def steps_for(self, key: str) -> tuple[Step, ...]:
        return self.steps.get(key, ())

    def decide(self, referral: Referral, event: Event, ctx: Context) -> Plan:
        """Run every step listed for the event, each seeing the state the previous ones planned."""
        return self.planned(referral, event, ctx)[0]

    def planned(self, referral: Referral, event: Event, ctx: Context) -> tuple[Plan, Referral]:
        """:meth:`decide`, and the state as its plan leaves it, with what the steps derived on the way
        (so :meth:`due_later` on it need not derive it again)."""
        plan = NOTHING
        state = referral
        for step in self.steps_for(event.key):
            part = step(state, event, ctx)
            plan = plan + part
            state = state.with_plan(part)
        return plan, state

    def due_later(self, referral: Referral, ctx: Context) -> tuple[Timer, ...]:
        """What is due later for this referral, derived from its state alone.

        Each timer's steps are asked what they would do if their timer came due now: the timers they
        re-arm are the ones the state requires, and a step that would write already needs its timer
        now. So a timer lost between the transaction and the timer write (a worker killed, Redis
        gone) is set again when the shell derives them (the referral's next event, a timer, the
        sweep), and a replay sets nothing new.
        """
        due: dict[str, Timer] = {}
        for key in self.steps:
            if not key.startswith("timer:"):
                continue
            name = key.removeprefix("timer:")
            plan = self.decide(referral, Event("timer", "ServiceRequest", referral.id, timer=name), ctx)
            now = (Timer(name, referral.id, ctx.now),) if plan.writes else ()
            for timer in (*plan.timers, *now):
                if timer.member not in due or timer.due < due[timer.member].due:
                    due[timer.member] = timer
        return tuple(due.values())
