"""``profiles/questionnaire-criteria.yaml``: which intake answers feed which MMRpv criterion.

Loaded here with ``{base}`` filled in from codes.yaml, so its reader never hard-codes the base.
"""

from __future__ import annotations

from typing import Any

import yaml

from adapter.conformance.package import CRITERIA_FILE, profiles_dir
from adapter.mappings import codes


def _fill(value: Any, base: str) -> Any:
    if isinstance(value, str):
        return value.replace("{base}", base)
    if isinstance(value, list):
        return [_fill(v, base) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, base) for k, v in value.items()}
    return value


def load_criteria_map() -> dict[str, Any]:
    """The map: ``questionnaire``, ``version``, ``criteria`` (per criterion: items with met/not_met), ``nrs``."""
    with (profiles_dir() / CRITERIA_FILE).open(encoding="utf-8") as fh:
        return _fill(yaml.safe_load(fh), codes().base)
