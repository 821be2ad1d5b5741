"""Turn every notification shape HAPI sends into envelopes for the queue. Pure: bytes in, envelopes out.

Shapes (see shared/reference/hapi-notifications.md):

* ``PUT {endpoint}/{Type}/{id}`` with the resource: classic rest-hook with payload, create/update;
* ``DELETE {endpoint}/{Type}/{id}``: classic rest-hook with payload, delete;
* ``POST {endpoint}`` with an empty body: classic rest-hook without payload, a ping;
* ``POST {endpoint}`` with a history / subscription-notification Bundle whose first entry is a
  backport ``Parameters`` (R4) or a ``SubscriptionStatus`` (R4B/R5): topic-based, with content
  full-resource, id-only or empty; handshakes and heartbeats are acknowledged and queue nothing;
* ``POST {endpoint}`` with a single resource: the rest-hook "POST" mode some servers offer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from adapter.pipeline.envelope import Envelope

BACKPORT_STATUS = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4"
JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")
TYPE_RE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


class BadNotification(Exception):
    """The request is not a notification the adapter understands: answer ``status`` with this text."""

    def __init__(self, status: int, text: str, code: str = "invalid") -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.code = code


@dataclass(frozen=True)
class Parsed:
    shape: str
    envelopes: tuple[Envelope, ...] = ()

    @property
    def acknowledge_only(self) -> bool:
        return not self.envelopes


def _json(body: bytes, content_type: str | None) -> Any:
    media = (content_type or "").split(";")[0].strip().lower()
    if media and media not in JSON_TYPES:
        raise BadNotification(415, f"Content-Type {media!r} is not supported; send application/fhir+json",
                              "not-supported")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadNotification(400, f"The body is not valid JSON: {exc}", "structure") from None


def _check_ref(resource_type: str, resource_id: str) -> None:
    if not TYPE_RE.match(resource_type):
        raise BadNotification(400, f"{resource_type!r} is not a FHIR resource type")
    if not ID_RE.match(resource_id):
        raise BadNotification(400, f"{resource_id!r} is not a valid FHIR id")


def _version(resource: dict[str, Any]) -> str | None:
    meta = resource.get("meta")
    return str(meta["versionId"]) if isinstance(meta, dict) and meta.get("versionId") else None


def parse_put(resource_type: str, resource_id: str, body: bytes, content_type: str | None) -> Parsed:
    """Classic rest-hook with payload: the body is the resource (its id may be absent or relative)."""
    _check_ref(resource_type, resource_id)
    if not body.strip():
        return Parsed("rest-hook-put", (Envelope("changed", "rest-hook-put", resource_type, resource_id),))
    resource = _json(body, content_type)
    if not isinstance(resource, dict) or "resourceType" not in resource:
        raise BadNotification(400, "The body must be a FHIR resource (a JSON object with resourceType)")
    if resource["resourceType"] != resource_type:
        raise BadNotification(400, f"The body is a {resource['resourceType']}, the path says {resource_type}")
    body_id = str(resource.get("id") or "").rsplit("/", 1)[-1]
    if body_id and body_id != resource_id:
        raise BadNotification(400, f"The body's id {body_id!r} differs from the path's {resource_id!r}")
    return Parsed("rest-hook-put", (Envelope("changed", "rest-hook-put", resource_type, resource_id,
                                             _version(resource), resource),))


def parse_delete(resource_type: str, resource_id: str) -> Parsed:
    _check_ref(resource_type, resource_id)
    return Parsed("rest-hook-delete", (Envelope("deleted", "rest-hook-delete", resource_type, resource_id),))


def parse_post(body: bytes, content_type: str | None) -> Parsed:
    """A ping, a topic notification Bundle, or a single resource."""
    if not body.strip():
        return Parsed("rest-hook-ping", (Envelope("ping", "rest-hook-ping"),))
    doc = _json(body, content_type)
    if not isinstance(doc, dict) or "resourceType" not in doc:
        raise BadNotification(400, "The body must be a FHIR resource (a JSON object with resourceType)")
    if doc["resourceType"] == "Bundle":
        return _parse_bundle(doc)
    rid = str(doc.get("id") or "")
    if not rid:
        raise BadNotification(400, f"A posted {doc['resourceType']} needs an id to be a notification")
    _check_ref(doc["resourceType"], rid)
    return Parsed("rest-hook-post", (Envelope("changed", "rest-hook-post", doc["resourceType"], rid,
                                              _version(doc), doc),))


# ------------------------------------------------------------------ topic-based notifications


def _params(parameters: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [p for p in parameters if p.get("name") in (name, _camel(name))]


def _camel(name: str) -> str:
    head, *rest = name.split("-")
    return head + "".join(w.title() for w in rest)


def _value(param: dict[str, Any] | None) -> Any:
    if not param:
        return None
    return next((v for k, v in param.items() if k.startswith("value")), None)


def _status_from_parameters(p: dict[str, Any]) -> dict[str, Any]:
    params = p.get("parameter") or []
    first = lambda n: _value(next(iter(_params(params, n)), None))  # noqa: E731
    events = []
    for ev in _params(params, "notification-event"):
        parts = ev.get("part") or []
        focus = _value(next(iter(_params(parts, "focus")), None))
        events.append({"number": _value(next(iter(_params(parts, "event-number")), None)),
                       "focus": (focus or {}).get("reference") if isinstance(focus, dict) else None})
    sub = first("subscription")
    return {"type": first("type"), "subscription": (sub or {}).get("reference") if isinstance(sub, dict) else sub,
            "events": events}


def _status_from_subscription_status(s: dict[str, Any]) -> dict[str, Any]:
    events = [{"number": e.get("eventNumber"), "focus": (e.get("focus") or {}).get("reference")}
              for e in s.get("notificationEvent") or ()]
    sub = s.get("subscription")
    return {"type": s.get("type"), "subscription": (sub or {}).get("reference") if isinstance(sub, dict) else sub,
            "events": events}


def _split_ref(reference: str | None) -> tuple[str, str] | None:
    if not reference:
        return None
    parts = reference.split("/_history/")[0].rstrip("/").split("/")
    if len(parts) < 2:
        return None
    return parts[-2], parts[-1]


def _parse_bundle(bundle: dict[str, Any]) -> Parsed:
    btype = bundle.get("type")
    if btype not in ("history", "subscription-notification"):
        raise BadNotification(400, f"A notification Bundle has type history or subscription-notification, "
                                   f"not {btype!r}")
    entries = bundle.get("entry") or []
    first = (entries[0].get("resource") if entries and isinstance(entries[0], dict) else None) or {}
    rtype = first.get("resourceType")
    if rtype == "Parameters" and (BACKPORT_STATUS in ((first.get("meta") or {}).get("profile") or [])
                                  or _params(first.get("parameter") or [], "type")):
        status, shape = _status_from_parameters(first), "topic-r4"
    elif rtype == "SubscriptionStatus":
        status, shape = _status_from_subscription_status(first), "topic-r5" if btype == \
            "subscription-notification" else "topic-r4b"
    else:
        raise BadNotification(400, "The notification Bundle's first entry must be a SubscriptionStatus "
                                   "(or backport Parameters)")
    kind = status["type"]
    if kind in ("handshake", "heartbeat", "query-status", "query-event"):
        return Parsed(f"{shape}-{kind}")
    if kind != "event-notification":
        raise BadNotification(400, f"Unknown notification type {kind!r}")

    by_ref: dict[tuple[str, str], dict[str, Any]] = {}
    requests: dict[tuple[str, str], str] = {}
    for entry in entries[1:]:
        if not isinstance(entry, dict):
            continue
        res = entry.get("resource")
        ref = (res["resourceType"], str(res["id"])) if isinstance(res, dict) and res.get("id") else \
            _split_ref(entry.get("fullUrl")) or _split_ref((entry.get("request") or {}).get("url"))
        if ref is None:
            continue
        if isinstance(res, dict):
            by_ref[ref] = res
        requests[ref] = (entry.get("request") or {}).get("method", "PUT")

    sub_id = (_split_ref(status["subscription"]) or ("", status["subscription"] or "?"))[1]
    envelopes = []
    for ev in status["events"] or [{}]:
        ref = _split_ref(ev.get("focus"))
        topic_event = f"Subscription/{sub_id}#{ev['number']}" if ev.get("number") is not None else None
        if ref is None:  # content "empty": nothing says what changed; search for it
            envelopes.append(Envelope("ping", f"{shape}-empty", topic_event=topic_event))
            continue
        _check_ref(*ref)
        res = by_ref.get(ref)
        content = "full" if res else "id-only"
        kind_ = "deleted" if requests.get(ref) == "DELETE" else "changed"
        envelopes.append(Envelope(kind_, f"{shape}-{content}", ref[0], ref[1], _version(res) if res else None,
                                  res, topic_event=topic_event))
    if not status["events"]:  # no notification-event part: fall back on the entries themselves
        envelopes = [Envelope("deleted" if requests.get(r) == "DELETE" else "changed", f"{shape}-entries", r[0], r[1],
                              _version(by_ref[r]) if r in by_ref else None, by_ref.get(r)) for r in requests] or \
            [Envelope("ping", f"{shape}-empty")]
    return Parsed(envelopes[0].shape, tuple(envelopes))
