"""Notification bodies exactly as HAPI builds them (shared/reference/hapi-notifications.md)."""

from __future__ import annotations

import json
from typing import Any

BACKPORT_STATUS = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4"
TOPIC = "https://mmr-adapter.se/fhir/SubscriptionTopic/mmr-referral"


def r4_backport(
    sub_id: str,
    event_number: int,
    focus: str | None,
    resource: dict[str, Any] | None = None,
    kind: str = "event-notification",
    method: str = "PUT",
    base: str = "http://hapi:8080/fhir",
) -> bytes:
    parts: list[dict[str, Any]] = [
        {"name": "event-number", "valueString": str(event_number)},
        {"name": "timestamp", "valueDate": "2026-11-22"},
    ]
    if focus:
        parts.append({"name": "focus", "valueReference": {"reference": focus}})
    params: list[dict[str, Any]] = [
        {"name": "subscription", "valueReference": {"reference": f"Subscription/{sub_id}"}},
        {"name": "topic", "valueCanonical": TOPIC},
        {"name": "status", "valueCode": "active"},
        {"name": "type", "valueCode": kind},
        {"name": "events-since-subscription-start", "valueString": str(event_number)},
    ]
    if kind == "event-notification":
        params.append({"name": "notification-event", "part": parts})
    entries: list[dict[str, Any]] = [
        {"resource": {"resourceType": "Parameters", "meta": {"profile": [BACKPORT_STATUS]}, "parameter": params}}
    ]
    if focus:
        entry: dict[str, Any] = {"fullUrl": f"{base}/{focus}", "request": {"method": method, "url": focus}}
        if resource is not None:
            entry["resource"] = resource
        entries.append(entry)
    return json.dumps({"resourceType": "Bundle", "type": "history", "entry": entries}).encode()


def subscription_status(
    sub_id: str,
    event_number: int,
    focus: str | None,
    resource: dict[str, Any] | None = None,
    r5: bool = True,
    kind: str = "event-notification",
) -> bytes:
    status: dict[str, Any] = {
        "resourceType": "SubscriptionStatus",
        "status": "active",
        "type": kind,
        "eventsSinceSubscriptionStart": str(event_number),
        "subscription": {"reference": f"Subscription/{sub_id}"},
        "topic": TOPIC,
    }
    if kind == "event-notification":
        event: dict[str, Any] = {"eventNumber": str(event_number)}
        if focus:
            event["focus"] = {"reference": focus}
        status["notificationEvent"] = [event]
    entries: list[dict[str, Any]] = [{"resource": status}]
    if focus:
        entry: dict[str, Any] = {
            "fullUrl": f"http://hapi:8080/fhir/{focus}",
            "request": {"method": "PUT", "url": focus},
        }
        if resource is not None:
            entry["resource"] = resource
        entries.append(entry)
    return json.dumps(
        {"resourceType": "Bundle", "type": "subscription-notification" if r5 else "history", "entry": entries}
    ).encode()
