"""Package metadata and small builders shared by every source module."""

from __future__ import annotations

from typing import Any

from adapter.fhir.resource import Resource
from adapter.mappings import codes

PACKAGE_NAME = "se.mmr-adapter.fhir"
VERSION = "0.1.0"
DATE = "2026-11-23"
FHIR_VERSION = "4.0.1"
PUBLISHER = "MMR adapter project"
JURISDICTION = [{"coding": [{"system": "urn:iso:std:iso:3166", "code": "SE", "display": "Sweden"}]}]

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
HSA = "urn:oid:1.2.752.29.4.19"
SDC_TEMP = "http://hl7.org/fhir/uv/sdc/CodeSystem/temp"
CORE_SD = "http://hl7.org/fhir/StructureDefinition"


def base() -> str:
    """The canonical base, from mappings/codes.yaml."""
    return codes().base


def url(resource_type: str, id_: str) -> str:
    return f"{base()}/{resource_type}/{id_}"


def cs_id(key: str) -> str:
    """The id of one of our CodeSystems (``task-type`` -> ``mmr-task-type``): the last URL segment."""
    return codes().system(key).rstrip("/").rsplit("/", 1)[-1]


def vs_url(key: str) -> str:
    """Our ValueSet of all codes of one code system; it shares the CodeSystem's id."""
    return url("ValueSet", cs_id(key))


def coding(key: str, code: str) -> dict[str, str]:
    """A Coding of one of our concepts, with the Swedish display."""
    return codes().coding(key, code)


def system_code(key: str, code: str) -> dict[str, Any]:
    """A CodeableConcept pattern: system and code only, so any display matches."""
    return {"coding": [{"system": codes().system(key), "code": code}]}


def identifier_system(kind: str) -> str:
    return codes().identifier_system(kind)


def identifier_prefix() -> str:
    """What every adapter business-identifier system starts with: ``<base>/identifier/``."""
    return identifier_system("x")[:-1]


def metadata(
    resource_type: str, id_: str, name: str, title: str, description: str, purpose: str | None = None
) -> Resource:
    """The canonical-resource header every conformance resource carries, in FHIR element order."""
    head: Resource = {
        "resourceType": resource_type,
        "id": id_,
        "url": url(resource_type, id_),
        "version": VERSION,
        "name": name,
        "title": title,
        "status": "active",
        "experimental": False,
        "date": DATE,
        "publisher": PUBLISHER,
        "description": description,
        "jurisdiction": JURISDICTION,
    }
    if purpose:
        head["purpose"] = purpose
    return head


def pascal(text: str) -> str:
    """A computable name: ``mmr-task-type`` -> ``MmrTaskType``."""
    return "".join(part[:1].upper() + part[1:] for part in text.replace("_", "-").split("-"))
