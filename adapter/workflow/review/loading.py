"""What the review steps need loaded, as R4 searches the shell runs (``adapter.workflow.load``).

Phase one is the shell's referral search; it already brings every Task and Communication of the
review (``_revinclude=Task:focus``: the review, questionnaire, booking and intake Tasks all have
the ServiceRequest as focus; ``_revinclude=Communication:based-on``: every message the adapter
sends is basedOn it), the patient's Consents (:data:`REVINCLUDES`, from the included Patient) and,
where the server revincludes them, the answers basedOn the referral or its questionnaire Task.
Phase two, one batch, is :func:`follow_up_queries`: only what phase one could not bring. Phase
three, only under an active Consent, is :func:`record_queries`: the patient's record the referral
points at.

R4 has no search parameter for ``Communication.inResponseTo``: a referrer's reply that is not
``basedOn`` the ServiceRequest is found only as the event's own resource, so the shell adds it
(``event_query``); the completeness step then records it on the review Task, and later events
need not load it again.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from adapter.fhir.resource import Resource
from adapter.mappings import codes
from adapter.workflow.core import Event, Referral
from adapter.workflow.referral import as_list, dig, local, performer_clinic
from adapter.workflow.review.sources import consent_covers, questionnaire_canonical
from adapter.workflow.tasks import OPEN, is_open, questionnaire_task, review_task

EVENT_TYPES = ("Communication", "QuestionnaireResponse")
REVINCLUDES = ("_revinclude:iterate=Consent:patient",)  # every Consent of the patient; the rule keeps the active


def _subject(service_request: Resource) -> str | None:
    subject = local(dig(service_request, "subject", "reference"))
    return subject if subject and subject.startswith("Patient/") else None


def consent_queries(service_request: Resource, loaded: Mapping[str, Resource]) -> list[str]:
    """Consents the referral points at that phase one did not bring (another patient's, say)."""
    ids = [
        t.split("/", 1)[1]
        for info in as_list(service_request.get("supportingInfo"))
        if (t := local(dig(info, "reference"))) and t.startswith("Consent/") and t not in loaded
    ]
    return ["Consent?_id=" + ",".join(sorted(set(ids)))] if ids else []


def response_query(referral: Referral, answers_loaded: bool) -> list[str]:
    """The patient's answers to our intake questionnaire (the steps keep those of this referral).

    Where phase one brought the answers basedOn the referral or its questionnaire Task, only those
    linked to the Task by its output alone are still to be read, and only when it has such a link.
    """
    if answers_loaded:
        linked = [
            t.split("/", 1)[1]
            for out in as_list((questionnaire_task(referral) or {}).get("output"))
            if (t := local(dig(out, "valueReference", "reference")))
            and t.startswith("QuestionnaireResponse/")
            and t not in referral.resources
        ]
        return ["QuestionnaireResponse?_id=" + ",".join(sorted(set(linked)))] if linked else []
    subject = _subject(referral.service_request)
    return [answers_query(subject)] if subject else []


def answers_query(patient: str) -> str:
    """The search for a patient's answers to our intake questionnaire (``Patient/<id>``)."""
    return f"QuestionnaireResponse?subject={patient}&questionnaire={questionnaire_canonical().split('|')[0]}"


def workload_query(referral: Referral, assignment: str) -> list[str]:
    """Open review Tasks of the clinic's reviewers, for ``least-open``; only while none is assigned."""
    clinic = performer_clinic(referral)
    if assignment != "least-open" or clinic is None or not clinic.reviewers or review_task(referral):
        return []
    owners = ",".join(f"PractitionerRole/{r.hsa_id}" for r in clinic.reviewers)
    statuses = ",".join(sorted(OPEN))
    return [
        f"Task?code={codes().system('task-type')}|referral-review&owner={owners}&status={statuses}"
        f"&_elements=code,status,owner,focus&_count=1000"
    ]


def event_query(event: Event | None, loaded: Mapping[str, Resource]) -> list[str]:
    """The event's own Communication or QuestionnaireResponse, if phase one did not bring it."""
    if event is None or event.kind != "changed" or event.resource_type not in EVENT_TYPES:
        return []
    if f"{event.resource_type}/{event.resource_id}" in loaded:
        return []
    return [f"{event.resource_type}?_id={event.resource_id}"]


def follow_up_queries(
    service_request: Resource,
    loaded: Mapping[str, Resource],
    event: Event | None = None,
    options: Mapping[str, Any] | None = None,
    answers_loaded: bool = False,
) -> list[str]:
    """Phase two of the load, one batch: everything the review steps read beyond phase one, while the
    review runs; once it is closed, only the event's own resource (a follow-up answer, say).
    ``answers_loaded``: phase one brought the answers basedOn the referral and its Tasks."""
    referral = Referral(service_request, loaded)
    review = review_task(referral)
    if review is not None and not is_open(review):  # the review is over: its sources are no longer read
        return event_query(event, loaded)
    assignment = str((options or {}).get("assignment") or "round-robin")
    return [
        *consent_queries(service_request, loaded),
        *response_query(referral, answers_loaded),
        *workload_query(referral, assignment),
        *event_query(event, loaded),
    ]


def record_queries(referral: Referral, now: datetime) -> list[str]:
    """Phase three, only under an active Consent covering the clinic: the Conditions the referral gives
    as its reason. Without Consent nothing of the patient's record is read."""
    if not consent_covers(referral, performer_clinic(referral), now):
        return []
    ids = [
        t.split("/", 1)[1]
        for reason in as_list(referral.service_request.get("reasonReference"))
        if (t := local(dig(reason, "reference"))) and t.startswith("Condition/") and t not in referral.resources
    ]
    return ["Condition?_id=" + ",".join(sorted(set(ids)))] if ids else []
