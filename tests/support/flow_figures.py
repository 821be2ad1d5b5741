"""A flow figures dict as ``adapter/flow/figures.compute`` returns it (the flow contract), built by
hand for the tests of what reads one: the page, the gauges, the alerts' live /metrics."""

from __future__ import annotations

from typing import Any

from adapter.flow.figures import empty

HSA_H, HSA_L, HSA_S = "SE2321000255-SMH1", "SE2321000255-SML1", "SE2321000255-MMRPV-HBG"
# An organisation name with markup in it: escaped, it is text; unescaped, it would ask the proxy for a URL.
HOSTILE = 'Lund <img src="http://flow-page.invalid/leak.png"><script>document.title="x"</script>'


def organisation(hsa: str | None, name: str, kind: str, **figures: Any) -> dict[str, Any]:
    """One organisation's figures as the flow contract shapes them: every key, zero or null unless given."""
    row = empty(hsa, name, kind)
    row.update(figures)
    return row


def figures() -> dict[str, Any]:
    hassleholm = organisation(
        HSA_H,
        "Smärtrehabilitering Hässleholm",
        "clinic",
        reviews_decided=12,
        reviews_within_deadline=11,
        review_median_working_days=2.5,
        reviews_overdue_now=1,
        waiting_now=30,
        waiting_0_30=10,
        waiting_31_60=8,
        waiting_61_90=7,
        waiting_over_90=5,
        waiting_patient_chosen=2,
        first_visits=9,
        first_visit_median_days=41.0,
        first_visit_p90_days=80.5,
        first_visit_max_days=95,
        first_visits_within_guarantee=8,
        on_hold_median_days={"referrer": 4.5, "patient": 9.0},
        organisations_per_referral={"1": 20, "2": 5, "3": 1},
        re_referrals_after_rejection=1,
        nobody_responsible=["MMR-2026-0042"],
    )
    lund = organisation(
        HSA_L,
        HOSTILE,
        "clinic",
        reviews_decided=4,
        reviews_within_deadline=2,
        waiting_now=6,
        waiting_0_30=6,
        organisations_per_referral={"1": 4},
    )
    site = organisation(HSA_S, "Rehabiliteringsmottagning Helsingborg", "site", waiting_now=3, waiting_61_90=3)
    region = organisation(
        None,
        "Region",
        "region",
        reviews_decided=16,
        reviews_within_deadline=13,
        reviews_overdue_now=1,
        waiting_now=39,
        waiting_0_30=16,
        waiting_31_60=8,
        waiting_61_90=10,
        waiting_over_90=5,
        waiting_patient_chosen=2,
        organisations_per_referral={"1": 24, "2": 5, "3": 1},
        nobody_responsible=["MMR-2026-0042"],
    )
    return {
        "at": "2026-12-01T00:00:00+01:00",
        "from": "2026-11-01",
        "to": "2026-11-30",
        "guarantee_days": 90,
        "organisations": [hassleholm, lund, site],
        "region": region,
        "weekly_reviews": [
            {"organization": HSA_H, "week": "2026-W45", "decided": 3, "within_deadline": 3},
            {"organization": HSA_H, "week": "2026-W46", "decided": 4, "within_deadline": 3},
            {"organization": HSA_L, "week": "2026-W46", "decided": 4, "within_deadline": 2},
        ],
        "waiting_by_step": [
            {"step": "booking/awaiting-booking", "age": "over-90", "referrals": 5},
            {"step": "nobody", "age": "0-30", "referrals": 1},
            {"step": "review/awaiting-supplement", "age": "0-30", "referrals": 9},
        ],
        "nobody_responsible": ["MMR-2026-0042"],
    }
