"""Is the FHIR server delivering to us: the adapter's Subscriptions it has not taken up or has given up.

HAPI never sets a Subscription to ``error`` after failed deliveries, and leaves one ``requested``
for ever when rest-hook delivery is off, without an error anywhere. ``setup`` waits for
activation (:func:`waiting`) and, when its heartbeat does not come back, says why (:func:`silence`);
at run time ``/health`` reports (in its details, without turning unready: the API
itself is fine) the Subscriptions still ``requested`` minutes after they were written, and any in
``error`` or ``off``. Pure over the Subscriptions read from the server.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from adapter.workflow.calendar import parse_moment

# Longer than HAPI takes to activate a Subscription (its matcher polls for new ones every few seconds).
REQUESTED_TOO_LONG = 300.0


def ours(resources: Iterable[dict[str, Any]], notify_url: str) -> list[dict[str, Any]]:
    """The Subscriptions that deliver to this adapter's ``/notify``."""
    return [
        r
        for r in resources
        if r.get("resourceType") == "Subscription"
        and isinstance(r.get("channel"), dict)
        and r["channel"].get("endpoint") == notify_url
    ]


def waiting(subscription: dict[str, Any]) -> bool:
    """Written, not yet taken up by the server (HAPI leaves it so for ever when rest-hook delivery is off)."""
    return subscription.get("status") == "requested"


def given_up(subscription: dict[str, Any]) -> bool:
    """The server has stopped delivering it."""
    return subscription.get("status") in ("error", "off")


def healthy(subscription: dict[str, Any]) -> bool:
    """Delivering, or about to: nothing to replace."""
    return subscription.get("status") in ("active", "requested")


def problems(
    subscriptions: Iterable[dict[str, Any]], now: datetime, requested_too_long: float = REQUESTED_TOO_LONG
) -> str | None:
    """One line naming what keeps notifications from arriving, or None when nothing seems to."""
    stuck, broken = [], []
    for sub in subscriptions:
        ref = f"Subscription/{sub.get('id')}"
        if given_up(sub):
            broken.append(f"{ref} is {sub['status']}")
        elif waiting(sub):
            written = parse_moment((sub.get("meta") or {}).get("lastUpdated"))
            if written is None or (now - written).total_seconds() > requested_too_long:
                stuck.append(ref)
    if stuck:
        broken.append(
            f"{', '.join(stuck)} still 'requested' after {requested_too_long / 60:.0f} min: the server "
            "has not taken them up (HAPI: hapi.fhir.subscription.resthook_enabled=true?)"
        )
    return "; ".join(broken) or None


def silence(subscriptions: Iterable[dict[str, Any]], notify_url: str, waited: float) -> str:
    """Why no heartbeat came back within ``waited`` seconds (``setup``'s proof of delivery), in one
    line, from the adapter's Subscriptions as the server holds them."""
    subscriptions = list(subscriptions)
    stuck = sum(1 for sub in subscriptions if waiting(sub))
    broken = sum(1 for sub in subscriptions if given_up(sub))
    if stuck:
        return (
            f"no notification came back within {waited:.0f} s and {stuck} Subscription(s) are still "
            "'requested': the server has not activated them (on HAPI, is rest-hook delivery enabled: "
            "hapi.fhir.subscription.resthook_enabled=true?)"
        )
    if broken:
        return f"no notification came back within {waited:.0f} s and {broken} Subscription(s) are in error or off"
    return (
        f"no notification came back within {waited:.0f} s although the server holds the Subscriptions: "
        f"can the server reach {notify_url}, and does a worker run?"
    )
