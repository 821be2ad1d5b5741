"""install_package against FakeFhirClient, an in-memory stand-in (the real server is the lead's test).

FakeFhirClient implements only the three client methods install_package may use, with the
FHIR semantics they promise: search, PUT Type/id, and conditional update by url and version.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any
from urllib.parse import parse_qsl

import pytest

from adapter.conformance.install import conformance_resources, install_package
from adapter.conformance.package import is_topic, load_package, package
from adapter.fhir.client import FhirError


class FakeFhirClient:
    """An in-memory FHIR server of the three interactions; not a server, just enough to test with."""

    def __init__(self, no_conditional_update: frozenset[str] = frozenset()) -> None:
        self.store: dict[tuple[str, str], dict[str, Any]] = {}
        self.no_conditional_update = no_conditional_update
        self.writes: list[str] = []
        self._ids = itertools.count(1)

    def _put(self, resource: dict[str, Any]) -> dict[str, Any]:
        key = (resource["resourceType"], resource["id"])
        version = int(self.store.get(key, {}).get("meta", {}).get("versionId", "0")) + 1
        stored = {**copy.deepcopy(resource), "meta": {"versionId": str(version)}}
        self.store[key] = stored
        return copy.deepcopy(stored)

    def search(self, resource_type: str, params: dict) -> list[dict]:
        return [
            copy.deepcopy(r)
            for (rt, _), r in self.store.items()
            if rt == resource_type and all(str(r.get(k.lstrip("_"))) == str(v) for k, v in params.items())
        ]

    def update(self, resource: dict, if_match: str | None = None) -> dict:
        self.writes.append(f"PUT {resource['resourceType']}/{resource['id']}")
        return self._put(resource)

    def conditional_update(self, resource: dict, criteria: str) -> dict:
        rt = resource["resourceType"]
        self.writes.append(f"PUT {rt}?{criteria}")
        if rt in self.no_conditional_update:
            raise FhirError(405, f"conditional update not supported on {rt}")
        found = self.search(rt, dict(parse_qsl(criteria)))
        if len(found) > 1:
            raise FhirError(412, "several matches")
        body = {**resource, "id": found[0]["id"] if found else resource.get("id") or str(next(self._ids))}
        return self._put(body)


def test_installs_every_conformance_resource_once_and_then_nothing() -> None:
    client = FakeFhirClient()
    first = install_package(client)
    assert len(first) == len(conformance_resources(package())) == len(client.store)
    assert {outcome for _, outcome in first} == {"created"}
    assert not any("example" in id_ for _, id_ in client.store)
    client.writes.clear()
    second = install_package(client)
    assert {outcome for _, outcome in second} == {"unchanged"}
    assert client.writes == []
    assert [ref for ref, _ in first] == [ref for ref, _ in second]


def test_canonical_resources_use_conditional_update_and_topics_put_by_id() -> None:
    client = FakeFhirClient()
    install_package(client)
    for resource in conformance_resources(package()):
        if is_topic(resource):
            assert f"PUT Basic/{resource['id']}" in client.writes
        else:
            assert any(w.startswith(f"PUT {resource['resourceType']}?url=") for w in client.writes)


def test_a_changed_resource_is_updated_in_place(tmp_path) -> None:
    client = FakeFhirClient()
    install_package(client)
    pkg = package()
    changed = copy.deepcopy(pkg.of_type("CodeSystem")[0])
    changed["title"] = "A new title"
    edited = type(pkg)(pkg.directory, (changed,), {changed["url"]: changed})
    before = len(client.store)
    assert install_package(client, edited) == [(f"CodeSystem/{changed['id']}", "updated")]
    assert len(client.store) == before
    assert client.store[("CodeSystem", changed["id"])]["title"] == "A new title"


def test_falls_back_to_put_by_id_where_conditional_update_is_refused() -> None:
    client = FakeFhirClient(no_conditional_update=frozenset({"StructureDefinition"}))
    result = dict(install_package(client))
    assert result["StructureDefinition/mmr-referral"] == "created"
    assert "PUT StructureDefinition/mmr-referral" in client.writes
    assert {outcome for _, outcome in install_package(client)} == {"unchanged"}


def test_duplicates_on_the_server_are_reported_not_multiplied() -> None:
    client = FakeFhirClient()
    install_package(client)
    cs = package().of_type("CodeSystem")[0]
    client.store[("CodeSystem", "copy")] = {**copy.deepcopy(cs), "id": "copy"}
    with pytest.raises(FhirError) as exc:
        install_package(client)
    assert exc.value.status == 412


def test_the_package_folder_can_be_given_explicitly() -> None:
    pkg = load_package(package().directory)
    assert [r["id"] for r in conformance_resources(pkg)] == [r["id"] for r in conformance_resources(package())]
