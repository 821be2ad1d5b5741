"""Which referral an event belongs to. Pure: each resource says where to look next.

The shell follows the links (reading what it must) until it reaches a ServiceRequest, so that a
Task, a reply to a supplement request or a patient's QuestionnaireResponse all end up under the
lock and in the state of their referral.
"""

from __future__ import annotations

from typing import Any

from adapter.fhir.resource import Resource, local_reference


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value] if value is not None else []


def _refs(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value] if value else []
    return [i["reference"] for i in items if isinstance(i, dict) and isinstance(i.get("reference"), str)]


# Where each resource type points on its way to the referral, in order of preference.
LINKS: dict[str, tuple[str, ...]] = {
    "Task": ("focus", "basedOn", "partOf"),
    "Communication": ("basedOn", "about", "inResponseTo", "partOf"),
    "CommunicationRequest": ("basedOn", "about"),
    "QuestionnaireResponse": ("basedOn", "partOf"),
    "Appointment": ("basedOn",),
    "CarePlan": ("activity.reference",),
    "EpisodeOfCare": ("referralRequest",),
    "DocumentReference": ("context.related",),
    "Flag": ("extension",),
}


def next_hops(resource: Resource) -> list[str]:
    """References (``Type/id``) that lead from this resource towards its ServiceRequest."""
    if resource.get("resourceType") == "ServiceRequest":
        return [f"ServiceRequest/{resource.get('id')}"] if resource.get("id") else []
    out: list[str] = []
    for element in LINKS.get(resource.get("resourceType", ""), ()):
        values: list[Any] = [resource]
        for part in element.split("."):  # through lists too: CarePlan.activity[].reference
            values = [v for x in values if isinstance(x, dict) for v in _as_list(x.get(part))]
        for reference in _refs(values):
            local = local_reference(reference)
            if local and local not in out:
                out.append(local)
    # A ServiceRequest among them wins: no need to read anything else.
    out.sort(key=lambda r: not r.startswith("ServiceRequest/"))
    return out
