"""Turn every notification shape HAPI sends into envelopes for the queue. Pure: bytes in, envelopes out.

Shapes (see shared/reference/hapi-notifications.md):

* ``PUT {endpoint}/{Type}/{id}`` with the resource: classic rest-hook with payload, create/update;
* ``DELETE {endpoint}/{Type}/{id}``: classic rest-hook with payload, delete;
* ``POST {endpoint}`` with an empty body: classic rest-hook without payload, a ping;
* ``POST {endpoint}`` with a history / subscription-notification Bundle whose first entry is a
  backport ``Parameters`` (R4) or a ``SubscriptionStatus`` (R4B/R5): topic-based, with content
  full-resource, id-only or empty; handshakes and heartbeats are acknowledged and queue nothing;
* ``POST {endpoint}`` with a single resource: the rest-hook "POST" mode some servers offer.

Nothing the parser reads is trusted: every element is type-checked where it is read, the JSON's
nesting is bounded before it is parsed, and a notification carries at most ``max_events``
events. A refusal is a :class:`BadNotification` naming the element (a FHIRPath-like location
such as ``Bundle.entry[0].resource.parameter[3].part[1]``) and the problem, never a value from
the request: request content may hold names and personnummer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from adapter.pipeline.envelope import Envelope

BACKPORT_STATUS = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4"
JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")
TYPE_RE = re.compile(r"[A-Z][A-Za-z]{1,63}")
ID_RE = re.compile(r"[A-Za-z0-9\-.]{1,64}")
EVENT_NUMBER_RE = re.compile(r"[0-9]{1,18}")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"})
MAX_DEPTH = 64  # JSON nesting; FHIR resources HAPI sends stay far below (a Bundle of Questionnaires ~ 20)
MAX_EVENTS = 100
# Locations in a resource that is not a Bundle start from FHIRPath's ``Resource``: its
# resourceType, though it matches the pattern, is the sender's text and may be anything.
ROOT = "Resource"
ACKNOWLEDGED = ("handshake", "heartbeat", "query-status", "query-event")

T = TypeVar("T")


class BadNotification(Exception):
    """The request is not a notification the adapter understands: answer ``status`` with this text.

    ``text`` and ``expression`` are built from the adapter's own words and element names only.
    """

    def __init__(self, status: int, text: str, code: str = "invalid", expression: str | None = None) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.code = code
        self.expression = expression


def refuse(where: str, problem: str, status: int = 400, code: str = "invalid") -> BadNotification:
    return BadNotification(status, f"{where}: {problem}", code, expression=where)


@dataclass(frozen=True)
class Parsed:
    shape: str
    envelopes: tuple[Envelope, ...] = ()

    @property
    def acknowledge_only(self) -> bool:
        return not self.envelopes

    @property
    def topic(self) -> bool:
        """A topic-based notification: HAPI posts it as a transaction and wants a Bundle back."""
        return self.shape.startswith("topic-")


# ------------------------------------------------------------------ typed readers


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise refuse(where, "must be a JSON object")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise refuse(where, "must be a JSON array")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise refuse(where, "must be a string")
    return value


def _resource_type(value: Any, where: str) -> str:
    if not TYPE_RE.fullmatch(_string(value, where)):
        raise refuse(where, "is not a FHIR resource type")
    return value


def _fhir_id(value: Any, where: str) -> str:
    if not ID_RE.fullmatch(_string(value, where)):
        raise refuse(where, "is not a valid FHIR id (1-64 letters, digits, '-' or '.')")
    return value


def _event_number(value: Any, where: str) -> str:
    """HAPI sends event numbers as valueString "7"; an integer is accepted too."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**18:
        return str(value)
    if isinstance(value, str) and EVENT_NUMBER_RE.fullmatch(value):
        return str(int(value))
    raise refuse(where, "must be an event number (a non-negative integer or a string of digits)")


def _optional(doc: dict[str, Any], key: str, where: str, read: Callable[[Any, str], T]) -> T | None:
    value = doc.get(key)
    return None if value is None else read(value, f"{where}.{key}")


def _objects(doc: dict[str, Any], key: str, where: str) -> list[tuple[str, dict[str, Any]]]:
    """``doc[key]`` as a list of objects, each with its location; absent means empty."""
    items = _optional(doc, key, where, _list) or []
    return [(f"{where}.{key}[{i}]", _object(item, f"{where}.{key}[{i}]")) for i, item in enumerate(items)]


def _reference(value: Any, where: str) -> tuple[str, str]:
    """``Type/id``, relative or absolute, with or without ``/_history/n``."""
    ref = _split_ref(_string(value, where))
    if ref is None:
        raise refuse(where, "must be a reference Type/id")
    if not TYPE_RE.fullmatch(ref[0]) or not ID_RE.fullmatch(ref[1]):
        raise refuse(where, "must be a reference Type/id with a FHIR resource type and a valid FHIR id")
    return ref


def _split_ref(reference: str) -> tuple[str, str] | None:
    """Any ``.../a/b`` shape, on purpose not ``adapter.fhir.resource.local_reference``: a ``#`` or
    ``urn:`` value with a slash is split too, so :func:`_reference` refuses it with its reason."""
    parts = reference.split("/_history/")[0].rstrip("/").split("/")
    return (parts[-2], parts[-1]) if len(parts) >= 2 else None


# ------------------------------------------------------------------ the body


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_INNERMOST = re.compile(r"\[\]|\{\}")


def bracket_depth(text: str, limit: int) -> str:
    """Whether the JSON text nests within ``limit`` levels: ``ok``, ``too-deep`` or ``unbalanced``.

    Decided on the brackets outside strings without parsing: with strings and scalars removed,
    valid JSON is a balanced bracket sequence, and each pass removes only the innermost pairs. So
    a body thousands of levels deep costs microseconds and never reaches the recursive decoder.
    """
    skeleton = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    for _ in range(limit):
        if not skeleton:
            return "ok"
        shorter = _INNERMOST.sub("", skeleton)
        if shorter == skeleton:
            return "unbalanced"
        skeleton = shorter
    if not skeleton:
        return "ok"
    return "too-deep" if _INNERMOST.search(skeleton) or len(skeleton) > limit else "unbalanced"


def _json(body: bytes, content_type: str | None) -> Any:
    media = (content_type or "").split(";")[0].strip().lower()
    if media and media not in JSON_TYPES:
        raise BadNotification(415, "This Content-Type is not supported; send application/fhir+json", "not-supported")
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadNotification(400, "The body is not valid JSON: it is not UTF-8", "structure") from None
    verdict = bracket_depth(text, MAX_DEPTH)
    if verdict == "too-deep":
        raise BadNotification(400, f"The body is nested deeper than {MAX_DEPTH} levels", "too-costly")
    if verdict == "unbalanced":
        raise BadNotification(400, "The body is not valid JSON: its brackets do not balance", "structure")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadNotification(
            400, f"The body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", "structure"
        ) from None
    except (ValueError, RecursionError):  # e.g. an integer of more than 4300 digits
        raise BadNotification(400, "The body is not valid JSON", "structure") from None


def _resource(doc: Any, where: str = "") -> tuple[str, dict[str, Any]]:
    """A FHIR resource: its type (checked) and the object; ``where`` prefixes locations inside a Bundle."""
    if not isinstance(doc, dict) or "resourceType" not in doc:
        what = "must be a FHIR resource (a JSON object with resourceType)"
        raise BadNotification(400, f"{where}: {what}" if where else f"The body {what}", expression=where or None)
    return _resource_type(doc["resourceType"], f"{where}.resourceType" if where else "resourceType"), doc


def _version(resource: dict[str, Any], where: str) -> str | None:
    meta = _optional(resource, "meta", where, _object)
    return None if meta is None else _optional(meta, "versionId", f"{where}.meta", _fhir_id)


def _path_ref(resource_type: str, resource_id: str) -> None:
    if not TYPE_RE.fullmatch(resource_type):
        raise BadNotification(400, "The path's resource type is not a FHIR resource type")
    if not ID_RE.fullmatch(resource_id):
        raise BadNotification(400, "The path's id is not a valid FHIR id (1-64 letters, digits, '-' or '.')")


def parse_put(resource_type: str, resource_id: str, body: bytes, content_type: str | None) -> Parsed:
    """Classic rest-hook with payload: the body is the resource (its id may be absent or relative)."""
    _path_ref(resource_type, resource_id)
    if not body.strip():
        return Parsed("rest-hook-put", (Envelope("changed", "rest-hook-put", resource_type, resource_id),))
    rtype, resource = _resource(_json(body, content_type))
    if rtype != resource_type:
        raise refuse(f"{ROOT}.resourceType", "differs from the path's resource type")
    body_id = _optional(resource, "id", ROOT, _string)
    if body_id:
        body_id = _fhir_id(body_id.rsplit("/", 1)[-1], f"{ROOT}.id")
        if body_id != resource_id:
            raise refuse(f"{ROOT}.id", "differs from the path's id")
    return Parsed(
        "rest-hook-put",
        (Envelope("changed", "rest-hook-put", resource_type, resource_id, _version(resource, ROOT), resource),),
    )


def parse_delete(resource_type: str, resource_id: str) -> Parsed:
    _path_ref(resource_type, resource_id)
    return Parsed("rest-hook-delete", (Envelope("deleted", "rest-hook-delete", resource_type, resource_id),))


def parse_post(body: bytes, content_type: str | None, *, max_events: int = MAX_EVENTS) -> Parsed:
    """A ping, a topic notification Bundle, or a single resource."""
    if not body.strip():
        return Parsed("rest-hook-ping", (Envelope("ping", "rest-hook-ping"),))
    rtype, doc = _resource(_json(body, content_type))
    if rtype == "Bundle":
        return _parse_bundle(doc, max_events)
    rid = _optional(doc, "id", ROOT, _fhir_id)
    if not rid:
        raise refuse(f"{ROOT}.id", "is required: a posted resource needs an id to be a notification")
    return Parsed("rest-hook-post", (Envelope("changed", "rest-hook-post", rtype, rid, _version(doc, ROOT), doc),))


# ------------------------------------------------------------------ topic-based notifications


@dataclass(frozen=True)
class _Event:
    number: str | None
    focus: tuple[str, str] | None


@dataclass(frozen=True)
class _Status:
    type: str | None
    subscription: str | None  # the Subscription's id
    events: tuple[_Event, ...]


def _names(name: str) -> tuple[str, str]:
    head, *rest = name.split("-")
    return name, head + "".join(w.title() for w in rest)


def _named(items: list[tuple[str, dict[str, Any]]], name: str) -> list[tuple[str, dict[str, Any]]]:
    names = _names(name)
    return [(where, p) for where, p in items if _optional(p, "name", where, _string) in names]


def _value(param: tuple[str, dict[str, Any]] | None) -> tuple[str, Any] | None:
    """The ``value[x]`` of a parameter, with its location."""
    if param is None:
        return None
    where, p = param
    return next(((f"{where}.{k}", v) for k, v in p.items() if k.startswith("value") and v is not None), None)


def _first_value(items: list[tuple[str, dict[str, Any]]], name: str) -> tuple[str, Any] | None:
    return _value(next(iter(_named(items, name)), None))


def _subscription_id(value: tuple[str, Any] | None) -> str | None:
    """``Subscription/<id>`` as a Reference, or a bare reference string."""
    if value is None:
        return None
    where, v = value
    if isinstance(v, dict):
        where, v = f"{where}.reference", v.get("reference")
        if v is None:
            return None
    text = _string(v, where)
    return _reference(text, where)[1] if "/" in text else _fhir_id(text, where)


def _focus(value: tuple[str, Any] | None) -> tuple[str, str] | None:
    if value is None:
        return None
    where, v = value
    focus = _object(v, where)
    if focus.get("reference") is None:
        raise refuse(f"{where}.reference", "is required on a focus")
    return _reference(focus["reference"], f"{where}.reference")


def _check_count(count: int, max_events: int, where: str) -> None:
    if count > max_events:
        raise refuse(
            where, f"carries more than {max_events} events; send them in smaller notifications", 413, "too-costly"
        )


def _status_from_parameters(p: dict[str, Any], where: str, max_events: int) -> _Status:
    params = _objects(p, "parameter", where)
    kind = _first_value(params, "type")
    raw_events = _named(params, "notification-event")
    _check_count(len(raw_events), max_events, f"{where}.parameter")
    events = []
    for ev_where, ev in raw_events:
        parts = _objects(ev, "part", ev_where)
        number = _first_value(parts, "event-number")
        events.append(
            _Event(_event_number(number[1], number[0]) if number else None, _focus(_first_value(parts, "focus")))
        )
    return _Status(
        _string(kind[1], kind[0]) if kind else None,
        _subscription_id(_first_value(params, "subscription")),
        tuple(events),
    )


def _status_from_subscription_status(s: dict[str, Any], where: str, max_events: int) -> _Status:
    raw_events = _objects(s, "notificationEvent", where)
    _check_count(len(raw_events), max_events, f"{where}.notificationEvent")
    events = tuple(
        _Event(
            _optional(e, "eventNumber", ev_where, _event_number),
            _focus((f"{ev_where}.focus", e["focus"]) if e.get("focus") is not None else None),
        )
        for ev_where, e in raw_events
    )
    sub = s.get("subscription")
    return _Status(
        _optional(s, "type", where, _string),
        _subscription_id((f"{where}.subscription", sub) if sub is not None else None),
        events,
    )


@dataclass(frozen=True)
class _Entry:
    ref: tuple[str, str] | None
    resource: dict[str, Any] | None
    version: str | None
    method: str


def _entry(where: str, entry: dict[str, Any]) -> _Entry:
    """One entry after the status: what it refers to, its resource and its request method, all checked."""
    resource = _optional(entry, "resource", where, _object)
    request = _optional(entry, "request", where, _object) or {}
    method = _optional(request, "method", f"{where}.request", _string) or "PUT"
    if method not in METHODS:
        raise refuse(f"{where}.request.method", "is not an HTTP method")
    url = _optional(request, "url", f"{where}.request", _string)
    full_url = _optional(entry, "fullUrl", where, _string)
    ref, version = None, None
    if resource is not None:
        rtype, _ = _resource(resource, f"{where}.resource")
        rid = _optional(resource, "id", f"{where}.resource", _fhir_id)
        version = _version(resource, f"{where}.resource")
        ref = (rtype, rid) if rid else None
    for candidate, location in ((full_url, f"{where}.fullUrl"), (url, f"{where}.request.url")):
        if ref is None and candidate and _split_ref(candidate.split("?")[0]) is not None:
            ref = _reference(candidate.split("?")[0], location)
    return _Entry(ref, resource, version, method)


def _parse_bundle(bundle: dict[str, Any], max_events: int) -> Parsed:
    btype = _optional(bundle, "type", "Bundle", _string)
    if btype not in ("history", "subscription-notification"):
        raise refuse("Bundle.type", "must be history or subscription-notification for a notification")
    entries = _objects(bundle, "entry", "Bundle")
    first_where, first = entries[0] if entries else ("Bundle.entry[0]", {})
    status_where = f"{first_where}.resource"
    status_doc = _optional(first, "resource", first_where, _object) or {}
    rtype = _resource(status_doc, status_where)[0] if "resourceType" in status_doc else None
    if rtype == "Parameters":
        meta = _optional(status_doc, "meta", status_where, _object) or {}
        profiles = [
            _string(p, f"{status_where}.meta.profile[{i}]")
            for i, p in enumerate(_optional(meta, "profile", f"{status_where}.meta", _list) or [])
        ]
        if BACKPORT_STATUS not in profiles and not _named(_objects(status_doc, "parameter", status_where), "type"):
            rtype = None
    if rtype == "Parameters":
        status, shape = _status_from_parameters(status_doc, status_where, max_events), "topic-r4"
    elif rtype == "SubscriptionStatus":
        status = _status_from_subscription_status(status_doc, status_where, max_events)
        shape = "topic-r5" if btype == "subscription-notification" else "topic-r4b"
    else:
        raise refuse(
            status_where, "the notification Bundle's first entry must be a SubscriptionStatus (or backport Parameters)"
        )
    if status.type in ACKNOWLEDGED:
        return Parsed(f"{shape}-{status.type}")
    if status.type != "event-notification":
        raise refuse(
            status_where,
            "is not a known notification type (event-notification, handshake, heartbeat, query-status, query-event)",
        )

    parsed_entries = [_entry(where, entry) for where, entry in entries[1:]]
    by_ref = {e.ref: e for e in parsed_entries if e.ref is not None}
    sub_id = status.subscription or "?"
    envelopes: list[Envelope] = []
    for ev in status.events:
        topic_event = f"Subscription/{sub_id}#{ev.number}" if ev.number is not None else None
        if ev.focus is None:  # content "empty": nothing says what changed; search for it
            envelopes.append(Envelope("ping", f"{shape}-empty", topic_event=topic_event))
            continue
        entry = by_ref.get(ev.focus)
        res = entry.resource if entry else None
        kind: Literal["changed", "deleted"] = "deleted" if entry and entry.method == "DELETE" else "changed"
        envelopes.append(
            Envelope(
                kind,
                f"{shape}-{'full' if res else 'id-only'}",
                ev.focus[0],
                ev.focus[1],
                entry.version if res and entry else None,
                res,
                topic_event=topic_event,
            )
        )
    if not status.events:  # no notification-event: fall back on the entries themselves
        _check_count(len(by_ref), max_events, "Bundle.entry")
        envelopes = [
            Envelope(
                "deleted" if e.method == "DELETE" else "changed",
                f"{shape}-entries",
                ref[0],
                ref[1],
                e.version if e.resource else None,
                e.resource,
            )
            for ref, e in by_ref.items()
        ]
    if not envelopes:
        envelopes = [Envelope("ping", f"{shape}-empty")]
    return Parsed(envelopes[0].shape, tuple(envelopes))
