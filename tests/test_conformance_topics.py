"""Subscription topics: the backport Basic form, and criteria that fire on the right resources."""

from __future__ import annotations

from typing import Any

import pytest
from fhirpathpy import evaluate

from adapter.conformance.package import example, is_topic, package
from adapter.mappings import codes

ST = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic"


def topics() -> dict[str, dict[str, Any]]:
    out = {}
    for basic in (r for r in package().resources if is_topic(r)):
        url = next(e["valueUri"] for e in basic["extension"] if e["url"] == f"{ST}.url")
        out[url.rsplit("/", 1)[-1]] = basic
    return out


def criteria(name: str, resource_type: str) -> str:
    for trigger in (e for e in topics()[name]["extension"] if e["url"] == f"{ST}.resourceTrigger"):
        parts = {p["url"]: p for p in trigger["extension"]}
        if parts["resource"]["valueUri"].endswith(f"/{resource_type}"):
            return parts["fhirPathCriteria"]["valueString"]
    raise KeyError(resource_type)


def fires(expression: str, current: dict[str, Any], previous: dict[str, Any] | None = None) -> bool:
    return evaluate(current, expression, {"current": current, "previous": previous or []}) == [True]


def test_the_topics_the_adapter_consumes_are_published() -> None:
    assert set(topics()) == {
        "mmr-referral",
        "mmr-task",
        "mmr-communication-reply",
        "mmr-questionnaire-response",
        "mmr-appointment",
        "mmr-careplan",
        "mmr-discharge-summary",
    }
    for name, basic in topics().items():
        url = next(e["valueUri"] for e in basic["extension"] if e["url"] == f"{ST}.url")
        assert url == f"{codes().base}/SubscriptionTopic/{name}"
        assert basic["modifierExtension"] == [{"url": f"{ST}.status", "valueCode": "active"}]


def test_sekmet_reads_the_topics() -> None:
    backport = pytest.importorskip("sekmet.subscriptions.backport")
    for name, basic in topics().items():
        topic = backport.topic_from_basic(basic)
        assert topic is not None and topic.url.endswith(name) and topic.triggers and topic.filters


def test_referral_and_task_topics_fire_on_ours_only() -> None:
    sr = example("ServiceRequest-mmr-example-referral.json")
    assert fires(criteria("mmr-referral", "ServiceRequest"), sr)
    assert not fires(criteria("mmr-referral", "ServiceRequest"), {**sr, "category": [], "code": {"text": "x"}})
    task = criteria("mmr-task", "Task")
    for name in ("Task-mmr-example-review.json", "Task-mmr-example-questionnaire.json"):
        assert fires(task, example(name))
    assert not fires(task, {"resourceType": "Task", "code": {"coding": [{"system": "urn:x", "code": "y"}]}})


def test_status_topics_fire_on_the_transition() -> None:
    qr = example("QuestionnaireResponse-mmr-example-intake-response.json")
    expr = criteria("mmr-questionnaire-response", "QuestionnaireResponse")
    assert fires(expr, qr, {**qr, "status": "in-progress"})
    assert not fires(expr, qr, qr)
    appointment = {"resourceType": "Appointment", "status": "booked"}
    expr = criteria("mmr-appointment", "Appointment")
    assert fires(expr, appointment) and fires(expr, {**appointment, "status": "cancelled"}, appointment)
    assert not fires(expr, {**appointment, "status": "fulfilled"}, appointment)


def test_reply_topic_skips_the_adapters_own_confirmations() -> None:
    expr = criteria("mmr-communication-reply", "Communication")
    confirmation = example("Communication-mmr-example-confirmation-vid.json")
    reply = {
        "resourceType": "Communication",
        "status": "completed",
        "basedOn": confirmation["basedOn"],
        "inResponseTo": [{"reference": "Communication/kom-1"}],
    }
    assert fires(expr, reply) and not fires(expr, confirmation)


def test_discharge_summary_topic_covers_composition_and_document_reference() -> None:
    loinc = {"coding": [{"system": "http://loinc.org", "code": "18842-5"}]}
    assert fires(
        criteria("mmr-discharge-summary", "Composition"),
        {"resourceType": "Composition", "status": "final", "type": loinc},
    )
    assert fires(
        criteria("mmr-discharge-summary", "DocumentReference"),
        {"resourceType": "DocumentReference", "status": "current", "type": loinc},
    )
    assert not fires(
        criteria("mmr-discharge-summary", "Composition"),
        {"resourceType": "Composition", "status": "preliminary", "type": loinc},
    )
