"""Workflow options: ``Context.options`` first, then the defaults in ``mappings/review.yaml``, the
``options`` of ``mappings/mmrpv.yaml`` (whose keys all start ``mmrpv_``) and ``questionnaires``, the
``moments`` of ``mappings/questionnaires.yaml``.

The worker loads review.yaml into the options; the fallback here keeps pure tests and any shell
that passes partial options on the documented defaults.
"""

from __future__ import annotations

from typing import Any

from adapter.mappings import load
from adapter.workflow.core import Context

LANGUAGES = ("sv", "en")


def defaults() -> dict[str, Any]:
    return {**load("review"), **load("mmrpv")["options"], "questionnaires": load("questionnaires")["moments"]}


def option(ctx: Context, key: str) -> Any:
    """One option; a ``KeyError`` here is a programming error (a key missing from the defaults)."""
    if key in ctx.options:
        return ctx.options[key]
    return defaults()[key]


def number(ctx: Context, key: str) -> int:
    """A non-negative whole number option; an unreadable value falls back to the default."""
    try:
        return max(0, int(option(ctx, key)))
    except (TypeError, ValueError):
        return max(0, int(defaults()[key]))


def flag(ctx: Context, key: str) -> bool:
    value = option(ctx, key)
    return value.strip().lower() in ("1", "true", "yes", "on") if isinstance(value, str) else bool(value)


def language(ctx: Context) -> str:
    """Message language: ``sv`` unless ``Context.options["language"]`` asks for ``en``."""
    lang = str(ctx.options.get("language") or "sv").lower()[:2]
    return lang if lang in LANGUAGES else "sv"
