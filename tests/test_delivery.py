"""The adapter's Subscriptions the server has not taken up or has given up, as /health reports them."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from adapter.config import Settings
from adapter.fhir.client import FhirClient
from adapter.intake.api import health_details
from adapter.pipeline import delivery

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
NOTIFY = "http://adapter.example/notify"


def sub(status: str, written: datetime | None = NOW, endpoint: str = NOTIFY, id_: str = "1") -> dict:
    meta = {"lastUpdated": written.isoformat().replace("+00:00", "Z")} if written else {}
    return {
        "resourceType": "Subscription",
        "id": id_,
        "status": status,
        "meta": meta,
        "channel": {"type": "rest-hook", "endpoint": endpoint},
    }


def test_active_subscriptions_and_fresh_requests_are_fine() -> None:
    assert delivery.problems([sub("active"), sub("requested", NOW - timedelta(minutes=2))], NOW) is None


def test_a_request_the_server_never_took_up_is_named_with_the_likely_cause() -> None:
    text = delivery.problems([sub("active", id_="a"), sub("requested", NOW - timedelta(minutes=6), id_="b")], NOW)
    assert text is not None and text.startswith("Subscription/b still 'requested' after 5 min")
    assert "resthook_enabled" in text and "Subscription/a" not in text


def test_error_and_off_are_named_and_a_request_without_a_time_counts_as_old() -> None:
    text = delivery.problems([sub("error", id_="e"), sub("off", id_="o"), sub("requested", None, id_="r")], NOW)
    assert text is not None
    assert "Subscription/e is error" in text and "Subscription/o is off" in text and "Subscription/r still" in text


def test_only_the_subscriptions_that_notify_this_adapter_are_ours() -> None:
    others = [
        sub("error", endpoint="http://someone-else/notify", id_="x"),
        {"resourceType": "Subscription"},
        {"resourceType": "OperationOutcome"},
        sub("active", id_="m"),
    ]
    assert [s["id"] for s in delivery.ours(others, NOTIFY)] == ["m"]


def test_health_reads_the_servers_subscriptions_and_names_one_switched_off(fhir: FhirClient) -> None:
    public = f"http://adapter-{uuid.uuid4().hex[:8]}.example"
    settings = Settings(fhir_base_url=fhir.base_url, public_url=public)
    check = health_details(settings, now=lambda: datetime.now(UTC) + timedelta(minutes=10))["subscriptions"]

    async def before_and_after() -> tuple[str | None, str | None, str]:
        before = await check()
        created = fhir.create(
            {
                "resourceType": "Subscription",
                "status": "off",
                "reason": "a delivery test",
                "criteria": "Basic?code=mmr-delivery-test",
                "channel": {"type": "rest-hook", "endpoint": settings.notify_url, "payload": "application/fhir+json"},
            }
        )
        try:
            return before, await check(), created["id"]
        finally:
            fhir.delete("Subscription", created["id"])

    before, after, sub_id = asyncio.run(before_and_after())
    # The suite's own Subscriptions, if set up, deliver to another endpoint than this one's: named too.
    assert f"Subscription/{sub_id}" not in (before or "")
    assert after is not None and f"Subscription/{sub_id} is off" in after.split("; ")


def test_ours_are_known_by_the_mark_and_those_delivering_elsewhere_are_named_by_endpoint() -> None:
    mine = {**sub("active", endpoint="http://old-adapter/notify", id_="old"), "meta": {"tag": [delivery.mark()]}}
    legacy = {**sub("active", endpoint="http://old-adapter/notify", id_="legacy"), "reason": delivery.HEARTBEAT_REASON}
    foreign = {**sub("active", endpoint="http://old-adapter/notify", id_="foreign"), "reason": "someone else's"}
    here = {**sub("active", id_="here"), "meta": {"tag": [delivery.mark()]}}
    found = delivery.ours([mine, legacy, foreign, here], NOTIFY)
    assert [s["id"] for s in found] == ["old", "legacy", "here"]
    assert [s["id"] for s in delivery.elsewhere(found, NOTIFY)] == ["old", "legacy"]
    text = delivery.problems(found, NOW, notify_url=NOTIFY)
    assert text == (
        "Subscription/old, Subscription/legacy of ours deliver to http://old-adapter/notify, "
        f"not to {NOTIFY} (run mmr-adapter setup)"
    )
    assert delivery.problems([here], NOW, notify_url=NOTIFY) is None
