"""A notification of several events, queued as one fan-out message, is processed event by event.

End to end: the API and a worker as processes (``mmr-adapter serve`` and ``worker``), the sandbox
FHIR server, Redis.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from adapter.fhir.client import FhirClient
from tests.support.referrals import new_referral, review_tasks, subscriptions_paused
from tests.support.shapes import BACKPORT_STATUS
from tests.support.stack import Stack, wait_for

pytestmark = pytest.mark.e2e


def notification(sub_id: str, resources: list[dict[str, Any]]) -> bytes:
    """An R4 backport event-notification with one notification-event and one full entry per resource."""
    events = [
        {
            "name": "notification-event",
            "part": [
                {"name": "event-number", "valueString": str(n)},
                {"name": "focus", "valueReference": {"reference": f"{r['resourceType']}/{r['id']}"}},
            ],
        }
        for n, r in enumerate(resources, 1)
    ]
    status = {
        "resourceType": "Parameters",
        "meta": {"profile": [BACKPORT_STATUS]},
        "parameter": [
            {"name": "subscription", "valueReference": {"reference": f"Subscription/{sub_id}"}},
            {"name": "type", "valueCode": "event-notification"},
            *events,
        ],
    }
    entries = [
        {
            "fullUrl": f"http://hapi:8080/fhir/{r['resourceType']}/{r['id']}",
            "resource": r,
            "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
        }
        for r in resources
    ]
    return json.dumps({"resourceType": "Bundle", "type": "history", "entry": [{"resource": status}, *entries]}).encode()


def test_every_event_of_a_multi_event_notification_is_processed(stack: Stack, fhir: FhirClient) -> None:
    with subscriptions_paused(fhir):
        referrals = [new_referral(fhir) for _ in range(3)]
        reply = stack.notify("POST", "", notification("fan-out-sub", referrals))
        assert reply.status_code == 202
        assert reply.json() == {"resourceType": "Bundle", "type": "transaction-response"}
        for sr in referrals:
            tasks = wait_for(lambda sr=sr: review_tasks(fhir, sr["id"]), what=f"a review Task for {sr['id']}")
            assert len(tasks) == 1
