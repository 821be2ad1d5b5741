"""``profiles/questionnaire-criteria.yaml``: which intake answers feed which MMRpv criterion.

Loaded here with ``{base}`` filled in from codes.yaml, so its reader never hard-codes the base.
"""

from __future__ import annotations

from typing import Any

import yaml

from adapter.conformance.package import CRITERIA_FILE, profiles_dir
from adapter.mappings import codes


def load_criteria_map() -> dict[str, Any]:
    """The map: ``questionnaire``, ``version``, ``criteria`` (per criterion: items with met/not_met), ``nrs``."""
    with (profiles_dir() / CRITERIA_FILE).open(encoding="utf-8") as fh:
        loaded: dict[str, Any] = yaml.safe_load(fh)
    return codes().fill(loaded)
