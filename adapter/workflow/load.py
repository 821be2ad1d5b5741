"""What the shell loads for a referral before the steps run: FHIR searches, as data.

Phase one is one search with includes (on a server that cannot include the patient's answers, sent
in one batch with the answers' search, guessed from the event: :func:`guessed_queries`). Phase two
(what phase one makes possible, such as the patient's active Consent) runs as one batch. Phase
three, only under an active Consent covering the clinic, reads the parts of the patient's record
the referral points at. Each part of the routine says what it needs in its own ``loading`` module;
this one only gathers them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from adapter.fhir.resource import Resource
from adapter.workflow.core import Event, Referral
from adapter.workflow.mmrpv import loading as mmrpv
from adapter.workflow.referral import dig
from adapter.workflow.review import loading as review
from adapter.workflow.tasks import REVIEW_EVENTS

REFERRAL_INCLUDES = (
    "_include=ServiceRequest:subject",
    "_include=ServiceRequest:requester",
    "_include=ServiceRequest:performer",
    "_revinclude=Task:focus",
    "_revinclude=Communication:based-on",
    *review.REVINCLUDES,
    *mmrpv.REVINCLUDES,
)
ANSWERS = "QuestionnaireResponse:based-on"
PATIENT = re.compile(r"Patient/[A-Za-z0-9\-.]{1,64}")  # a literal reference to a Patient, nothing else


@dataclass(frozen=True)
class ServerSearch:
    """What the server's search does beyond what every server here does, from its CapabilityStatement.

    ``answers``: it revincludes QuestionnaireResponses by ``based-on`` (HAPI does, the sandbox does
    not), so phase one brings the patient's answers and phase two need not search for them.
    """

    answers: bool = False

    @classmethod
    def of(cls, capability: Mapping[str, Any]) -> ServerSearch:
        declared = {
            str(spec)
            for rest in capability.get("rest") or ()
            if isinstance(rest, dict)
            for resource in rest.get("resource") or ()
            if isinstance(resource, dict) and resource.get("type") == "ServiceRequest"
            for spec in resource.get("searchRevInclude") or ()
        }
        return cls(answers=ANSWERS in declared)


def referral_query(referral_id: str, server: ServerSearch = ServerSearch()) -> str:
    """The referral's one search. Sent as HAPI stores searches by default, never ``Cache-Control:
    no-store``: HAPI answers that synchronously, loading ``_revinclude`` before ``_include``, so the
    Consents and CarePlans reached through the included Patient would be missing (HAPI 8.2;
    ``tests/test_fhir_client.py``)."""
    answers = (f"_revinclude:iterate={ANSWERS}",) if server.answers else ()  # basedOn the referral or its Tasks
    return f"ServiceRequest?_id={referral_id}&" + "&".join((*REFERRAL_INCLUDES, *answers))


def guessed_queries(event: Event | None, server: ServerSearch = ServerSearch()) -> list[str]:
    """Phase-two searches worth sending with phase one, in one batch, on the event's word alone: on a
    server that cannot revinclude the answers, the answers' search for the patient the event's resource
    names. A guess: the shell uses its answer only if phase two, planned from the referral as read,
    asks for exactly that search (so a wrong or forged patient costs a round trip, never a wrong state).
    Only for the resource types the review handles; once the review is over the guess goes unused: one
    more search in the same request, where a second request would have been the price during the review."""
    if server.answers or event is None or event.resource is None or event.resource_type not in REVIEW_EVENTS:
        return []
    patient = next(
        (
            ref
            for element in ("subject", "for")
            if isinstance(ref := dig(event.resource, element, "reference"), str) and PATIENT.fullmatch(ref)
        ),
        None,
    )
    return [review.answers_query(patient)] if patient else []


def follow_up_queries(
    service_request: Resource,
    loaded: Mapping[str, Resource],
    event: Event | None = None,
    options: Mapping[str, Any] | None = None,
    server: ServerSearch = ServerSearch(),
) -> list[str]:
    """Phase two: searches that depend on what phase one found, run as one batch."""
    return [
        *review.follow_up_queries(service_request, loaded, event, options, answers_loaded=server.answers),
        *mmrpv.follow_up_queries(service_request, loaded),
    ]


def record_queries(referral: Referral, now: datetime) -> list[str]:
    """Phase three: the patient's record the referral points at, only under an active Consent."""
    return review.record_queries(referral, now)
