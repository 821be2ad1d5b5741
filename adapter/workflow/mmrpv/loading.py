"""What the MMRpv steps need loaded, as R4 searches the shell runs (``adapter.workflow.load``).

Phase one (the referral's search) brings what the unit writes, by its link to the ServiceRequest:
``_revinclude=Appointment:based-on`` and ``DocumentReference:related`` (the discharge summary's
``context.related``); the intake, booking and follow-up Tasks come with ``Task:focus``, and the
intake Task links the care commitment. The programme CarePlan links the referral from an
activity (R4's ``CarePlan.basedOn`` points only at CarePlans), and ``activity-reference`` is not
a search every server has, so it comes as one of the patient's CarePlans
(``_revinclude:iterate=CarePlan:subject``, from the included Patient); the steps keep the one
that references the referral. Phase two reads the EpisodeOfCare
itself by our business identifier (R4's ``EpisodeOfCare:incoming-referral`` is not supported
everywhere, an identifier search is), and only when the steps need its current version. The PAL
meeting offer is never read back: the discharge summary sent with it says it exists.

The patient's follow-up answer is found as the event's own QuestionnaireResponse (the review's
``event_query``); once linked as the follow-up Task's output it is not needed again.
"""

from __future__ import annotations

from collections.abc import Mapping

from adapter.fhir.resource import Resource
from adapter.fhir.search import identifier_criteria
from adapter.mappings import codes
from adapter.workflow.core import Referral
from adapter.workflow.mmrpv.common import (
    COMMUNICATION_REQUEST,
    EPISODE,
    care_commitment,
    care_ended,
    intake_task,
    key,
)
from adapter.workflow.referral import referral_key

REVINCLUDES = (
    "_revinclude=Appointment:based-on",
    "_revinclude:iterate=CarePlan:subject",
    "_revinclude=DocumentReference:related",
)


def _by_identifier(rtype: str, kind: str, value: str) -> str:
    return f"{rtype}?{identifier_criteria(codes().identifier_system(kind), value)}"


def follow_up_queries(service_request: Resource, loaded: Mapping[str, Resource]) -> list[str]:
    """Phase two: the care commitment, only when ``episode.end_episode`` may need it.

    That is once the care is over (``care_ended``), or while the intake Task does not link one (a
    commitment made elsewhere is then found rather than made twice). Otherwise the intake Task's
    link is all the steps need, and the event costs the one search and the transaction.
    """
    referral = Referral(service_request, loaded)
    if intake_task(referral) is None or (care_commitment(referral) and not care_ended(referral)):
        return []
    return [_by_identifier("EpisodeOfCare", EPISODE, f"{key(referral)}-care-commitment")]


def journey_queries(service_request: Resource) -> list[str]:
    """What ``mmr-adapter status`` adds to the referral's search: the care commitment and the PAL offer."""
    k = referral_key(service_request)
    return [
        _by_identifier("EpisodeOfCare", EPISODE, f"{k}-care-commitment"),
        _by_identifier("CommunicationRequest", COMMUNICATION_REQUEST, f"{k}-pal-meeting"),
    ]
