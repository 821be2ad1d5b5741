"""The FHIR client against HAPI's own answers: its conflicts and its SUBSETTED resources.

The sandbox answers a stale ``If-Match`` with 412 and has no HAPI message codes, so FaultProxy (a
FAKE) serves HAPI's exact OperationOutcome bytes. The texts are HAPI's own, read from its source:
``ResourceVersionConflictException(Msg.code(989) + "Trying to update " + id + " but this is not the
current version")`` and ``Msg.code(2840) + "Can not create resource duplicating existing resource: "``.
"""

from __future__ import annotations

import json

import pytest

from adapter.fhir.client import AlreadyExists, FhirClient, Refused, VersionConflict
from tests.support.faults import FaultProxy, Rule
from tests.support.stack import unique

SYSTEM = "https://test.example.se/id"
SUBSETTED_TAG = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}


def hapi_outcome(diagnostics: str) -> bytes:
    """An OperationOutcome as HAPI's server serialises an exception: severity error, code processing."""
    return json.dumps(
        {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "processing", "diagnostics": diagnostics}],
        }
    ).encode()


def patient(value: str) -> dict[str, object]:
    return {"resourceType": "Patient", "identifier": [{"system": SYSTEM, "value": value}]}


def test_a_stale_if_match_is_hapis_409_hapi_0989_a_version_conflict(proxy: FaultProxy, fhir: FhirClient) -> None:
    created = fhir.create(patient(unique()))
    rid = f"Patient/{created['id']}"
    proxy.add(
        Rule(
            lambda m, p, b: m == "PUT" and p.endswith(rid),
            status=409,
            body=hapi_outcome(f"HAPI-0989: Trying to update {rid}/_history/1 but this is not the current version"),
        )
    )
    with FhirClient(proxy.base_url, retries=3, sleep=lambda _: None) as client, pytest.raises(VersionConflict) as info:
        client.update({**created, "active": True}, if_match="1")
    assert type(info.value) is VersionConflict and info.value.stale_version  # re-read and re-plan
    assert info.value.status == 409 and info.value.hapi_codes == {"HAPI-0989"}
    assert "not the current version" in info.value.message


def test_a_transaction_with_a_stale_entry_fails_whole_with_hapi_0989(proxy: FaultProxy) -> None:
    value = unique()
    proxy.add(
        Rule(
            lambda m, p, b: value.encode() in b,
            status=409,
            body=hapi_outcome(
                "HAPI-0550: HAPI-0550: HAPI-0989: Trying to update Patient/P1/_history/2 "
                "but this is not the current version"
            ),
        )
    )
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {**patient(value), "id": "P1"},
                "request": {"method": "PUT", "url": "Patient/P1", "ifMatch": 'W/"2"'},
            }
        ],
    }
    with FhirClient(proxy.base_url, retries=0) as client, pytest.raises(VersionConflict) as info:
        client.transaction(bundle)
    assert not isinstance(info.value, AlreadyExists) and info.value.stale_version


@pytest.mark.parametrize("status", [409, 412])
def test_a_lost_conditional_create_is_already_exists(proxy: FaultProxy, status: int) -> None:
    # 409 is the contract (hapi-notifications.md); HAPI's source throws HAPI-2840 as PreconditionFailed (412).
    value = unique()
    proxy.add(
        Rule(
            lambda m, p, b: value.encode() in b,
            status=status,
            body=hapi_outcome("HAPI-2840: Can not create resource duplicating existing resource: Patient/123"),
        )
    )
    with FhirClient(proxy.base_url, retries=3, sleep=lambda _: None) as client, pytest.raises(AlreadyExists) as info:
        client.create(patient(value), if_none_exist=f"identifier={SYSTEM}|{value}")
    assert isinstance(info.value, VersionConflict)  # callers re-read and re-plan as for any conflict
    assert not info.value.stale_version and info.value.hapi_codes == {"HAPI-2840"}
    assert info.value.existing == "Patient/123"  # the one to re-read


def test_a_subsetted_resource_is_never_written_back(proxy: FaultProxy, fhir: FhirClient) -> None:
    value = unique()
    created = fhir.create({**patient(value), "active": True})
    subset = fhir.get(f"Patient/{created['id']}?_summary=true")
    assert {"system": SUBSETTED_TAG["system"], "code": "SUBSETTED"}.items() <= subset["meta"]["tag"][0].items()
    seen = proxy.record()
    with FhirClient(proxy.base_url, retries=0) as client:
        with pytest.raises(Refused, match="SUBSETTED") as info:
            client.update(subset, if_match=subset["meta"]["versionId"])
        assert not info.value.transient
        with pytest.raises(Refused, match="SUBSETTED"):
            client.create({k: v for k, v in subset.items() if k != "id"})
        with pytest.raises(Refused, match="SUBSETTED"):
            client.conditional_update(subset, f"_id={created['id']}")
        with pytest.raises(Refused, match="SUBSETTED"):
            client.transaction(
                {
                    "resourceType": "Bundle",
                    "type": "transaction",
                    "entry": [
                        {"resource": patient(unique()), "request": {"method": "POST", "url": "Patient"}},
                        {"resource": subset, "request": {"method": "PUT", "url": f"Patient/{created['id']}"}},
                    ],
                }
            )
    assert [p for m, p, b in seen if created["id"] in p or value.encode() in b] == []  # nothing was sent
    assert fhir.read("Patient", created["id"])["active"] is True
