"""Install the conformance package on a FHIR server, idempotently.

Canonical resources go in by conditional update on ``url`` and ``version`` (``PUT Type?url=..&
version=..``), falling back to ``PUT Type/id`` where the server refuses conditional update on a
type; topics (``Basic``) by ``PUT Basic/id``. Each resource is read first, so a re-run that would
change nothing writes nothing and reports ``unchanged``. Examples are never installed.
"""

from __future__ import annotations

from typing import Protocol
from urllib.parse import urlencode

from adapter.conformance.package import Package, is_topic, package
from adapter.fhir.client import FhirError
from adapter.fhir.resource import Resource

INSTALL_ORDER = ("CodeSystem", "ValueSet", "ConceptMap", "StructureDefinition", "Questionnaire", "Measure", "Basic")
NO_CONDITIONAL_UPDATE = frozenset({400, 405, 501})  # how servers say "not on this type"
SERVER_MANAGED = ("id", "meta", "text")


class Client(Protocol):
    def conditional_update(self, resource: dict, criteria: str) -> dict: ...
    def update(self, resource: dict, if_match: str | None = None) -> dict: ...
    def search(self, resource_type: str, params: dict) -> list[dict]: ...


def _content(resource: Resource) -> Resource:
    return {k: v for k, v in resource.items() if k not in SERVER_MANAGED}


def _search(client: Client, resource_type: str, attempts: list[dict[str, str]]) -> list[Resource]:
    """The first search the server accepts; a server that rejects a parameter gets the next one."""
    last: FhirError | None = None
    for params in attempts:
        try:
            return client.search(resource_type, params)
        except FhirError as exc:
            if exc.status != 400:
                raise
            last = exc
    raise last or FhirError(400, f"no usable search for {resource_type}")


def _existing(client: Client, resource: Resource) -> Resource | None:
    rt, url, version = resource["resourceType"], resource.get("url"), resource.get("version")
    if url:
        attempts = [{"url": url, "version": version}, {"url": url}, {"_id": resource["id"]}]
        found = [r for r in _search(client, rt, attempts) if r.get("url") == url and r.get("version") == version]
    else:
        found = [r for r in client.search(rt, {"_id": resource["id"]}) if r.get("id") == resource["id"]]
    found = [r for r in found if r.get("resourceType") == rt]
    if len(found) > 1:
        raise FhirError(412, f"{len(found)} {rt} resources match {url}|{version}: remove the duplicates first")
    return found[0] if found else None


def _write(client: Client, body: Resource) -> Resource:
    if is_topic(body) or not body.get("url"):
        return client.update(body)
    criteria = urlencode({"url": body["url"], "version": body["version"]})
    try:
        return client.conditional_update(body, criteria)
    except FhirError as exc:
        if exc.status not in NO_CONDITIONAL_UPDATE:
            raise
        return client.update(body)


def install_resource(client: Client, resource: Resource) -> tuple[str, str]:
    """Install one resource; (``Type/id``, ``created`` | ``updated`` | ``unchanged``)."""
    existing = _existing(client, resource)
    rt = resource["resourceType"]
    if existing is not None and _content(existing) == _content(resource):
        return f"{rt}/{existing['id']}", "unchanged"
    # The stored id wins on an update; on a create our id makes it an update-as-create.
    body = {**resource, "id": existing["id"] if existing is not None else resource["id"]}
    reply = _write(client, body) or {}
    return f"{rt}/{reply.get('id') or body['id']}", "updated" if existing is not None else "created"


def conformance_resources(pkg: Package) -> list[Resource]:
    """What gets installed, in dependency order: terminology first, topics last."""
    wanted = [r for r in pkg.resources if r.get("resourceType") in INSTALL_ORDER and (r.get("url") or is_topic(r))]
    return sorted(wanted, key=lambda r: INSTALL_ORDER.index(r["resourceType"]))


def install_package(client: Client, pkg: Package | None = None) -> list[tuple[str, str]]:
    """Install every conformance resource and topic of ``profiles/``; one (reference, outcome) each."""
    return [install_resource(client, r) for r in conformance_resources(pkg or package())]
