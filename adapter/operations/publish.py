"""Publish one period's MeasureReports to the FHIR server: idempotent, one transaction, no printing.

``publish(settings, figures, period)`` builds the reports (``adapter/flow/measures.py``, pure),
reads what the server already holds for each (searches by ``_id``: each report's id is derived
from its business identifier), and writes only what is new or changed, in one transaction of
``PUT MeasureReport/<id>``: update as create for a new report, an ``ifMatch`` update of the
stored version for a changed one. A report whose content equals the stored one is left alone, so
publishing the same figures twice writes nothing: no new version, no notification.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from adapter.config import Settings
from adapter.fhir.client import FhirClient
from adapter.fhir.resource import Resource, version
from adapter.flow import measures
from adapter.mappings import codes

SERVER_MANAGED = ("id", "meta", "text")
IDS_PER_SEARCH = 50  # keeps each search URL short on any server


@dataclass(frozen=True)
class Published:
    """What one publish did, by business identifier value."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def written(self) -> int:
        return len(self.created) + len(self.updated)


def _identifier(report: Resource) -> str:
    return str(report["identifier"][0]["value"])


def _pruned(value: Any) -> Any:
    """``value`` without empty arrays, objects and strings, at any depth: FHIR JSON has no empty
    element (HAPI drops a ``"population": []`` on write), so a stored report never shows one."""
    if isinstance(value, dict):
        pruned = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v not in ([], {}, "", None)}
    if isinstance(value, list):
        return [v for v in (_pruned(v) for v in value) if v not in ([], {}, "", None)]
    return value


def _content(resource: Resource) -> Resource:
    """What a report says, for comparison: server-managed elements dropped, empty elements
    dropped (a server drops them on write), and contained ids numbered by position (a server may
    renumber them on write, as HAPI did before 8.2), the local references to them following.
    Numbers compare by value, so a server's ``4`` for our ``4.0`` is no change."""
    content = _pruned({k: v for k, v in resource.items() if k not in SERVER_MANAGED})
    text = json.dumps(content, sort_keys=True)
    for i, contained in enumerate(content.get("contained") or ()):
        old = str(contained.get("id", "")).lstrip("#")
        text = text.replace(f'"#{old}"', f'"#contained-{i}"').replace(f'"id": "{old}"', f'"id": "contained-{i}"')
    return dict(json.loads(text))


def stored_reports(fhir: FhirClient, ids: Sequence[str]) -> dict[str, Resource]:
    """The reports the server holds among ``ids``, by id (one search per ``IDS_PER_SEARCH``)."""
    found: dict[str, Resource] = {}
    for i in range(0, len(ids), IDS_PER_SEARCH):
        chunk = ids[i : i + IDS_PER_SEARCH]
        params = {"_id": ",".join(chunk), "_count": str(len(chunk))}
        for r in fhir.search("MeasureReport", params):
            if r.get("resourceType") == "MeasureReport" and r.get("id") in chunk:
                found[str(r["id"])] = r
    return found


def transaction(reports: Sequence[Resource], stored: Mapping[str, Resource]) -> tuple[Resource, Published]:
    """The transaction that brings the server to ``reports`` (pure), and what it will do."""
    source = f"{codes().base}/Device/mmr-adapter#publish"
    done = Published()
    entries: list[Resource] = []
    for report in reports:
        ident, old = _identifier(report), stored.get(report["id"])
        if old is not None and _content(old) == _content(report):
            done.unchanged.append(ident)
            continue
        request = {"method": "PUT", "url": f"MeasureReport/{report['id']}"}
        if old is not None and version(old):
            request["ifMatch"] = f'W/"{version(old)}"'
        entries.append({"resource": {**report, "meta": {"source": source}}, "request": request})
        (done.created if old is None else done.updated).append(ident)
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}, done


def publish(
    settings: Settings,
    figures: Mapping[str, Any],
    period: measures.Period,
    *,
    waiting_beyond: Mapping[str, Sequence[str]] | None = None,
    fhir: FhirClient | None = None,
) -> Published:
    """Write the period's MeasureReports (see the module's docstring); ``fhir`` defaults to the
    settings' server. Raises ``ValueError`` when the figures are for another period."""
    reports = measures.reports(figures, period, waiting_beyond=waiting_beyond)
    own = fhir is None
    if fhir is None:
        from adapter.wiring import fhir_client

        fhir = fhir_client(settings, fresh=True)
    try:
        bundle, done = transaction(reports, stored_reports(fhir, [r["id"] for r in reports]))
        if bundle["entry"]:
            fhir.transaction(bundle)
        return done
    finally:
        if own:
            fhir.close()
