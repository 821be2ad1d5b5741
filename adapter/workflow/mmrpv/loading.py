"""What the MMRpv steps need loaded, as R4 searches the shell runs (``adapter.workflow.load``).

Phase one (the referral's search) brings what the unit writes, by its link to the ServiceRequest:
``_revinclude=Appointment:based-on``, ``CarePlan:based-on`` and ``DocumentReference:related``
(the discharge summary's ``context.related``); the intake, booking and follow-up Tasks come with
``Task:focus``. Phase two adds what only exists once the referral reached the unit, found by our
business identifiers (R4's ``EpisodeOfCare:incoming-referral`` is not supported everywhere, an
identifier search is): the care commitment and the PAL meeting offer.

The patient's follow-up answer is found as the event's own QuestionnaireResponse (the review's
``event_query``); once linked as the follow-up Task's output it is not needed again.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from adapter.mappings import codes
from adapter.workflow.core import Referral, Resource
from adapter.workflow.mmrpv.common import COMMUNICATION_REQUEST, EPISODE, intake_task, key

REVINCLUDES = (
    "_revinclude=Appointment:based-on",
    "_revinclude=CarePlan:based-on",
    "_revinclude=DocumentReference:related",
)


def follow_up_queries(service_request: Resource, loaded: Mapping[str, Resource]) -> list[str]:
    """Phase two: the care commitment and the PAL offer, once the unit has the referral."""
    referral = Referral(service_request, loaded)
    if intake_task(referral) is None:
        return []
    out = []
    for rtype, kind, suffix in (("EpisodeOfCare", EPISODE, "care-commitment"),
                                ("CommunicationRequest", COMMUNICATION_REQUEST, "pal-meeting")):
        token = quote(f"{codes().identifier_system(kind)}|{key(referral)}-{suffix}", safe=":/|")
        out.append(f"{rtype}?identifier={token}")
    return out
