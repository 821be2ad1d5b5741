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

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from adapter.mappings import codes, directory, load
from adapter.workflow.core import NOTHING, Context, Plan, Referral, Write, create
from adapter.workflow.options import LANGUAGES, language
from adapter.workflow.referral import (
    clinic_reference,
    patient_reference,
    performer_clinic,
    referral_key,
    referrer_reference,
    subject_reference,
    unit_reference,
)
from adapter.workflow.tasks import find_own

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
    """Who a recipient kind is for this referral; ``None`` when the referral gives no usable reference.

    ``referrer`` and ``patient`` come from the referral, ``clinic`` is its specialist clinic, ``unit``
    the MMRpv unit and ``admin`` its administrative function.
    """
    if kind == "referrer":
        return referrer_reference(referral)
    if kind == "patient":
        return patient_reference(referral)
    if kind in ("unit", "admin"):
        d = directory()
        return unit_reference(d.mmrpv if kind == "unit" else d.mmrpv_admin, "Organization")
    clinic = performer_clinic(referral)
    return clinic_reference(clinic) if clinic else None


def base_values(referral: Referral) -> dict[str, Any]:
    clinic = performer_clinic(referral)
    return {
        "referral": referral_key(referral.service_request),
        "clinic": clinic.name if clinic else "",
        "unit": directory().mmrpv.name,
    }


def message_id(referral: Referral, kind: str, recipient_kind: str, occasion: str) -> str:
    return f"{referral_key(referral.service_request)}-{kind}-{recipient_kind}-{occasion}"


def message(
    referral: Referral,
    ctx: Context,
    *,
    identifier: str,
    category: dict[str, Any],
    recipients: list[dict[str, Any]],
    payload: str,
    extra: Mapping[str, Any] | None = None,
) -> Write:
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


def send_once(
    referral: Referral,
    ctx: Context,
    *,
    kind: str,
    recipient_kind: str,
    occasion: str,
    category: dict[str, Any],
    words: Callable[[], str],
    extra: Mapping[str, Any] | None = None,
    also_to: list[dict[str, Any]] | None = None,
) -> Plan:
    """One message of ``kind`` to one recipient kind, unless it went out for this occasion already.

    Every confirmation and notice goes through here; ``words`` makes its text, only when it is sent.
    """
    ident = message_id(referral, kind, recipient_kind, occasion)
    if find_own(referral, "communication", ident):
        return NOTHING
    to = recipient(referral, recipient_kind)
    if to is None:
        return Plan(notes=(f"{kind} to the {recipient_kind} not sent: the referral names no usable {recipient_kind}",))
    write = message(
        referral,
        ctx,
        identifier=ident,
        category=category,
        recipients=[to, *(also_to or ())],
        payload=words(),
        extra=extra,
    )
    return Plan(writes=(write,), notes=(f"{kind} to the {recipient_kind} ({occasion})",))


def confirm(
    referral: Referral,
    ctx: Context,
    confirmation_type: str,
    occasion: str,
    extra: Mapping[str, Any] | None = None,
    **values: Any,
) -> Plan:
    """The confirmations of one type and occasion, to each of its recipients, that are not out yet."""
    plan = NOTHING
    lang = language(ctx)
    category = codes().concept("confirmation-type", confirmation_type, lang)
    for kind in recipients_of(confirmation_type):

        def words(k: str = kind) -> str:
            return text("confirmations", confirmation_type, k, lang, {**base_values(referral), **values})

        plan += send_once(
            referral,
            ctx,
            kind=confirmation_type,
            recipient_kind=kind,
            occasion=occasion,
            category=category,
            extra=extra,
            words=words,
        )
    return plan


def notify(
    referral: Referral,
    ctx: Context,
    notice: str,
    recipient_kind: str,
    occasion: str,
    extra: Mapping[str, Any] | None = None,
    also_to: list[dict[str, Any]] | None = None,
    variant: str | None = None,
    **values: Any,
) -> Plan:
    """A notice (overdue, questionnaire request, reminders) to one recipient kind, once per occasion.
    ``variant``: the notice's text for ``<recipient kind>-<variant>`` (the same notice, and the same
    once-per-occasion identifier, in words for another situation)."""
    lang = language(ctx)
    words_for = f"{recipient_kind}-{variant}" if variant else recipient_kind
    return send_once(
        referral,
        ctx,
        kind=notice,
        recipient_kind=recipient_kind,
        occasion=occasion,
        category=codes().concept("notification-type", notice, lang),
        extra=extra,
        also_to=also_to,
        words=lambda: text("notices", notice, words_for, lang, {**base_values(referral), **values}),
    )


def closing_text(code: str, lang: str, values: Mapping[str, Any]) -> str:
    template = texts()["closing"][code]
    return str(template.get(lang) or template["sv"]).format_map(_Blank(values))


def template(section: str, key: str, lang: str, values: Mapping[str, Any]) -> str:
    """A text of ``section`` (no recipient level, as ``held``) in ``lang``, its placeholders filled."""
    entry = texts()[section][key]
    return str(entry.get(lang) or entry["sv"]).format_map(_Blank(values))


def every_language(section: str, keys: Iterable[str], values: Mapping[str, Any] | None = None) -> set[str]:
    """Every text of ``keys`` in ``section``, in every language, filled with ``values``: how a step
    knows a text it wrote before (to keep, replace or clear it), whichever language it was written in."""
    return {template(section, key, lang, values or {}) for key in keys for lang in LANGUAGES}


def reason(key: str, lang: str) -> str:
    """A statusReason text the adapter writes (``reasons`` in confirmations.yaml)."""
    entry = texts()["reasons"][key]
    return str(entry.get(lang) or entry["sv"])
