"""The benchmark's FHIR side: the directory, referrals on the sandbox, notifications about them, review Tasks."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

from load import Request

from adapter.fhir.client import FhirClient
from adapter.mappings import codes
from adapter.operations.setup import directory_resources, upsert

LUND = "SE2321000255-SML1"  # a specialist clinic of mappings/directory: its referrals get a review Task
HSA = "urn:oid:1.2.752.29.4.19"
REFERRAL_SYSTEM = "https://ehr.example.se/remiss"


def install_directory(fhir: FhirClient) -> int:
    """What ``mmr-adapter setup`` writes, minus the Subscriptions: the benchmark sends its own notifications."""
    resources = directory_resources()
    for resource in resources:
        upsert(fhir, resource)
    return len(resources)


def referral_body(patient_id: str, key: str) -> dict[str, Any]:
    c = codes()
    return {
        "resourceType": "ServiceRequest",
        "identifier": [{"system": REFERRAL_SYSTEM, "value": key}],
        "status": "active",
        "intent": "order",
        "category": [{"coding": [c.referral_category]}],
        "code": {"coding": [c.referral_code]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "requester": {"display": "Dr. Remittent, Vårdcentralen Exempel"},
        "performer": [{"identifier": {"system": HSA, "value": LUND}}],
    }


def create_referrals(fhir: FhirClient, n: int, named: bool = False) -> list[dict[str, Any]]:
    """``n`` referrals, each with its own test patient, written straight to the FHIR server.

    ``named``: the referral's id is ``sr-<key>`` as its patient's is ``p-<key>``, so every id and
    identifier of a referral contains its key (the direct phase replays one referral's requests
    for another by swapping keys)."""
    out = []
    for _ in range(n):
        key = f"B-{uuid.uuid4().hex[:12]}"
        patient = {
            "resourceType": "Patient",
            "id": f"p-{key}",
            "name": [{"family": "Testsson", "given": ["Bench"]}],
            "identifier": [{"system": codes().personnummer_system, "value": "191212121212"}],
        }
        fhir.update(patient)
        body = referral_body(patient["id"], key)
        out.append(fhir.update({**body, "id": f"sr-{key}"}) if named else fhir.create(body))
    return out


def referral_key(referral: dict[str, Any]) -> str:
    return str(referral["identifier"][0]["value"])


def notifications(api_url: str, referrals: Sequence[dict[str, Any]]) -> list[Request]:
    """HAPI's rest-hook with payload: ``PUT {endpoint}/ServiceRequest/{id}``, body the resource."""
    return [Request("PUT", f"{api_url}/notify/ServiceRequest/{sr['id']}", json.dumps(sr).encode()) for sr in referrals]


def review_code() -> str:
    return f"{codes().system('task-type')}|referral-review"


def review_task_count(fhir: FhirClient) -> int:
    return int(fhir.get(f"Task?code={review_code()}&_summary=count").get("total") or 0)


def reviewed_referrals(fhir: FhirClient) -> set[str]:
    """Every ServiceRequest id some review Task focuses on (one search, few elements)."""
    tasks = fhir.search("Task", [("code", review_code()), ("_elements", "focus"), ("_count", "1000")])
    return {(t.get("focus") or {}).get("reference", "").removeprefix("ServiceRequest/") for t in tasks}


def wait_for_reviews(fhir: FhirClient, ids: set[str], baseline: int, deadline: float, interval: float = 0.1) -> float:
    """Poll the sandbox until every referral in ``ids`` has its review Task; returns when (perf_counter).

    ``baseline`` is the review Task count before the notifications. A cheap ``_summary=count`` search
    is polled until the count allows success; from then on the full check (one search) decides.
    """
    counted = False
    while time.perf_counter() < deadline:
        counted = counted or review_task_count(fhir) >= baseline + len(ids)
        if counted:
            done = time.perf_counter()
            if ids <= reviewed_referrals(fhir):
                return done
        time.sleep(interval)
    missing = ids - reviewed_referrals(fhir)
    raise TimeoutError(f"{len(missing)} of {len(ids)} referrals still have no review Task at the deadline")
