"""The operators' now-figures: the flow figures at a snapshot, as Prometheus gauges.

Pure: a figures dict (``figures.compute``'s, the flow contract) in, samples out. beat computes the
figures from the flow store on a schedule (``adapter/pipeline/flow_job.py``), keeps the samples in
Redis, and the API's ``/metrics`` turns them into gauge families at scrape time
(:func:`families`), like every other worker metric. They are never counted up in Redis from
events: a count kept beside the record drifts from it, the store is derived from the record.

Labels are bounded: an organisation's HSA id (the directory's, a dozen at most), an age bucket, a
step (a Task kind and business status of mappings/task-states.yaml).
No referral identifier is ever a label; the referrals nobody holds are counted, and named only by
``mmr-adapter flow`` and its page.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily

WAITING = "mmr_flow_waiting_referrals"
WAITING_BY_STEP = "mmr_flow_waiting_referrals_by_step"
OVERDUE = "mmr_flow_reviews_overdue"
NOBODY = "mmr_flow_nobody_responsible"
NOBODY_BY_ORGANISATION = "mmr_flow_nobody_responsible_by_organization"
COMPUTED = "mmr_flow_figures_timestamp_seconds"

# name -> (help, label names): every family, in the order /metrics shows them.
FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    WAITING: (
        "Referrals waiting for their first visit now, by organisation and days waited since the referral was "
        "issued (age: 0-30, 31-60, 61-90, over-90; patient-chosen apart, outside the care guarantee)",
        ("organization", "kind", "age"),
    ),
    WAITING_BY_STEP: (
        "Referrals waiting for their first visit now, region-wide, by the step they wait at (the kind and "
        "business status of the Task holding their next step, or nobody) and by days waited (age)",
        ("step", "age"),
    ),
    OVERDUE: ("Open reviews past their deadline now, by specialist clinic", ("organization",)),
    NOBODY: ("Referrals nobody is responsible for now, region-wide (must be 0)", ()),
    NOBODY_BY_ORGANISATION: (
        "Referrals nobody is responsible for now, by the organisation they last arrived at",
        ("organization", "kind"),
    ),
    COMPUTED: ("The snapshot moment of the flow figures these gauges show (Unix time)", ()),
}

AGES = {
    "waiting_0_30": "0-30",
    "waiting_31_60": "31-60",
    "waiting_61_90": "61-90",
    "waiting_over_90": "over-90",
    "waiting_patient_chosen": "patient-chosen",
}


@dataclass(frozen=True)
class Sample:
    name: str
    labels: tuple[str, ...]  # the values of FAMILIES[name]'s label names, in order
    value: float

    def to_json(self) -> list[Any]:
        return [self.name, list(self.labels), self.value]

    @classmethod
    def from_json(cls, data: Sequence[Any]) -> Sample:
        name, labels, value = data
        return cls(str(name), tuple(str(v) for v in labels), float(value))


def samples(figures: Mapping[str, Any]) -> list[Sample]:
    """Every gauge sample the figures give: per organisation, and the region's nobody-responsible."""
    found: list[Sample] = []
    for org in figures.get("organisations") or ():
        hsa, kind = str(org.get("organization") or ""), str(org.get("kind") or "")
        if not hsa:
            continue
        found += [Sample(WAITING, (hsa, kind, age), _count(org.get(key))) for key, age in AGES.items()]
        if kind == "clinic":  # reviews happen at the specialist clinics only
            found.append(Sample(OVERDUE, (hsa,), _count(org.get("reviews_overdue_now"))))
        found.append(Sample(NOBODY_BY_ORGANISATION, (hsa, kind), float(len(org.get("nobody_responsible") or ()))))
    found += [
        Sample(WAITING_BY_STEP, (str(row["step"]), str(row["age"])), _count(row.get("referrals")))
        for row in figures.get("waiting_by_step") or ()
    ]
    found.append(Sample(NOBODY, (), float(len(figures.get("nobody_responsible") or ()))))
    at = figures.get("at")
    if at:
        found.append(Sample(COMPUTED, (), datetime.fromisoformat(str(at)).timestamp()))
    return found


def families(found: Iterable[Sample]) -> list[GaugeMetricFamily]:
    """The samples as Prometheus gauge families; a family without samples is left out."""
    by_name: dict[str, list[Sample]] = {}
    for sample in found:
        if sample.name in FAMILIES:  # a name this version no longer exports is dropped, not guessed at
            by_name.setdefault(sample.name, []).append(sample)
    out = []
    for name, (description, labels) in FAMILIES.items():
        if name not in by_name:
            continue
        family = GaugeMetricFamily(name, description, labels=list(labels))
        for sample in by_name[name]:
            family.add_metric(list(sample.labels), sample.value)
        out.append(family)
    return out


def _count(value: Any) -> float:
    return float(value or 0)
