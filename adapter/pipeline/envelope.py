"""What travels on the queue: one event, with where it came from and how to recognise a replay."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from adapter.logs import new_correlation_id

Kind = Literal["changed", "deleted", "ping", "timer"]


@dataclass(frozen=True)
class Envelope:
    kind: Kind
    shape: str  # which notification shape (or job) produced it: for metrics and logs
    resource_type: str | None = None
    resource_id: str | None = None
    version_id: str | None = None
    resource: dict[str, Any] | None = None
    timer: str | None = None
    topic_event: str | None = None  # "Subscription/<id>#<event-number>" for topic notifications
    correlation_id: str = field(default_factory=new_correlation_id)
    received_at: float = field(default_factory=time.time)

    @property
    def dedup_keys(self) -> tuple[str, ...]:
        """Keys saying this event was processed already, checked before any work.

        Only keys the worker marked are ever found, and the worker marks only versions it read from
        the server itself (:meth:`processed_key`), so a forged or stale ``versionId`` in a
        notification can skip nothing but a version really processed. Topic event numbers are no
        identity (HAPI restarts them at 1) and are never part of a key.
        """
        if self.kind == "timer":
            return (f"timer:{self.resource_id}|{self.timer}@{self.version_id}",)
        if self.resource_type and self.resource_id and self.version_id:
            return (self.processed_key(self.version_id),)
        return ()

    def processed_key(self, server_version: str) -> str:
        """The key to mark once the resource's ``server_version`` (read from the server) was processed."""
        return f"{self.kind}:{self.resource_type}/{self.resource_id}/_history/{server_version}"

    @property
    def event_number(self) -> tuple[str, int] | None:
        """(subscription, event number) of a topic notification: used only to notice gaps and restarts."""
        if not self.topic_event or "#" not in self.topic_event:
            return None
        subscription, _, number = self.topic_event.rpartition("#")
        return (subscription, int(number)) if number.isdigit() else None

    @property
    def label(self) -> str:
        """Safe to log: type, id and version, never content."""
        if self.kind == "timer":
            return f"timer {self.timer} for ServiceRequest/{self.resource_id}"
        if self.kind == "ping":
            return "ping"
        return f"{self.kind} {self.resource_type}/{self.resource_id}" + (
            f"/_history/{self.version_id}" if self.version_id else ""
        )

    def to_dict(self) -> dict[str, Any]:
        """The fields as they are, for a message or a dead letter serialised at once (``asdict`` would
        deep-copy the resource first: a tenth of the API's CPU per notification)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Envelope:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
