"""What the MMRpv steps share: data, our identifiers, and the referral's MMRpv resources as loaded.

Every resource the adapter makes here is found again by its business identifier (stored or
planned earlier in the same ``decide``), never by a guess; what the unit writes (Appointment,
CarePlan progress, DocumentReference) is found through its link to the ServiceRequest (a CarePlan's
link is an activity that references it: R4's ``CarePlan.basedOn`` points only at CarePlans).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from adapter.fhir.resource import Resource
from adapter.mappings import HSA_SYSTEM, Unit, codes, directory, load
from adapter.workflow.calendar import STOCKHOLM, local, parse_moment
from adapter.workflow.core import Context, Event, Referral, per_state
from adapter.workflow.options import language
from adapter.workflow.referral import has_code, points_to, referral_key, unit_reference
from adapter.workflow.referral import local as local_ref
from adapter.workflow.tasks import find_own, is_open, key_of, parameters

# Identifier kinds, as the published package names them (profiles/README.md, "Business identifiers").
TASK, EPISODE, CAREPLAN = "task", "episodeofcare", "careplan"
COMMUNICATION, COMMUNICATION_REQUEST = "communication", "communicationrequest"

# The events after which the MMRpv steps compare the state with the routine (level-triggered).
EVENTS = (
    "ServiceRequest",
    "Task",
    "deleted:Task",
    "Appointment",
    "deleted:Appointment",
    "CarePlan",
    "DocumentReference",
    "QuestionnaireResponse",
    "EpisodeOfCare",
)

BOOKING_REMINDER = "mmrpv-booking-reminder"
PROGRAMME_START = "mmrpv-programme-start"
DISCHARGE_REMINDER = "mmrpv-discharge-reminder"
FOLLOW_UP_DUE = "mmrpv-follow-up-due"
FOLLOW_UP_REMINDER = "mmrpv-follow-up-reminder"
TIMERS = (BOOKING_REMINDER, PROGRAMME_START, DISCHARGE_REMINDER, FOLLOW_UP_DUE, FOLLOW_UP_REMINDER)


def fired(event: Event, timer: str) -> bool:
    """The event is ``timer`` coming due. Reminders are chased on their own timer only, so that other
    events (and their replays) neither send nor re-arm them."""
    return event.kind == "timer" and event.timer == timer


# What the lookups below read, besides the ServiceRequest (its key and reference): a state keeps
# their answers while its plans write none of these.
TASKS, EPISODES, CAREPLANS = (frozenset({"ServiceRequest", t}) for t in ("Task", "EpisodeOfCare", "CarePlan"))

BOOKED = frozenset({"booked", "arrived", "checked-in", "fulfilled"})
CLOSED = frozenset({"cancelled", "rejected", "failed", "entered-in-error", "completed"})
ENDED_REFERRAL = frozenset({"revoked", "entered-in-error"})


# ---------------------------------------------------------------- data


def data() -> dict[str, Any]:
    return load("mmrpv")


def text(entry: dict[str, Any], ctx: Context) -> str:
    """One ``{sv, en}`` text in the message language."""
    return str(entry.get(language(ctx)) or entry["sv"])


# ---------------------------------------------------------------- time


def stamp(moment: datetime) -> str:
    """A moment as a compact UTC token for identifiers (no ``+`` or ``:`` to escape in If-None-Exist)."""
    return local(moment).astimezone(UTC).strftime("%Y%m%dT%H%MZ")


# ---------------------------------------------------------------- references


def unit_ref() -> dict[str, Any]:
    return unit_reference(directory().mmrpv, "Organization")


def admin_ref() -> dict[str, Any]:
    return unit_reference(directory().mmrpv_admin, "Organization")


def site_ref(site: Unit) -> dict[str, Any]:
    return unit_reference(site, "Location")


@per_state(frozenset({"ServiceRequest"}))
def key(referral: Referral) -> str:
    return referral_key(referral.service_request)


def live(referral: Referral) -> bool:
    """The referral still stands (the referrer may have completed it; not revoked or in error)."""
    return referral.service_request.get("status") not in ENDED_REFERRAL


def active(referral: Referral) -> bool:
    return referral.service_request.get("status") == "active"


# ---------------------------------------------------------------- our resources


@per_state(TASKS)
def intake_task(referral: Referral) -> Resource | None:
    """The ``mmrpv-intake`` Task forwarding made (``<key>-mmrpv-intake``), else one focused on the referral."""
    if found := find_own(referral, TASK, f"{key(referral)}-mmrpv-intake"):
        return found
    return _coded_task(referral, "mmrpv-intake")


def _coded_task(referral: Referral, code: str) -> Resource | None:
    system = codes().system("task-type")
    return next(
        (
            t
            for t in referral.all("Task")
            if has_code(t.get("code"), system, code) and points_to(t.get("focus"), referral.reference)
        ),
        None,
    )


def intake_open(intake: Resource | None) -> bool:
    """The MMRpv unit has the referral: the intake Task exists and was not cancelled, rejected or failed."""
    return intake is not None and intake.get("status") not in CLOSED - {"completed"}


@per_state(EPISODES)
def episode(referral: Referral) -> Resource | None:
    if found := find_own(referral, EPISODE, f"{key(referral)}-care-commitment"):
        return found
    return next(
        (e for e in referral.all("EpisodeOfCare") if points_to(e.get("referralRequest"), referral.reference)), None
    )


def care_commitment(referral: Referral) -> str | None:
    """Where the care commitment is (``EpisodeOfCare/<id>``, or its ``urn:uuid`` in this transaction).

    The intake Task's ``care-commitment`` output says it exists, so the shell need not load the
    EpisodeOfCare on every event: it does only when the care may have ended (``loading``), which
    is when ``episode.end_episode`` needs its current version.
    """
    if found := episode(referral):
        return key_of(referral, found)
    links = parameters(intake_task(referral) or {}, "output", "care-commitment")
    return next((r for p in links if (r := (p.get("valueReference") or {}).get("reference"))), None)


def care_ended(referral: Referral) -> str | None:
    """``finished`` or ``cancelled`` once the care is over, by what phase one loads; ``None`` while it runs."""
    if referral.service_request.get("status") in ENDED_REFERRAL:
        return "cancelled"
    intake = intake_task(referral)
    if intake is not None and intake.get("status") in ("rejected", "cancelled", "entered-in-error"):
        return "cancelled"
    plan = programme(referral)
    if plan is not None and plan.get("status") in ("revoked", "entered-in-error"):
        return "cancelled"
    follow_up = follow_up_task(referral)
    if follow_up is not None and follow_up.get("status") in ("completed", "failed"):
        return "finished"
    return None


def booking_key(referral: Referral, round_: int) -> str:
    return f"{key(referral)}-booking-mmrpv-{round_}"


@per_state(TASKS)
def booking_tasks(referral: Referral) -> tuple[Resource, ...]:
    """Our booking rounds, in order: ``<key>-booking-mmrpv-1``, ``-2``, ..."""
    out: list[Resource] = []
    while found := find_own(referral, TASK, booking_key(referral, len(out) + 1)):
        out.append(found)
    return tuple(out)


def open_booking_task(referral: Referral) -> Resource | None:
    return next((t for t in reversed(booking_tasks(referral)) if is_open(t)), None)


def carries_out(plan: Resource, referral_reference: str) -> bool:
    """A CarePlan's activity references the referral: R4's link from a plan to its ServiceRequest."""
    activity = plan.get("activity")
    activities = activity if isinstance(activity, list) else []
    return any(isinstance(a, dict) and points_to(a.get("reference"), referral_reference) for a in activities)


@per_state(CAREPLANS)
def programme(referral: Referral) -> Resource | None:
    if found := find_own(referral, CAREPLAN, f"{key(referral)}-programme"):
        return found
    system = codes().system("service")
    return next(
        (
            c
            for c in referral.all("CarePlan")
            if carries_out(c, referral.reference) and has_code(c.get("category"), system, "mmr")
        ),
        None,
    )


@per_state(TASKS)
def follow_up_task(referral: Referral) -> Resource | None:
    return find_own(referral, TASK, f"{key(referral)}-follow-up")


def programme_end(plan: Resource, ctx: Context) -> datetime:
    """When the programme ended: ``period.end``, else when the CarePlan was last updated, else now."""
    for value in (((plan.get("period") or {}).get("end")), (plan.get("meta") or {}).get("lastUpdated")):
        if moment := parse_moment(value):
            return moment
    return local(ctx.now)


# ---------------------------------------------------------------- the booking


@dataclass(frozen=True)
class Booking:
    """The Appointment that books the patient at a site: the earliest valid one, basedOn the referral."""

    appointment: Resource
    site: Unit
    start: datetime

    @property
    def reference(self) -> str:
        return f"Appointment/{self.appointment['id']}"


def appointment_site(appointment: Resource) -> Unit | None:
    """The MMRpv site among the participants: ``Location/<HSA-id>`` or a Location identified by HSA-id."""
    d = directory()
    for participant in appointment.get("participant") or ():
        actor = (participant or {}).get("actor") or {}
        target = local_ref(actor.get("reference")) or ""
        ident = actor.get("identifier") or {}
        hsa = (
            target.split("/", 1)[1]
            if target.startswith("Location/")
            else ident.get("value")
            if ident.get("system") == HSA_SYSTEM
            else None
        )
        if site := d.site_by_hsa(hsa):
            return site
    return None


def has_patient(appointment: Resource, referral: Referral) -> bool:
    """A participant is the referral's patient (same literal reference, or same identifier)."""
    subject = referral.service_request.get("subject") or {}
    wanted_ref, wanted_id = local_ref(subject.get("reference")), subject.get("identifier")
    for participant in appointment.get("participant") or ():
        actor = (participant or {}).get("actor") or {}
        if wanted_ref and local_ref(actor.get("reference")) == wanted_ref:
            return True
        if wanted_id and actor.get("identifier") == wanted_id:
            return True
    return False


def booking_problem(referral: Referral, appointment: Resource) -> str | None:
    """Why an Appointment the unit booked for the referral (status booked or later, ``basedOn`` it) is
    no booking the routine can read, or ``None``: a key of ``refused.booking-*`` in
    confirmations.yaml. Appointments not booked for this referral (another's, cancelled) have none."""
    if appointment.get("status") not in BOOKED or not points_to(appointment.get("basedOn"), referral.reference):
        return None
    if appointment_site(appointment) is None:
        return "booking-not-a-site"
    if not has_patient(appointment, referral):
        return "booking-no-patient"
    if parse_moment(appointment.get("start")) is None:
        return "booking-no-start"
    return None


def booking(referral: Referral) -> Booking | None:
    """The booking that stands: booked (or later) for the referral, at a site, with the patient, with a
    start (:func:`booking_problem` finds none); the earliest."""
    found = []
    for appointment in referral.all("Appointment"):
        booked = appointment.get("status") in BOOKED and points_to(appointment.get("basedOn"), referral.reference)
        if booked and appointment.get("id") and booking_problem(referral, appointment) is None:
            site, start = appointment_site(appointment), parse_moment(appointment.get("start"))
            assert site is not None and start is not None  # booking_problem checked both
            found.append(Booking(appointment, site, start))
    return min(found, key=lambda b: (b.start, b.appointment["id"])) if found else None


# ---------------------------------------------------------------- the unit's documents and answers


def discharge_summary(referral: Referral) -> Resource | None:
    """The unit's discharge summary: a current DocumentReference related to the referral, typed as a
    discharge summary or consult note (``discharge_summary.codes``) or authored by the unit or a site."""
    wanted = [(c["system"], str(c["code"])) for c in data()["discharge_summary"]["codes"]]
    d = directory()
    ours = {d.mmrpv.hsa_id, d.mmrpv_admin.hsa_id, *(s.hsa_id for s in d.sites)}
    found = []
    for doc in referral.all("DocumentReference"):
        if doc.get("status") != "current" or not points_to(
            (doc.get("context") or {}).get("related"), referral.reference
        ):
            continue
        typed = any(has_code(doc.get(e), s, c) for e in ("type", "category") for s, c in wanted)
        authors = [*(doc.get("author") or ()), doc.get("custodian") or {}]
        by_unit = any(
            (local_ref((a or {}).get("reference")) or "").split("/")[-1] in ours
            or ((a or {}).get("identifier") or {}).get("value") in ours
            for a in authors
        )
        if typed or by_unit:
            found.append(doc)
    return min(found, key=lambda r: (str(r.get("date") or ""), r["id"])) if found else None


def follow_up_canonical() -> str:
    """The follow-up's own form by default: the first configured for the moment (questionnaires.yaml)."""
    return str(load("questionnaires")["moments"]["follow-up"][0])


def add_months(moment: datetime, months: int) -> datetime:
    """The same local day and time ``months`` later (the 31st becomes the month's last day)."""
    start = local(moment)
    index = start.month - 1 + months
    year, month = start.year + index // 12, index % 12 + 1
    last = (date(year + month // 12, month % 12 + 1, 1) - date.resolution).day
    return datetime.combine(date(year, month, min(start.day, last)), start.time(), tzinfo=STOCKHOLM)
