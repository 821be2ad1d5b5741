"""Building referrals on the sandbox and finding what the adapter wrote about them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from adapter.fhir.client import FhirClient
from adapter.mappings import codes
from adapter.polling import poll

LUND = "SE2321000255-SML1"
TEST_PERSONNUMMER = "191212121212"  # Skatteverket's well-known test number
TEST_NAME = "Tolvan Tolvansson"


def new_patient(fhir: FhirClient) -> str:
    pid = f"p-{uuid.uuid4().hex[:10]}"
    fhir.update(
        {
            "resourceType": "Patient",
            "id": pid,
            "identifier": [{"system": codes().personnummer_system, "value": TEST_PERSONNUMMER}],
            "name": [{"family": "Tolvansson", "given": ["Tolvan"], "text": TEST_NAME}],
        }
    )
    return pid


def referral_body(patient_id: str, clinic_hsa: str = LUND, **extra: Any) -> dict[str, Any]:
    c = codes()
    return {
        "resourceType": "ServiceRequest",
        "identifier": [{"system": "https://ehr.example.se/remiss", "value": f"R-{uuid.uuid4().hex[:10]}"}],
        "status": "active",
        "intent": "order",
        "category": [{"coding": [c.referral_category]}],
        "code": {"coding": [c.referral_code]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "requester": {"display": "Dr. Remittent, Vårdcentralen Exempel"},
        "performer": [{"identifier": {"system": "urn:oid:1.2.752.29.4.19", "value": clinic_hsa}}],
        **extra,
    }


def new_referral(fhir: FhirClient, clinic_hsa: str = LUND, **extra: Any) -> dict[str, Any]:
    return fhir.create(referral_body(new_patient(fhir), clinic_hsa, **extra))


def review_tasks(fhir: FhirClient, referral_id: str) -> list[dict[str, Any]]:
    system = codes().system("task-type")
    return fhir.search("Task", {"focus": f"ServiceRequest/{referral_id}", "code": f"{system}|referral-review"})


def _activated(fhir: FhirClient, ids: list[str], timeout: float = 20.0) -> None:
    """Wait until the server has taken up these Subscriptions (none still ``requested``).

    HAPI activates a Subscription asynchronously, writing it itself: a client update racing that
    write fails with 409 (HAPI-0823), and a change made before activation is never notified.
    """
    poll(lambda: all(fhir.read("Subscription", i)["status"] != "requested" for i in ids), timeout, interval=0.2)


@contextmanager
def subscriptions_paused(fhir: FhirClient) -> Iterator[None]:
    """Take the server's Subscriptions away, so only what a test sends reaches the adapter; then
    subscribe again with new ones.

    Not ``off`` and back: HAPI 8.2 re-registering a Subscription it had switched off has been seen
    to leave its delivery channel without a handler ("Channel has zero subscribers"), after which
    nothing matching it was ever delivered again. A new Subscription gets a new channel.
    """
    ids = [s["id"] for s in fhir.search("Subscription", {"_count": "100"}) if s["resourceType"] == "Subscription"]
    _activated(fhir, ids)
    saved = [fhir.read("Subscription", sid) for sid in ids]
    for sub in saved:
        fhir.delete("Subscription", sub["id"])
    try:
        yield
    finally:
        again = [
            fhir.create(
                {
                    **{k: v for k, v in sub.items() if k not in ("id", "meta", "error")},
                    **({"meta": {"tag": sub["meta"]["tag"]}} if (sub.get("meta") or {}).get("tag") else {}),
                    "status": "requested",
                }
            )
            for sub in saved
        ]
        _activated(fhir, [sub["id"] for sub in again])
