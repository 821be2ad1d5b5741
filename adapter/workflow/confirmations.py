"""Referral confirmations (BEK, VID, KOM, AVV, AVB) and notices, as Communications.

Pure builders, no steps: the step that reaches an outcome plans its own confirmations here, so
the confirmation is in the same transaction as the outcome it confirms.

Each Communication is about the ServiceRequest twice over: ``about`` (what it is about) and
``basedOn`` (R4 Communication has no ``about`` search parameter, so ``basedOn`` is how the
referral's load finds it: ``_revinclude=Communication:based-on``). Exactly once per referral,
type, recipient and occasion: the identifier ``<referral key>-<type>-<recipient kind>-<occasion>``
is checked against the loaded state and guarded on the server by ``If-None-Exist``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from adapter.mappings import codes, directory, load
from adapter.workflow.core import NOTHING, Context, Plan, Referral, Write, create
from adapter.workflow.review.options import language
from adapter.workflow.review.referral import (
    clinic_reference,
    patient_reference,
    performer_clinic,
    referral_key,
    referrer_reference,
    subject_reference,
)
from adapter.workflow.review.state import find_own

RecipientKind = Literal["referrer", "patient", "clinic"]
CONFIRMATION_TYPES = ("BEK", "VID", "KOM", "AVV", "AVB")


class _Blank(dict[str, Any]):
    """Format values where a placeholder the message has no value for stays empty."""

    def __missing__(self, key: str) -> str:
        return ""


def texts() -> dict[str, Any]:
    return load("confirmations")


def text(section: str, kind: str, recipient: str, lang: str, values: Mapping[str, Any]) -> str:
    """A message text from ``mappings/confirmations.yaml``, in ``lang`` (Swedish if missing)."""
    template = texts()[section][kind][recipient]
    return str(template.get(lang) or template["sv"]).format_map(_Blank(values))


def recipients_of(confirmation_type: str) -> tuple[str, ...]:
    return tuple(texts()["recipients"].get(confirmation_type) or ("referrer", "patient"))


def recipient(referral: Referral, kind: str) -> dict[str, Any] | None:
    """Who a recipient kind is for this referral; ``None`` when the referral gives no usable reference."""
    if kind == "referrer":
        return referrer_reference(referral)
    if kind == "patient":
        return patient_reference(referral)
    clinic = performer_clinic(referral)
    return clinic_reference(clinic) if clinic else None


def base_values(referral: Referral) -> dict[str, Any]:
    clinic = performer_clinic(referral)
    return {"referral": referral_key(referral.service_request), "clinic": clinic.name if clinic else "",
            "unit": directory().mmrpv.name}


def message_id(referral: Referral, kind: str, recipient_kind: str, occasion: str) -> str:
    return f"{referral_key(referral.service_request)}-{kind}-{recipient_kind}-{occasion}"


def message(referral: Referral, ctx: Context, *, identifier: str, category: dict[str, Any],
            recipients: list[dict[str, Any]], payload: str, extra: Mapping[str, Any] | None = None) -> Write:
    """A completed Communication about the referral, from the clinic, carrying our identifier."""
    clinic = performer_clinic(referral)
    body: dict[str, Any] = {
        "resourceType": "Communication",
        "status": "completed",
        "category": [category],
        "subject": subject_reference(referral),
        "about": [{"reference": referral.reference}],
        "basedOn": [{"reference": referral.reference}],
        "recipient": recipients,
        "sender": clinic_reference(clinic) if clinic else None,
        "sent": ctx.now.isoformat(),
        "payload": [{"contentString": payload}],
        **(extra or {}),
    }
    body = {k: v for k, v in body.items() if v is not None}
    return create(body, codes().identifier_system("communication"), identifier)


def confirm(referral: Referral, ctx: Context, confirmation_type: str, occasion: str,
            extra: Mapping[str, Any] | None = None, **values: Any) -> Plan:
    """The confirmations of one type and occasion, to each of its recipients, that are not out yet."""
    plan = NOTHING
    lang = language(ctx)
    category = codes().concept("confirmation-type", confirmation_type, lang)
    for kind in recipients_of(confirmation_type):
        ident = message_id(referral, confirmation_type, kind, occasion)
        if find_own(referral, "communication", ident):
            continue
        to = recipient(referral, kind)
        if to is None:
            plan += Plan(notes=(f"{confirmation_type} to the {kind} not sent: the referral names no usable {kind}",))
            continue
        payload = text("confirmations", confirmation_type, kind, lang, {**base_values(referral), **values})
        write = message(referral, ctx, identifier=ident, category=category, recipients=[to], payload=payload,
                        extra=extra)
        plan += Plan(writes=(write,), notes=(f"{confirmation_type} to the {kind} ({occasion})",))
    return plan


def notify(referral: Referral, ctx: Context, notice: str, recipient_kind: str, occasion: str,
           extra: Mapping[str, Any] | None = None, also_to: list[dict[str, Any]] | None = None,
           **values: Any) -> Plan:
    """A notice (overdue, questionnaire request, reminders) to one recipient kind, once per occasion."""
    ident = message_id(referral, notice, recipient_kind, occasion)
    if find_own(referral, "communication", ident):
        return NOTHING
    to = recipient(referral, recipient_kind)
    if to is None:
        why = f"the referral names no usable {recipient_kind}"
        return Plan(notes=(f"{notice} to the {recipient_kind} not sent: {why}",))
    lang = language(ctx)
    payload = text("notices", notice, recipient_kind, lang, {**base_values(referral), **values})
    write = message(referral, ctx, identifier=ident, category=codes().concept("notification-type", notice, lang),
                    recipients=[to, *(also_to or ())], payload=payload, extra=extra)
    return Plan(writes=(write,), notes=(f"{notice} to the {recipient_kind} ({occasion})",))


def closing_text(code: str, lang: str, values: Mapping[str, Any]) -> str:
    template = texts()["closing"][code]
    return str(template.get(lang) or template["sv"]).format_map(_Blank(values))


def reason(key: str, lang: str) -> str:
    """A statusReason text the adapter writes (``reasons`` in confirmations.yaml)."""
    entry = texts()["reasons"][key]
    return str(entry.get(lang) or entry["sv"])
