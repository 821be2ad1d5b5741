"""The operators' now-gauges: the figures turned into samples (pure), and those samples kept in a
real Redis and exported by the API's collector as Prometheus gauges at scrape time."""

from __future__ import annotations

from copy import deepcopy

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from adapter.flow import gauges
from adapter.flow.gauges import COMPUTED, NOBODY, NOBODY_BY_ORGANISATION, OVERDUE, WAITING, WAITING_BY_STEP, Sample
from adapter.intake.metrics import PipelineCollector
from adapter.pipeline.state import State
from tests.support.flow_figures import HSA_H, HSA_L, HSA_S, figures


def by_key(found: list[Sample]) -> dict[tuple[str, tuple[str, ...]], float]:
    return {(s.name, s.labels): s.value for s in found}


def test_the_figures_give_waiting_by_age_overdue_per_clinic_and_nobody_responsible() -> None:
    found = by_key(gauges.samples(figures()))
    assert found[(WAITING, (HSA_H, "clinic", "0-30"))] == 10
    assert found[(WAITING, (HSA_H, "clinic", "31-60"))] == 8
    assert found[(WAITING, (HSA_H, "clinic", "61-90"))] == 7
    assert found[(WAITING, (HSA_H, "clinic", "over-90"))] == 5
    assert found[(WAITING, (HSA_H, "clinic", "patient-chosen"))] == 2
    assert found[(WAITING, (HSA_S, "site", "61-90"))] == 3
    # Reviews are the specialist clinics': an MMRpv site has no overdue-review series.
    assert {labels for name, labels in found if name == OVERDUE} == {(HSA_H,), (HSA_L,)}
    assert found[(OVERDUE, (HSA_H,))] == 1 and found[(OVERDUE, (HSA_L,))] == 0
    assert found[(NOBODY_BY_ORGANISATION, (HSA_H, "clinic"))] == 1
    assert found[(NOBODY_BY_ORGANISATION, (HSA_L, "clinic"))] == 0
    assert found[(NOBODY, ())] == 1
    # Where the queue stands, region-wide: the step holding each waiting referral, by age.
    assert {labels: v for (name, labels), v in found.items() if name == WAITING_BY_STEP} == {
        ("booking/awaiting-booking", "over-90"): 5,
        ("nobody", "0-30"): 1,
        ("review/awaiting-supplement", "0-30"): 9,
    }
    assert found[(COMPUTED, ())] == 1796079600.0  # 2026-12-01T00:00:00+01:00 (date -d ... +%s)
    # The region is no organisation series (a sum() over them would count it twice).
    assert all(labels[0] for name, labels in found if name in (WAITING, OVERDUE, NOBODY_BY_ORGANISATION))


def test_no_referral_identifier_becomes_a_label() -> None:
    many = deepcopy(figures())
    many["nobody_responsible"] = [f"MMR-2026-{n:04}" for n in range(50)]
    found = gauges.samples(many)
    assert by_key(found)[(NOBODY, ())] == 50
    assert not [s for s in found for v in s.labels if v.startswith("MMR-")]


def test_samples_survive_their_json_round_trip() -> None:
    found = gauges.samples(figures())
    assert [Sample.from_json(s.to_json()) for s in found] == found


def test_the_collector_exports_what_beat_kept_in_redis(state: State) -> None:
    """Kept in the test Redis as beat keeps them, read by the API's collector as at a scrape."""
    registry = CollectorRegistry()
    registry.register(PipelineCollector(state, lambda: 0))
    state.flow.set([])
    before = {f.name for f in text_string_to_metric_families(generate_latest(registry).decode())}
    assert not {name for name in before if name.startswith("mmr_flow_")}  # none before the first run
    state.flow.set([s.to_json() for s in gauges.samples(figures())])
    text = generate_latest(registry).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families[WAITING].type == "gauge"
    waiting = {(s.labels["organization"], s.labels["age"]): s.value for s in families[WAITING].samples}
    assert waiting[(HSA_H, "over-90")] == 5 and waiting[(HSA_S, "61-90")] == 3
    assert [s.value for s in families[NOBODY].samples] == [1.0]
    assert {s.labels["organization"]: s.value for s in families[OVERDUE].samples} == {HSA_H: 1.0, HSA_L: 0.0}
    # The next run replaces the samples whole: a referral taken in hand leaves nobody_responsible at 0.
    held = deepcopy(figures())
    held["nobody_responsible"] = []
    held["organisations"][0]["nobody_responsible"] = []
    state.flow.set([s.to_json() for s in gauges.samples(held)])
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    assert [s.value for s in families[NOBODY].samples] == [0.0]
    assert all(s.value == 0 for s in families[NOBODY_BY_ORGANISATION].samples)
