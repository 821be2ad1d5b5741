"""Complete, varied MMR journeys with known timestamps, as the adapter and the units write them.

The adapter's part is written by the adapter's own routine: each event runs through
``ROUTINE.decide`` with a test clock (``Context.now``) on the in-memory server of
``tests.support.workflow`` and is applied, and again on the notification of its own writes, until
nothing more is planned (as the shell and the server would). So every Task version a journey holds
is one the workflow really writes, its ``lastModified`` the given clock. The units' part (the
reviewer's decision, a booking, a moved or patient-cancelled appointment, the programme) is what
docs/integration.md tells them to write, stamped with the same clock.

A :class:`Journey` is its transactions in order; :func:`write` puts them on a FHIR server one
transaction at a time with PUTs, so each resource's history there is the journey's versions (and
``Task/_history`` has every Task version). Ids are fresh per journey (``prefix``), so journeys of
several tests share one server.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from adapter.fhir.client import FhirClient
from adapter.fhir.resource import Resource
from adapter.mappings import codes, directory, flow_rules
from adapter.operations.setup import directory_resources, upsert
from adapter.workflow.core import Context, Event, Referral
from adapter.workflow.mmrpv.common import PROGRAMME_START
from adapter.workflow.steps import ROUTINE
from tests.support.workflow import (
    ALL_MET,
    MMRPV_ANSWERS,
    STHLM,
    apply,
    as_loaded,
    consent,
    patient,
    referrer,
    renamed_references,
    response,
    section,
    service_request,
)

LUND, HASSLEHOLM, ANGELHOLM = "SE2321000255-SML1", "SE2321000255-SMH1", "SE2321000255-SMA1"
HBG, MLM = "SE2321000255-MMRPV-HBG", "SE2321000255-MMRPV-MLM"
SECTIONS = (
    section("pain-history", "Smärta sedan 2019."),
    section("work-situation", "Arbetar 50 %."),
    section("current-treatment", "Fysioterapi."),
)


def day(y: int, m: int, d: int, h: int = 9, minute: int = 0) -> datetime:
    """A moment on the Swedish clock."""
    return datetime(y, m, d, h, minute, tzinfo=STHLM)


_day = day


@dataclass
class Transaction:
    """What one transaction wrote: each resource's new version, at the journey's clock."""

    at: datetime
    resources: list[Resource]


@dataclass
class Journey:
    """One referral's record, transaction by transaction, and what a test needs to find it again."""

    name: str
    key: str  # the referral's business identifier value
    referral: str  # the ServiceRequest's id
    patient: str
    transactions: list[Transaction] = field(default_factory=list)
    state: Referral | None = None

    def current(self) -> Referral:
        assert self.state is not None
        return self.state

    def latest(self, resource_type: str) -> list[Resource]:
        return self.current().all(resource_type)

    def task(self, code: str) -> Resource:
        """Its Task of this type code (the last one of several rounds)."""
        found = [
            t
            for t in self.latest("Task")
            if any(c.get("code") == code for c in (t.get("code") or {}).get("coding") or ())
        ]
        assert found, f"{self.name}: no {code} Task"
        return found[-1]


class Builder:
    """Writes one journey: the referrer's referral, then events and the units' changes, each at a time."""

    def __init__(
        self,
        name: str,
        prefix: str,
        authored: datetime,
        clinic: str = LUND,
        *,
        complete: bool = True,
        criteria: bool = True,
        patient_id: str | None = None,
    ) -> None:
        key = f"{prefix}-{name}"
        pid = patient_id or f"{key}-p"
        self.prefix = prefix
        sr = service_request(
            f"{key}-sr",
            clinic,
            identifier=[{"system": "https://ehr.example.se/remiss", "value": key}],
            subject={"reference": f"Patient/{pid}"},
            requester={"reference": f"PractitionerRole/{key}-ref"},
            supportingInfo=[{"reference": f"Consent/{key}-c"}],
            authoredOn=authored.isoformat(),
            extension=list(ALL_MET) if criteria else None,
            note=list(SECTIONS) if complete else None,
        )
        sr["meta"] = {"versionId": "1"}
        the_consent = consent(f"{key}-c", pid, clinic)
        the_consent |= {  # complete, as the cookbook's referrer writes it (the sandbox requires these)
            "scope": {
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]
            },
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        }
        the_consent["provision"]["actor"][0]["role"] = {"text": "mottagare"}
        party = [
            {**patient(pid), "address": [{"use": "home", "city": "Malmö", "postalCode": "211 20"}]},
            {**referrer(f"{key}-ref")},
            the_consent,
        ]
        resources = {f"{r['resourceType']}/{r['id']}": r for r in [sr, *party, *_directory()]}
        self.journey = Journey(name, key, sr["id"], pid, state=Referral(sr, resources))
        self.journey.transactions.append(Transaction(authored, [_stored(r) for r in [*party, sr]]))
        self.settle(_event(sr), authored + timedelta(hours=1))

    @classmethod
    def resume(cls, journey: Journey) -> Builder:
        """Go on writing a finished journey (a further day of it): its next transactions are appended."""
        builder = cls.__new__(cls)
        builder.prefix = journey.key.removesuffix(f"-{journey.name}")
        builder.journey = journey
        return builder

    # ------------------------------------------------------------ the adapter's part

    def settle(self, event: Event, at: datetime, rounds: int = 12) -> Builder:
        """The adapter handles ``event`` at ``at``, and the notifications of its own writes, until quiet."""
        state = self.journey.current()
        for _ in range(rounds):
            plan = ROUTINE.decide(as_loaded(state), event, Context(now=at))
            if not plan.writes:
                break
            before = state
            state = self._renamed(before, apply(before, plan))
            changed = [
                r
                for k, r in state.resources.items()
                if before.resources.get(k) is None
                or (before.resources[k].get("meta") or {}).get("versionId") != (r.get("meta") or {}).get("versionId")
            ]
            self.journey.transactions.append(Transaction(at, [_stored(r) for r in changed]))
            event = Event("changed", "Task", "self-notification")
        else:
            raise AssertionError(f"{self.journey.name}: the routine keeps planning writes")
        self.journey.state = state
        return self

    def timer(self, name: str, at: datetime) -> Builder:
        """The routine's timer ``name`` comes due at ``at``; one that changes nothing is a mistake in the
        journey (a misspelt name is no timer of the routine's, and it plans nothing)."""
        before = len(self.journey.transactions)
        self.settle(Event("timer", "ServiceRequest", self.journey.referral, timer=name), at)
        assert len(self.journey.transactions) > before, f"{self.journey.name}: timer {name} changed nothing"
        return self

    def _renamed(self, before: Referral, after: Referral) -> Referral:
        """New resources get ids of this journey (the in-memory server's are short hex, which HAPI refuses
        when all digits and two journeys could share)."""
        names = {
            k: f"{k.split('/', 1)[0]}/{self.journey.key}-{k.split('/', 1)[1]}"
            for k in after.resources
            if k not in before.resources
        }
        if not names:
            return after
        resources = {}
        for k, r in after.resources.items():
            body = renamed_references(r, names)
            if k in names:
                body["id"] = names[k].split("/", 1)[1]
            resources[names.get(k, k)] = body
        sr_key = f"ServiceRequest/{self.journey.referral}"
        return Referral(resources[sr_key], resources)

    # ------------------------------------------------------------ the units' part

    def change(self, resource: Resource, at: datetime, notify: bool = True, **changes: Any) -> Builder:
        """Someone else updates a stored resource at ``at`` (a Task's ``lastModified`` set to it)."""
        body = {k: v for k, v in {**copy.deepcopy(resource), **changes}.items() if v is not None}
        if body["resourceType"] == "Task":
            body["lastModified"] = at.isoformat()
        return self._store(body, at, notify)

    def add(self, resource: Resource, at: datetime, notify: bool = True) -> Builder:
        body = copy.deepcopy(resource)
        body.setdefault("id", f"{self.journey.key}-{resource['resourceType'].lower()}-{uuid.uuid4().hex[:6]}")
        return self._store(body, at, notify)

    def _store(self, body: Resource, at: datetime, notify: bool) -> Builder:
        state = self.journey.current()
        key = f"{body['resourceType']}/{body['id']}"
        old = state.resources.get(key)
        body["meta"] = {"versionId": str(int(((old or {}).get("meta") or {}).get("versionId") or "0") + 1)}
        resources = {**state.resources, key: body}
        sr = (
            body
            if key == f"ServiceRequest/{self.journey.referral}"
            else resources[f"ServiceRequest/{self.journey.referral}"]
        )
        self.journey.state = Referral(sr, resources)
        self.journey.transactions.append(Transaction(at, [_stored(body)]))
        if notify:
            self.settle(_event(body), at + timedelta(minutes=1))
        return self

    def decide(self, level: str, at: datetime) -> Builder:
        """The reviewer records the level on the review Task (docs/integration.md, Decide)."""
        c = codes()
        review = self.journey.task("referral-review")
        output = [
            *(review.get("output") or ()),
            {"type": c.concept("task-parameter", "decision"), "valueCodeableConcept": c.concept("level", level)},
        ]
        return self.change(review, at, output=output, businessStatus=c.concept("business-status", "decided"))

    def reject(self, at: datetime) -> Builder:
        review = self.journey.task("referral-review")
        return self.change(
            review,
            at,
            status="rejected",
            businessStatus=codes().concept("business-status", "rejected"),
            statusReason={"text": "Inte aktuellt för MMR."},
        )

    def appointment(self, at: datetime, start: datetime, *, site: str | None = None, clinic: str | None = None) -> str:
        """A booked Appointment based on the referral: at an MMRpv site's Location, or at a clinic."""
        # R4 lets no Organization take part in an Appointment (HAPI refuses one): a clinic's own visit
        # names the clinician the patient sees, a PractitionerRole of the clinic (here its first reviewer's)
        actor = {"reference": f"Location/{site}"} if site else {"reference": f"PractitionerRole/{clinician(clinic)}"}
        aid = f"{self.journey.key}-a{len(self.journey.latest('Appointment')) + 1}"
        self.add(
            {
                "resourceType": "Appointment",
                "id": aid,
                "status": "booked",
                "start": start.isoformat(),
                "end": (start + timedelta(hours=3)).isoformat(),
                "basedOn": [{"reference": f"ServiceRequest/{self.journey.referral}"}],
                "participant": [
                    {"actor": {"reference": f"Patient/{self.journey.patient}"}, "status": "accepted"},
                    {"actor": actor, "status": "accepted"},
                ],
            },
            at,
        )
        return aid

    def booked_at_clinic(self, at: datetime, start: datetime, clinic: str) -> str:
        """The clinic books its own visit (MMRsv) at ``at``: the Appointment, then its booking Task
        completed ``booked`` with the Appointment as output five minutes later. Returns its id."""
        aid = self.appointment(at, start, clinic=clinic)
        self.change(
            self.journey.task("booking"),
            at + timedelta(minutes=5),
            status="completed",
            businessStatus=codes().concept("business-status", "booked"),
            output=[{"type": {"text": "Appointment"}, "valueReference": {"reference": f"Appointment/{aid}"}}],
        )
        return aid

    def appointment_status(
        self, aid: str, status: str, at: datetime, *, reason: str | None = None, start: datetime | None = None
    ) -> Builder:
        """The unit moves (``start``), fulfils or cancels an Appointment; a cancellation for a waiting the
        guarantee does not count carries ``reason`` (patient-chosen, medical) as docs/integration.md says."""
        current = self.journey.current().resources[f"Appointment/{aid}"]
        changes: dict[str, Any] = {"status": status}
        if start is not None:
            changes |= {"start": start.isoformat(), "end": (start + timedelta(hours=3)).isoformat()}
        if reason is not None:
            rules = flow_rules()
            r = rules.waiting_reason(reason)
            changes["cancelationReason"] = {
                "coding": [
                    {"system": rules.hl7_cancellation_reason, "code": r.hl7},
                    {"system": r.system, "code": r.code},
                ]
            }
        return self.change(current, at, **changes)


def clinician(clinic: str | None) -> str:
    """A PractitionerRole of the clinic that setup installs (the directory's first reviewer)."""
    found = next(c for c in directory().clinics if c.hsa_id == clinic)
    return found.reviewers[0].hsa_id


# ---------------------------------------------------------------- the journeys


def journeys(prefix: str | None = None, shift: timedelta = timedelta(0)) -> list[Journey]:
    """The fixed set: known timestamps on the test clock, every case the flow figures must count
    (``shift``: the same set that much later; the routine recomputes every deadline on its calendar).

    * ``sv``: MMRsv at Lund, reviewed in time, booked and seen at the clinic;
    * ``pv``: MMRpv, forwarded to the MMRpv unit (its clock keeps the original date), booked at
      Helsingborg, the booking moved, the programme started;
    * ``late``: arrives 30 March 2026 at Hässleholm (deadline 2 April 16:00), decided 9 April: late;
    * ``easter``: arrives 2 April (Good Friday and Easter Monday off: deadline 9 April 16:00), decided
      9 April 10:00: in time only because the holidays are not working days;
    * ``rejected``: rejected at Hässleholm, then ``again``: the same patient re-referred and waiting;
    * ``chosen``: MMRsv, the patient cancels the offered time by choice (patient-chosen waiting);
    * ``supplement``: incomplete, on hold for the referrer from 5 March 10:00 until the supplement
      (a new version of the referral) on 9 March 10:00; ``held``: incomplete, still on hold;
    * ``asked``: no criteria in the referral: the patient is asked (the review on hold for the patient
      from 10 March 10:00) and answers on 14 March 12:00;
    * ``nobody``: its review Task's owner removed by hand: nobody is responsible.
    """
    prefix = prefix or uuid.uuid4().hex[:6]

    def day(*args: int) -> datetime:  # the clock of this set: the fixed moments, ``shift`` later
        return _day(*args) + shift

    out: list[Journey] = []

    sv = Builder("sv", prefix, day(2026, 3, 2, 8), LUND)
    sv.decide("MMRsv", day(2026, 3, 3, 14))
    aid = sv.booked_at_clinic(day(2026, 3, 10), day(2026, 4, 20, 10), LUND)
    sv.appointment_status(aid, "fulfilled", day(2026, 4, 20, 13))
    out.append(sv.journey)

    pv = Builder("pv", prefix, day(2026, 3, 2, 10), LUND)
    pv.decide("MMRpv", day(2026, 3, 4, 11))
    aid = pv.appointment(day(2026, 3, 16), day(2026, 4, 7, 9), site=HBG)
    pv.appointment_status(aid, "booked", day(2026, 3, 20), start=day(2026, 4, 14, 9))
    pv.timer(PROGRAMME_START, day(2026, 4, 14, 9))
    out.append(pv.journey)

    late = Builder("late", prefix, day(2026, 3, 30, 9), HASSLEHOLM)  # deadline 2 April 16:00
    late.decide("MMRsv", day(2026, 4, 9, 10))
    out.append(late.journey)

    easter = Builder("easter", prefix, day(2026, 4, 2, 8), HASSLEHOLM)  # 3 and 6 April off: deadline 9 April 16:00
    easter.decide("MMRsv", day(2026, 4, 9, 10))
    out.append(easter.journey)

    rejected = Builder("rejected", prefix, day(2026, 3, 2, 11), HASSLEHOLM)
    rejected.reject(day(2026, 3, 3, 9))
    out.append(rejected.journey)
    again = Builder("again", prefix, day(2026, 4, 1, 9), HASSLEHOLM, patient_id=rejected.journey.patient)
    out.append(again.journey)

    chosen = Builder("chosen", prefix, day(2026, 3, 2, 12), LUND)
    chosen.decide("MMRsv", day(2026, 3, 3, 10))
    aid = chosen.appointment(day(2026, 3, 12), day(2026, 4, 2, 10), clinic=LUND)
    chosen.appointment_status(aid, "cancelled", day(2026, 3, 25), reason="patient-chosen")
    out.append(chosen.journey)

    supplement = Builder("supplement", prefix, day(2026, 3, 5, 9), LUND, complete=False)
    supplement.change(supplement.journey.current().service_request, day(2026, 3, 9, 10), note=list(SECTIONS))
    out.append(supplement.journey)

    held = Builder("held", prefix, day(2026, 3, 16, 9), LUND, complete=False)
    out.append(held.journey)

    asked = Builder("asked", prefix, day(2026, 3, 10, 9), LUND, criteria=False)  # the patient is asked
    answer = response(MMRPV_ANSWERS, based_on=f"ServiceRequest/{asked.journey.referral}", pid=asked.journey.patient)
    asked.add(
        {**answer, "id": f"{asked.journey.key}-qr", "authored": day(2026, 3, 14, 12).isoformat()}, day(2026, 3, 14, 12)
    )
    out.append(asked.journey)

    nobody = Builder("nobody", prefix, day(2026, 3, 9, 9), LUND)
    review = nobody.journey.task("referral-review")
    nobody.change(review, day(2026, 3, 9, 15), notify=False, owner=None)
    out.append(nobody.journey)
    return out


def by_name(found: list[Journey], name: str) -> Journey:
    """The journey of that name (``sv``, ``pv``, ...) among ``found``."""
    return next(j for j in found if j.name == name)


# ---------------------------------------------------------------- on a server


def install_directory(fhir: FhirClient) -> None:
    """The directory's Organizations, PractitionerRoles and Locations, as setup installs them."""
    for resource in directory_resources():
        upsert(fhir, resource)


def write(fhir: FhirClient, journeys_: list[Journey], upto: int | None = None, start: int = 0) -> None:
    """Each journey's transactions ``[start:upto]`` on the server, in order, one FHIR transaction each
    (PUT by id), so every version is a version there too."""
    for journey in journeys_:
        for tx in journey.transactions[start:upto]:
            fhir.transaction(puts(fhir.base_url, tx.resources))


def puts(base_url: str, resources: Iterable[Resource]) -> Resource:
    """One FHIR transaction that PUTs each resource by its id (absolute fullUrls: HAPI wants them)."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"{base_url}/{r['resourceType']}/{r['id']}",
                "resource": r,
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            }
            for r in resources
        ],
    }


def record(journeys_: list[Journey]) -> tuple[list[Resource], list[Resource]]:
    """What :func:`install_directory` and :func:`write` put on a server, without one: the current
    version of every resource, and every version of every Task, each with the ``meta`` a server gives
    it (``versionId`` counted per resource in the order written, ``lastUpdated`` the journey's clock).
    The input of ``adapter.flow.store.load``, as a bulk export of the same record would be."""
    current: dict[str, Resource] = {f"{r['resourceType']}/{r['id']}": r for r in _directory()}
    tasks: list[Resource] = []
    for journey in journeys_:
        for tx in journey.transactions:
            for r in tx.resources:
                key = f"{r['resourceType']}/{r['id']}"
                previous = _version(current.get(key)) if key in current else 0
                version = {
                    **copy.deepcopy(r),
                    "meta": {"versionId": str(previous + 1), "lastUpdated": tx.at.isoformat()},
                }
                current[key] = version
                if r["resourceType"] == "Task":
                    tasks.append(version)
    return list(current.values()), tasks


def _version(resource: Resource | None) -> int:
    return int(((resource or {}).get("meta") or {}).get("versionId") or "0")


# ---------------------------------------------------------------- helpers


def _directory() -> list[Resource]:
    """The directory as the loaded state shows it (setup's resources, at version 1)."""
    return [{**r, "meta": {"versionId": "1"}} for r in directory_resources()]


def _stored(resource: Resource) -> Resource:
    """A version as it is PUT: without the in-memory server's meta."""
    return {k: copy.deepcopy(v) for k, v in resource.items() if k != "meta"}


def _event(resource: Resource) -> Event:
    return Event("changed", resource["resourceType"], resource["id"], (resource.get("meta") or {}).get("versionId"))


__all__ = [
    "Builder",
    "Journey",
    "Transaction",
    "by_name",
    "clinician",
    "day",
    "install_directory",
    "journeys",
    "puts",
    "record",
    "write",
]
