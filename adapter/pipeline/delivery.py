"""Is the FHIR server delivering to us: the adapter's Subscriptions it has not taken up or has given up.

HAPI never sets a Subscription to ``error`` after failed deliveries, and leaves one ``requested``
for ever when rest-hook delivery is off, without an error anywhere. ``setup`` waits for
activation (:func:`waiting`) and, when its heartbeat does not come back, says why (:func:`silence`);
at run time ``/health`` reports (in its details, without turning unready: the API
itself is fine) the Subscriptions still ``requested`` minutes after they were written, any in
``error`` or ``off``, and any of the adapter's own that deliver to another endpoint (an old
``MMR_PUBLIC_URL``). Pure over the Subscriptions read from the server.

The adapter's own Subscriptions are known by a mark of their own (``mark`` in
``mappings/subscriptions.yaml``, a ``meta.tag``), never by their endpoint: an endpoint is exactly
what changes when the adapter moves. Subscriptions written before the mark existed are known by
the ``reason`` setup gave them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from adapter.mappings import codes, load
from adapter.workflow.calendar import parse_moment

# Longer than HAPI takes to activate a Subscription (its matcher polls for new ones every few seconds).
REQUESTED_TOO_LONG = 300.0


HEARTBEAT_REASON = "The MMR adapter's own heartbeat: proves that notifications arrive"


def mark() -> dict[str, str]:
    """The ``meta.tag`` on every Subscription setup writes."""
    tag = load("subscriptions")["mark"]
    return {"system": codes().fill(str(tag["system"])), "code": str(tag["code"])}


def _reasons() -> frozenset[str]:
    return frozenset({*(str(e["reason"]) for e in load("subscriptions")["subscriptions"]), HEARTBEAT_REASON})


def endpoint(subscription: dict[str, Any]) -> str | None:
    channel = subscription.get("channel")
    return channel.get("endpoint") if isinstance(channel, dict) else None


def tagged(subscription: dict[str, Any]) -> bool:
    """Carries the adapter's mark."""
    wanted = mark()
    return any(
        isinstance(t, dict) and t.get("system") == wanted["system"] and t.get("code") == wanted["code"]
        for t in (subscription.get("meta") or {}).get("tag") or ()
    )


def marked(subscription: dict[str, Any]) -> bool:
    """One of the adapter's own, wherever it delivers: the mark, or (written before the mark) a reason of ours."""
    if subscription.get("resourceType") != "Subscription":
        return False
    return tagged(subscription) or (
        not (subscription.get("meta") or {}).get("tag") and subscription.get("reason") in _reasons()
    )


def ours(resources: Iterable[dict[str, Any]], notify_url: str) -> list[dict[str, Any]]:
    """The Subscriptions that deliver to this adapter's ``/notify``, or carry its mark."""
    return [
        r for r in resources if r.get("resourceType") == "Subscription" and (endpoint(r) == notify_url or marked(r))
    ]


def elsewhere(subscriptions: Iterable[dict[str, Any]], notify_url: str) -> list[dict[str, Any]]:
    """The adapter's own Subscriptions that deliver to another endpoint than ``notify_url``."""
    return [s for s in subscriptions if marked(s) and endpoint(s) != notify_url]


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
    subscriptions: Iterable[dict[str, Any]],
    now: datetime,
    requested_too_long: float = REQUESTED_TOO_LONG,
    notify_url: str | None = None,
) -> str | None:
    """One line naming what keeps notifications from arriving, or None when nothing seems to; with
    ``notify_url``, also the adapter's own Subscriptions that deliver elsewhere."""
    subscriptions = list(subscriptions)
    stuck, broken = [], []
    if notify_url is not None:
        away = elsewhere(subscriptions, notify_url)
        by_endpoint: dict[str, list[str]] = {}
        for sub in away:
            by_endpoint.setdefault(str(endpoint(sub)), []).append(f"Subscription/{sub.get('id')}")
        broken += [
            f"{', '.join(refs)} of ours deliver to {where}, not to {notify_url} (run mmr-adapter setup)"
            for where, refs in sorted(by_endpoint.items())
        ]
        subscriptions = [s for s in subscriptions if s not in away]
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
