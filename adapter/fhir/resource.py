"""A FHIR resource as the adapter holds it (parsed JSON), and the few element and reference helpers
every layer needs: written once here, knowing nothing of MMR.

Resources stay plain dicts: the adapter reads what other systems wrote and must tolerate what a
model class would refuse, so these helpers never raise on a missing or odd element.
"""

from __future__ import annotations

from typing import Any

Resource = dict[str, Any]


def ref(resource: Resource) -> str:
    """``Type/id`` of a resource."""
    return f"{resource['resourceType']}/{resource['id']}"


def version(resource: Resource) -> str | None:
    """The ``meta.versionId`` the server gave the resource, if any."""
    return (resource.get("meta") or {}).get("versionId")


def identifier_value(resource: Resource, system: str) -> str | None:
    """The value of the resource's identifier in ``system``, if it has one."""
    return next((i.get("value") for i in resource.get("identifier") or () if i.get("system") == system), None)


def local_reference(reference: str) -> str | None:
    """``Type/id`` of a literal reference: relative (``Patient/1``), absolute
    (``https://server/fhir/Patient/1``) or versioned (``Patient/1/_history/2``).

    ``None`` for what names no ``Type/id``: a contained (``#...``) or ``urn:`` reference, a single
    segment. Only the last two segments are read; the type is not checked.
    """
    if reference.startswith(("#", "urn:")):
        return None
    parts = reference.split("/_history/")[0].rstrip("/").split("/")
    return "/".join(parts[-2:]) if len(parts) >= 2 else None
