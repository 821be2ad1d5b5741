"""The flow figures end to end: the routine's journeys on a real FHIR server, the store made from
it, the figures checked against a hand computation from the journeys' known moments.

The journeys of ``tests/support/journeys.py`` (the real ROUTINE on a test clock, version by
version) are written to the session's server (the sandbox, or HAPI with MMR_TEST_FHIR=hapi: this
file runs on both), the store is rebuilt from it, and every figure of every organisation, the
region, the weekly reviews and the owner chains are compared with what the comments below count by
hand. The same record loaded into a store WITHOUT a server (``store.load``, as a bulk export would
be) gives the same figures: so the figures on HAPI equal the figures on the sandbox. A further day
(one referral decided, one booked) read by an incremental refresh gives what a rebuild gives.

The session's server holds other tests' journeys too (the same dates, other identifiers): each
store here is cut to this module's referrals before the figures are computed (:func:`only`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import date
from typing import Any

import duckdb
import pytest

from adapter.fhir.client import FhirClient
from adapter.flow import figures, store
from adapter.mappings import directory
from tests.support.journeys import (
    ANGELHOLM,
    HASSLEHOLM,
    HBG,
    LUND,
    MLM,
    Builder,
    Journey,
    by_name,
    day,
    install_directory,
    journeys,
    record,
    write,
)

TODAY = date(2026, 12, 7)  # the calendar table's reach only
UNIT = directory().mmrpv.hsa_id
KSD = directory().sites[2].hsa_id
# The first snapshot: after every journey's last moment (the programme start 14 April, the answer,
# the decisions of 9 April), before the further day. The period: March and April, so every journey
# arrives, is decided, held or visited in it.
AT = day(2026, 5, 4, 0)
FROM, TO = date(2026, 3, 1), date(2026, 4, 30)
# The second snapshot, after the further day (Tue 5 May) and the visit it booked (Tue 12 May).
AT2 = day(2026, 5, 13, 0)
FROM2, TO2 = date(2026, 3, 1), date(2026, 5, 31)


def only(con: duckdb.DuckDBPyConnection, found: list[Journey]) -> duckdb.DuckDBPyConnection:
    """The store cut to these journeys' referrals (the server holds other tests' too)."""
    ids = [j.referral for j in found]
    for table in ("mmr_referral", "mmr_task_version", "mmr_appointment", "mmr_careplan"):
        con.execute(f"DELETE FROM {table} WHERE referral IS NULL OR NOT list_contains(?, referral)", [ids])
    return con


def loaded(found: list[Journey]) -> duckdb.DuckDBPyConnection:
    """A store made without a server, from the very record written to it."""
    con = store.open_store(":memory:")
    resources, tasks = record(found)
    store.load(con, resources, tasks, TODAY)
    return con


def further_day(found: list[Journey]) -> dict[str, int]:
    """Tue 5 May 2026: ``again`` is decided MMRpv at 10:00 (forwarded to the MMRpv unit); ``late``
    is booked at 09:00 for a visit at Hässleholm on Tue 12 May 10:00 (its booking Task completed).
    Returns each journey's count of transactions before the day (what was written already)."""
    before = {j.name: len(j.transactions) for j in found}
    again = Builder.resume(by_name(found, "again"))
    again.decide("MMRpv", day(2026, 5, 5, 10))
    late = Builder.resume(by_name(found, "late"))
    late.booked_at_clinic(day(2026, 5, 5, 9), day(2026, 5, 12, 10), HASSLEHOLM)
    return before


@dataclass
class Run:
    found: list[Journey]
    server: duckdb.DuckDBPyConnection  # rebuilt before the further day, then refreshed after it
    memory: duckdb.DuckDBPyConnection  # loaded from the record, before the further day
    first: dict[str, Any]  # figures at AT from the server's store, before the further day
    refreshed: dict[str, Any]  # figures at AT2 after the refresh
    rebuilt: dict[str, Any]  # figures at AT2 from a rebuild after the further day
    loaded_after: dict[str, Any]  # figures at AT2 from the record loaded after the further day
    incremental: bool


@pytest.fixture(scope="module")
def run(fhir: FhirClient) -> Run:
    """One write of the journeys, the stores and figures every test here reads."""
    install_directory(fhir)
    found = journeys()
    write(fhir, found)
    server = store.open_store(":memory:")
    store.rebuild(server, fhir, TODAY)
    only(server, found)
    memory = loaded(found)
    first = figures.compute(server, AT, FROM, TO)

    before = further_day(found)
    for journey in found:
        write(fhir, [journey], start=before[journey.name])
    result = store.refresh(server, fhir, TODAY)
    only(server, found)
    refreshed = figures.compute(server, AT2, FROM2, TO2)
    fresh = store.open_store(":memory:")
    store.rebuild(fresh, fhir, TODAY)
    rebuilt = figures.compute(only(fresh, found), AT2, FROM2, TO2)
    loaded_after = figures.compute(loaded(found), AT2, FROM2, TO2)
    return Run(found, server, memory, first, refreshed, rebuilt, loaded_after, not result.rebuilt)


def org(figs: dict[str, Any], hsa: str) -> dict[str, Any]:
    return next(o for o in figs["organisations"] if o["organization"] == hsa)


def figures_of(o: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in o.items() if k not in ("organization", "name", "kind")}


NOTHING = figures_of(figures.empty(None, "", ""))  # every figure zero or null: the contract's keys, from their one home


def test_each_figure_is_the_hand_computation(run: Run) -> None:
    f = run.first
    key = {j.name: j.key for j in run.found}
    assert (f["at"], f["from"], f["to"], f["guarantee_days"]) == (
        "2026-05-04T00:00:00+02:00",
        "2026-03-01",
        "2026-04-30",
        90,
    )
    d = directory()
    assert [(o["organization"], o["kind"]) for o in f["organisations"]] == [
        *((c.hsa_id, "clinic") for c in d.clinics),
        (UNIT, "unit"),
        *((s.hsa_id, "site") for s in d.sites),
    ]

    # Hässleholm: late, easter, rejected, again.
    # * late: arrives Mon 30 Mar 10:00, deadline Thu 2 Apr 16:00, decided Thu 9 Apr 10:00: late;
    #   working days 31 Mar, 1, 2 Apr (Good Friday 3 Apr, Easter Monday 6 Apr off), 7, 8, 9 Apr = 6.
    # * easter: arrives Thu 2 Apr 09:00; 7, 8, 9 Apr: deadline 9 Apr 16:00, decided 9 Apr 10:00:
    #   within, 3 working days (a calendar without the holidays would have made it late).
    # * rejected: arrives Mon 2 Mar 12:00, rejected Tue 3 Mar 09:00: a decision, within, 1 day.
    #   Median of 1, 3, 6 = 3.
    # * again: the rejected patient's new referral, 1 Apr (within 12 months of the rejection): one
    #   re-referral; its review (arrived Wed 1 Apr 10:00, deadline 2, 7, 8 Apr 16:00) open: overdue.
    # Waiting at the snapshot (Mon 4 May), none visited: late 30 Mar -> 35 days, easter 2 Apr -> 32,
    # again 1 Apr -> 33: three in 31-60. The rejected one waits for nothing. Each held by Hässleholm
    # alone (a reviewer's PractitionerRole counting as her clinic): four referrals, one organisation.
    assert figures_of(org(f, HASSLEHOLM)) == NOTHING | {
        "reviews_decided": 3,
        "reviews_within_deadline": 2,
        "review_median_working_days": 3.0,
        "reviews_overdue_now": 1,
        "waiting_now": 3,
        "waiting_31_60": 3,
        "organisations_per_referral": {"1": 4},
        "re_referrals_after_rejection": 1,
    }

    # Lund: sv, pv, chosen, supplement, held, asked, nobody.
    # * decided: sv (arr. Mon 2 Mar 09:00, decided Tue 3 Mar 14:00, 1 working day), pv (arr. 2 Mar
    #   11:00, decided Wed 4 Mar 11:00: 2), chosen (arr. 2 Mar 13:00, decided 3 Mar 10:00: 1), each
    #   before its deadline Thu 5 Mar 16:00. Median of 1, 2, 1 = 1.
    # * open past the deadline at the snapshot: supplement (10 Mar), held (19 Mar), asked (13 Mar:
    #   the hold for the patient does not move it), nobody (12 Mar) = 4.
    # * waiting 4 May: supplement 5 Mar -> 60 days, held 16 Mar -> 49, asked 10 Mar -> 55, nobody
    #   9 Mar -> 56: four in 31-60. chosen (2 Mar -> 63) cancelled by the patient's choice: apart.
    #   sv was seen (20 Apr); pv is forwarded and seen at its site.
    # * first visit: sv, issued 2 Mar, seen at Lund Mon 20 Apr: 29 + 20 = 49 days, within 90.
    # * on hold: supplement for the referrer Thu 5 Mar 10:00 -> Mon 9 Mar 10:01 (the supplement):
    #   4 days; asked for the patient Tue 10 Mar 10:00 -> Sat 14 Mar 12:01 (the answer): 4 days;
    #   held is still on hold (no interval ended).
    # * organisations: pv was held by Lund and the MMRpv unit (2), the other six by Lund alone.
    # * nobody: the review's owner cleared, no other open Task: nobody is responsible.
    assert figures_of(org(f, LUND)) == NOTHING | {
        "reviews_decided": 3,
        "reviews_within_deadline": 3,
        "review_median_working_days": 1.0,
        "reviews_overdue_now": 4,
        "waiting_now": 4,
        "waiting_31_60": 4,
        "waiting_patient_chosen": 1,
        "first_visits": 1,
        "first_visit_median_days": 49.0,
        "first_visit_p90_days": 49.0,
        "first_visit_max_days": 49,
        "first_visits_within_guarantee": 1,
        "on_hold_median_days": {"referrer": 4.0, "patient": 4.0},
        "organisations_per_referral": {"1": 6, "2": 1},
        "nobody_responsible": [key["nobody"]],
    }

    # The MMRpv unit and its site Helsingborg: pv, forwarded Wed 4 Mar 11:01, first booked for 7 Apr,
    # moved to Tue 14 Apr 09:00, the programme's first day: from the referral's own 2 Mar (the
    # clock never restarts) 29 + 14 = 43 days. Arrived at the unit in the period, held by 2.
    pv_counts = NOTHING | {
        "first_visits": 1,
        "first_visit_median_days": 43.0,
        "first_visit_p90_days": 43.0,
        "first_visit_max_days": 43,
        "first_visits_within_guarantee": 1,
        "organisations_per_referral": {"2": 1},
    }
    assert figures_of(org(f, UNIT)) == pv_counts
    assert figures_of(org(f, HBG)) == pv_counts
    for quiet in (ANGELHOLM, MLM, KSD):
        assert figures_of(org(f, quiet)) == NOTHING, quiet

    # The region: everything. Decided 3 + 3 = 6, within 5; working days 1, 1, 1, 2, 3, 6: median
    # 1.5. Overdue 1 + 4. Waiting 3 + 4, all 31-60; one by the patient's choice. First visits 49
    # and 43: median 46, p90 43 + 0.9 * 6 = 48.4, max 49. Eleven referrals arrived, pv held by 2.
    assert figures_of(f["region"]) == NOTHING | {
        "reviews_decided": 6,
        "reviews_within_deadline": 5,
        "review_median_working_days": 1.5,
        "reviews_overdue_now": 5,
        "waiting_now": 7,
        "waiting_31_60": 7,
        "waiting_patient_chosen": 1,
        "first_visits": 2,
        "first_visit_median_days": 46.0,
        "first_visit_p90_days": pytest.approx(48.4),
        "first_visit_max_days": 49,
        "first_visits_within_guarantee": 2,
        "on_hold_median_days": {"referrer": 4.0, "patient": 4.0},
        "organisations_per_referral": {"1": 10, "2": 1},
        "re_referrals_after_rejection": 1,
        "nobody_responsible": [key["nobody"]],
    }
    assert f["nobody_responsible"] == [key["nobody"]]

    # By ISO week of the decision: rejected Tue 3 Mar (W10) in time; late and easter Thu 9 Apr
    # (W15), one in time; at Lund sv, chosen (3 Mar) and pv (4 Mar) in W10, all in time.
    assert f["weekly_reviews"] == [
        {"organization": HASSLEHOLM, "week": "2026-W10", "decided": 1, "within_deadline": 1},
        {"organization": HASSLEHOLM, "week": "2026-W15", "decided": 2, "within_deadline": 1},
        {"organization": LUND, "week": "2026-W10", "decided": 3, "within_deadline": 3},
    ]


def test_the_owner_chain_of_a_forwarded_referral(run: Run) -> None:
    # pv: Lund's reviewer from the review's arrival Mon 2 Mar 11:00 until the forwarding Wed 4 Mar
    # 11:01 (2 days), then the MMRpv unit (its intake, and its administrative function's booking)
    # still holding at the snapshot Mon 4 May: 4 Mar -> 4 May = 27 + 30 + 4 = 61 days.
    pv = by_name(run.found, "pv")
    assert figures.owner_chain(run.server, pv.key, AT) == [
        {
            "organization": LUND,
            "name": directory().clinics[1].name,
            "from": "2026-03-02T11:00:00+01:00",
            "to": "2026-03-04T11:01:00+01:00",
            "days": 2,
        },
        {
            "organization": UNIT,
            "name": directory().mmrpv.name,
            "from": "2026-03-04T11:01:00+01:00",
            "to": None,
            "days": 61,
        },
    ]
    # the rejected one: Hässleholm from its arrival Mon 2 Mar 12:00 until the rejection ended it
    rejected = by_name(run.found, "rejected")
    assert figures.owner_chain(run.server, rejected.key, AT) == [
        {
            "organization": HASSLEHOLM,
            "name": directory().clinics[0].name,
            "from": "2026-03-02T12:00:00+01:00",
            "to": "2026-03-03T09:00:00+01:00",
            "days": 1,
        }
    ]


def test_a_store_loaded_without_a_server_gives_the_same_figures(run: Run) -> None:
    """Equal on each server means equal across servers: HAPI's figures are the sandbox's."""
    assert figures.compute(run.memory, AT, FROM, TO) == run.first
    assert run.loaded_after == run.rebuilt
    for journey in run.found:
        assert figures.owner_chain(run.memory, journey.key, AT) == figures.owner_chain(run.server, journey.key, AT)


def test_an_incremental_refresh_after_a_further_day_gives_a_rebuilds_figures(run: Run) -> None:
    assert run.incremental
    assert run.refreshed == run.rebuilt
    f = run.refreshed
    # What the day changed, by hand (snapshot Wed 13 May, period March to May):
    # * again decided Tue 5 May 10:00, 25 working days after its deadline 8 Apr: from Wed 1 Apr:
    #   2 Apr, 7-10 (4), 13-17 (5), 20-24 (5), 27-30 (4) Apr, 4, 5 May (1 May off) = 21. Hässleholm
    #   decided 4 (late 6, easter 3, rejected 1, again 21: median 4.5), within 2, none overdue now.
    # * late seen Tue 12 May at Hässleholm: 30 Mar -> 12 May = 1 + 30 + 12 = 43 days.
    # * easter still waits at Hässleholm: 2 Apr -> 13 May = 41 days; again waits at the MMRpv unit
    #   now (forwarded, no site booked), from its own 1 Apr: 42 days.
    # * again was held by Hässleholm and the unit: 2; it arrived at the unit in the period.
    assert figures_of(org(f, HASSLEHOLM)) == NOTHING | {
        "reviews_decided": 4,
        "reviews_within_deadline": 2,
        "review_median_working_days": 4.5,
        "waiting_now": 1,
        "waiting_31_60": 1,
        "first_visits": 1,
        "first_visit_median_days": 43.0,
        "first_visit_p90_days": 43.0,
        "first_visit_max_days": 43,
        "first_visits_within_guarantee": 1,
        "organisations_per_referral": {"1": 3, "2": 1},
        "re_referrals_after_rejection": 1,
    }
    unit = figures_of(org(f, UNIT))
    assert (unit["waiting_now"], unit["waiting_31_60"], unit["organisations_per_referral"]) == (1, 1, {"2": 2})
    # Lund's waiting moves on with the snapshot: supplement 69, held 58, asked 64, nobody 65 days
    lund = figures_of(org(f, LUND))
    assert (lund["waiting_now"], lund["waiting_31_60"], lund["waiting_61_90"]) == (4, 1, 3)
    # the chain of the newly forwarded referral
    again = by_name(run.found, "again")
    chain = figures.owner_chain(run.server, again.key, AT2)
    assert [(c["organization"], c["from"][:16], (c["to"] or "")[:16], c["days"]) for c in chain] == [
        (HASSLEHOLM, "2026-04-01T10:00", "2026-05-05T10:01", 34),
        (UNIT, "2026-05-05T10:01", "", 8),
    ]
    # the first snapshot is history now: the day's writes change nothing there
    assert figures.compute(run.server, AT, FROM, TO) == run.first


def test_a_load_replaces_what_the_store_held_and_keeps_no_checkpoint(run: Run) -> None:
    con = store.open_store(":memory:")
    con.execute("INSERT INTO mmr_referral (referral) VALUES ('stale')")
    con.execute("INSERT INTO flow_meta VALUES ('checkpoint', '2026-01-01T00:00:00+00:00'), ('server', 'http://x')")
    resources, tasks = record(run.found[:1])
    result = store.load(con, copy.deepcopy(resources), tasks, TODAY)
    assert result.rebuilt and result.loaded["mmr_referral"] == 1
    assert con.execute("SELECT referral FROM mmr_referral").fetchall() == [(run.found[0].referral,)]
    assert store.meta(con) == {"server": "memory"}  # a refresh against a server will rebuild
