"""What the MMRpv unit sends: the new BEK, notices, reminders. Built on ``adapter.workflow.confirmations``.

The same mechanism as every other confirmation: ``confirmations.message`` builds the
Communication (about = basedOn = the ServiceRequest, our identifier
``<referral key>-<kind>-<recipient kind>-<occasion>`` via ``confirmations.message_id``), sent once
per occasion (``confirmations.send_once``). Only the texts differ (``messages`` in
mappings/mmrpv.yaml: the MMRpv BEK names a time and a place, the specialist-clinic BEK does not)
and the sender is the MMRpv unit.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from adapter.mappings import codes, directory
from adapter.workflow import confirmations as conf
from adapter.workflow.calendar import add_working_days, parse_moment
from adapter.workflow.core import NOTHING, Context, Plan, Referral, Timer
from adapter.workflow.mmrpv.common import COMMUNICATION, data, key, text, unit_ref
from adapter.workflow.options import language
from adapter.workflow.tasks import find_own


def wording(kind: str, recipient_kind: str, ctx: Context, values: Mapping[str, Any]) -> str:
    """A message text of mappings/mmrpv.yaml; a placeholder without a value stays empty."""
    template = text(data()["messages"][kind][recipient_kind], ctx)
    return template.format_map(defaultdict(str, values))


def values(referral: Referral, **more: Any) -> dict[str, Any]:
    return {"referral": key(referral), "unit": directory().mmrpv.name, **more}


def sent(referral: Referral, kind: str, recipient_kind: str, occasion: str) -> bool:
    return find_own(referral, COMMUNICATION, conf.message_id(referral, kind, recipient_kind, occasion)) is not None


def send(
    referral: Referral,
    ctx: Context,
    *,
    kind: str,
    category: dict[str, Any],
    recipient_kind: str,
    occasion: str,
    words: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> Plan:
    """One message of ``kind`` from the MMRpv unit to one recipient, unless it went out for this occasion."""
    return conf.send_once(
        referral,
        ctx,
        kind=kind,
        recipient_kind=recipient_kind,
        occasion=occasion,
        category=category,
        extra={"sender": unit_ref(), **(extra or {})},
        words=lambda: wording(kind, recipient_kind, ctx, values(referral, **words)),
    )


def notice(
    referral: Referral,
    ctx: Context,
    kind: str,
    recipient_kind: str,
    occasion: str,
    extra: Mapping[str, Any] | None = None,
    **words: Any,
) -> Plan:
    """A notice (category mmr-notification-type ``kind``)."""
    category = codes().concept("notification-type", kind, language(ctx))
    return send(
        referral,
        ctx,
        kind=kind,
        category=category,
        recipient_kind=recipient_kind,
        occasion=occasion,
        words=words,
        extra=extra,
    )


def confirm(referral: Referral, ctx: Context, confirmation_type: str, occasion: str, **words: Any) -> Plan:
    """A referral confirmation (``BEK``...) to each of its recipients (confirmations.yaml ``recipients``)."""
    category = codes().concept("confirmation-type", confirmation_type, language(ctx))
    plan = NOTHING
    for kind in conf.recipients_of(confirmation_type):
        plan += send(
            referral,
            ctx,
            kind=confirmation_type,
            category=category,
            recipient_kind=kind,
            occasion=occasion,
            words=words,
        )
    return plan


# ---------------------------------------------------------------- reminders


@dataclass(frozen=True)
class Reminders:
    """Reminders of one kind and scope: the k-th goes out ``every`` working days after the (k-1)-th
    (the first at ``first``, by default ``every`` working days after ``since``), at most ``most``;
    none after ``deadline``."""

    timer: str
    kind: str
    recipient_kind: str
    scope: str
    every: int
    most: int
    since: datetime
    deadline: datetime | None = None
    first: datetime | None = None

    def first_due(self) -> datetime:
        return self.first or add_working_days(self.since, self.every)

    def occasion(self, k: int) -> str:
        return f"{self.scope}-{k}"


def chase(referral: Referral, ctx: Context, r: Reminders, send_one: Callable[[int], Plan]) -> Plan:
    """Send the reminder that is due (once), and come back for the next one or the deadline.

    A timer that fires early, or again, only re-arms the same timer (the scheduler keeps one per
    name and referral), so replays write nothing.
    """
    done = 0
    while done < r.most and sent(referral, r.kind, r.recipient_kind, r.occasion(done + 1)):
        done += 1
    if done >= r.most:
        return _at(referral, r.timer, r.deadline)
    sent_last = _sent_at(referral, r, done) if done else None
    due = add_working_days(sent_last, r.every) if sent_last else r.first_due()
    if r.deadline is not None and due >= r.deadline:
        return _at(referral, r.timer, r.deadline)
    if ctx.now < due:
        return _at(referral, r.timer, due)
    following = add_working_days(ctx.now, r.every) if done + 1 < r.most else r.deadline
    if r.deadline is not None and following is not None:
        following = min(following, r.deadline)
    return send_one(done + 1) + _at(referral, r.timer, following)


def first_reminder(r: Reminders) -> datetime | None:
    """When the first reminder (or the deadline, without reminders) is due: the timer to arm at the start."""
    if r.most == 0:
        return r.deadline
    due = r.first_due()
    return min(due, r.deadline) if r.deadline is not None else due


def _at(referral: Referral, name: str, due: datetime | None) -> Plan:
    return Plan(timers=(Timer(name, referral.id, due),)) if due is not None else NOTHING


def _sent_at(referral: Referral, r: Reminders, k: int) -> datetime | None:
    message = find_own(referral, COMMUNICATION, conf.message_id(referral, r.kind, r.recipient_kind, r.occasion(k)))
    return parse_moment((message or {}).get("sent"))
