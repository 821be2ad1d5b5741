"""The flow figures (mappings/figures/*.sql through adapter/flow/figures.py) against hand computation.

A fixed set of journeys is written as rows into a real DuckDB store with known moments; every
expected number below is worked out by hand in the comments, never by running the SQL again.
The period is December 2026, the snapshot 2027-01-01 00:00 Stockholm time (the defaults of
`mmr-adapter flow --at 2027-01-01`).

Calendar around the deadlines (Swedish working days): Wed 23 Dec works; 24 Dec (julafton), 25 Dec
(juldagen), 26-27 Dec (weekend) are off; 28, 29, 30 Dec work; 31 Dec (nyårsafton) and 1 Jan are off.
A review deadline is the end (16:00) of the third working day after arrival.

Clinics: A = Hässleholm (SMH1, reviewers R1, R2), B = SUS Lund (SML1), C = Ängelholm (SMA1, no
pool); the MMRpv unit (MMRPV) with sites HBG, MLM, KSD; the coordinator (MMRK); the unit's
administrative function (MMRPVA) owns bookings and is no organisation of the directory.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from adapter.flow.figures import compute, owner_chain
from tests.support.flow_store import Store, org, role, t

A, B, C = "SE2321000255-SMH1", "SE2321000255-SML1", "SE2321000255-SMA1"
R1, R3 = "SE2321000255-SMH1R1", "SE2321000255-SML1R1"
UNIT, ADMIN, COORD = "SE2321000255-MMRPV", "SE2321000255-MMRPVA", "SE2321000255-MMRK"
HBG, MLM, KSD = "SE2321000255-MMRPV-HBG", "SE2321000255-MMRPV-MLM", "SE2321000255-MMRPV-KSD"
AT = t("2027-01-01 00:00")
DECEMBER = (date(2026, 12, 1), date(2026, 12, 31))


def journeys(s: Store) -> None:
    # J1, the working day before julafton: issued Tue 22 Dec, arrives at A Wed 23 Dec 10:00. Deadline:
    # 28 (1), 29 (2), 30 Dec (3) 16:00. Decided MMRsv 30 Dec 15:00: within, 3 working days. Booking
    # open at A: waiting at A since 22 Dec, 10 days at the snapshot.
    j1 = s.referral("J1", "2026-12-22 09:00", A)
    s.task(j1, "review").at("2026-12-23 10:00", "received", "assigned", role(R1), deadline="2026-12-30 16:00").at(
        "2026-12-30 15:00", "completed", "decided", decided="2026-12-30 15:00", decision="MMRsv"
    )
    s.task(j1, "booking").at("2026-12-30 15:00", "requested", "awaiting-booking", org(A))

    # J2, routed by the coordinator, held for a supplement, forwarded, the booking moved: issued
    # Tue 1 Dec, held by MMRK 1 Dec 09:00, routed to A Wed 2 Dec 09:00. Deadline: 3 (1), 4 (2),
    # 7 Dec (3) 16:00. On hold awaiting-supplement 3 Dec 10:00, resumed 8 Dec 11:00: 5 days waiting
    # for the referrer. Decided MMRpv Wed 9 Dec 14:00: late, 5 working days (3, 4, 7, 8, 9 Dec).
    # Booked at HBG for 21 Dec, moved to 12 Jan: no first visit; waiting at HBG since 1 Dec (the
    # forwarding keeps the original date): 31 days. Held by MMRK, A (R1's clinic), the unit: 3
    # organisations (the administrative function is part of the unit).
    j2 = s.referral("J2", "2026-12-01 08:00", A)
    s.task(j2, "routing").at("2026-12-01 09:00", "on-hold", "awaiting-correction", org(COORD)).at(
        "2026-12-02 09:00", "completed", "routed"
    )
    (
        s.task(j2, "review")
        .at("2026-12-02 09:00", "received", "assigned", role(R1), deadline="2026-12-07 16:00")
        .at("2026-12-03 10:00", "on-hold", "awaiting-supplement")
        .at("2026-12-08 11:00", "received", "assigned")
        .at("2026-12-09 14:00", "completed", "forwarded", decided="2026-12-09 14:00", decision="MMRpv")
    )
    s.task(j2, "intake").at("2026-12-09 14:00", "received", "awaiting-booking", org(UNIT)).at(
        "2026-12-10 10:00", "in-progress", "booked"
    )
    s.task(j2, "booking").at("2026-12-09 14:00", "requested", "awaiting-booking", org(ADMIN)).at(
        "2026-12-10 10:00", "completed", "booked"
    )
    s.appointment(j2, "booked", "2027-01-12 09:00", site=HBG, updated="2026-12-15 08:00")

    # J3, forwarded, first day of the programme at MLM: issued 15 Sep, reviewed at B, first visit
    # 14 Dec: 15 Sep -> 15 Oct 30, -> 15 Nov 61, -> 14 Dec 90 days: just within the guarantee.
    j3 = s.referral("J3", "2026-09-15 10:00", B)
    s.task(j3, "review").at("2026-09-16 09:00", "received", "assigned", role(R3), deadline="2026-09-21 16:00").at(
        "2026-09-18 10:00", "completed", "forwarded", decided="2026-09-18 10:00", decision="MMRpv"
    )
    s.task(j3, "intake").at("2026-09-18 10:00", "received", "awaiting-booking", org(UNIT)).at(
        "2026-09-20 10:00", "in-progress", "booked"
    ).at("2026-12-14 09:00", "in-progress", "in-programme")
    s.task(j3, "booking").at("2026-09-18 10:00", "requested", "awaiting-booking", org(ADMIN)).at(
        "2026-09-20 10:00", "completed", "booked"
    )
    s.appointment(j3, "fulfilled", "2026-12-14 09:00", site=MLM)

    # J4, MMRsv, first visit at A Thu 10 Dec: 1 Oct -> 1 Nov 31, -> 1 Dec 61, -> 10 Dec 70 days.
    j4 = s.referral("J4", "2026-10-01 10:00", A)
    s.task(j4, "review").at("2026-10-02 09:00", "received", "assigned", role(R1), deadline="2026-10-07 16:00").at(
        "2026-10-05 10:00", "completed", "decided", decided="2026-10-05 10:00", decision="MMRsv"
    )
    s.task(j4, "booking").at("2026-10-05 10:00", "requested", "awaiting-booking", org(A)).at(
        "2026-10-06 10:00", "completed", "booked"
    )
    s.appointment(j4, "arrived", "2026-12-10 13:00", organization=A)

    # J5, MMRsv, first visit at B 1 Dec: 20 Aug -> 20 Sep 31, -> 20 Oct 61, -> 20 Nov 92, -> 1 Dec
    # 103 days: beyond the guarantee.
    j5 = s.referral("J5", "2026-08-20 10:00", B)
    s.task(j5, "review").at("2026-08-21 09:00", "received", "assigned", role(R3), deadline="2026-08-26 16:00").at(
        "2026-08-24 10:00", "completed", "decided", decided="2026-08-24 10:00", decision="MMRsv"
    )
    s.task(j5, "booking").at("2026-08-24 10:00", "requested", "awaiting-booking", org(B)).at(
        "2026-08-25 10:00", "completed", "booked"
    )
    s.appointment(j5, "fulfilled", "2026-12-01 10:00", organization=B)

    # J6, the patient cancelled (patient-chosen waiting, recorded 20 Nov) and is booked for February:
    # waiting by the patient's choice at A, apart from the other waiting figures.
    j6 = s.referral("J6", "2026-11-02 10:00", A)
    s.task(j6, "review").at("2026-11-03 09:00", "received", "assigned", role(R1), deadline="2026-11-06 16:00").at(
        "2026-11-05 10:00", "completed", "decided", decided="2026-11-05 10:00", decision="MMRsv"
    )
    s.task(j6, "booking").at("2026-11-05 10:00", "requested", "awaiting-booking", org(A)).at(
        "2026-11-06 10:00", "completed", "booked"
    )
    s.appointment(
        j6, "cancelled", "2026-11-25 10:00", organization=A, waiting_reason="patient-chosen", updated="2026-11-20 10:00"
    )
    s.appointment(j6, "booked", "2027-02-01 10:00", organization=A, updated="2026-11-20 10:00")

    # J7a rejected at B, J7b the same patient referred again to A. J7a: arrives Tue 1 Dec 09:00,
    # deadline 2 (1), 3 (2), 4 Dec (3); rejected Thu 3 Dec 11:00: within, 2 working days. J7b:
    # issued 20 Dec (within 12 months of the rejection), arrives Mon 21 Dec; deadline 22 (1), 23 (2),
    # 28 Dec (3) 16:00; still open at the snapshot: overdue. Waiting at A: 20 Dec -> 1 Jan, 12 days.
    j7a = s.referral("J7a", "2026-11-30 10:00", B, patient="P7")
    s.task(j7a, "review").at("2026-12-01 09:00", "received", "assigned", role(R3), deadline="2026-12-04 16:00").at(
        "2026-12-03 11:00", "rejected", "rejected", decided="2026-12-03 11:00"
    )
    j7b = s.referral("J7b", "2026-12-20 10:00", A, patient="P7")
    s.task(j7b, "review").at("2026-12-21 09:00", "received", "assigned", role(R1), deadline="2026-12-28 16:00")

    # J8, nobody's: arrives at C (no pool, the clinic owns it) Thu 10 Dec 10:00; deadline 11 (1),
    # 14 (2), 15 Dec (3): overdue at the snapshot. Someone cleared the owner 11 Dec 12:00: an open
    # Task without an owner. Waiting at C since 10 Dec: 22 days.
    j8 = s.referral("J8", "2026-12-10 09:00", C)
    s.task(j8, "review").at(
        "2026-12-10 10:00", "received", "awaiting-assignment", org(C), deadline="2026-12-15 16:00"
    ).at("2026-12-11 12:00", "received", "awaiting-assignment", None)

    # J9, waiting for the patient's answers: arrives at A Tue 17 Nov; on hold awaiting-patient
    # 18 Nov 10:00, answered 2 Dec 10:00: 14 days waiting for the patient (ended in December).
    # Decided MMRsv Thu 3 Dec: late (deadline 20 Nov), 12 working days (18, 19, 20, 23, 24, 25, 26,
    # 27, 30 Nov, 1, 2, 3 Dec). Waiting at A since 16 Nov: 46 days.
    j9 = s.referral("J9", "2026-11-16 10:00", A)
    (
        s.task(j9, "review")
        .at("2026-11-17 09:00", "received", "assigned", role(R1), deadline="2026-11-20 16:00")
        .at("2026-11-18 10:00", "on-hold", "awaiting-patient")
        .at("2026-12-02 10:00", "received", "recommended")
        .at("2026-12-03 10:00", "completed", "decided", decided="2026-12-03 10:00", decision="MMRsv")
    )
    s.task(j9, "questionnaire").at("2026-11-18 10:00", "requested", "awaiting-patient", ("Patient", "patient-J9")).at(
        "2026-12-02 10:00", "completed", "answered"
    )
    s.task(j9, "booking").at("2026-12-03 10:00", "requested", "awaiting-booking", org(A))

    # J10, MMRsv at B, never booked: 1 Sep -> 1 Jan, 30 + 31 + 30 + 31 = 122 days: over 90.
    j10 = s.referral("J10", "2026-09-01 10:00", B)
    s.task(j10, "review").at("2026-09-02 09:00", "received", "assigned", role(R3), deadline="2026-09-07 16:00").at(
        "2026-09-03 10:00", "completed", "decided", decided="2026-09-03 10:00", decision="MMRsv"
    )
    s.task(j10, "booking").at("2026-09-03 10:00", "requested", "awaiting-booking", org(B))

    # J11, forwarded from B in October, not booked yet: waiting at the unit itself since 15 Oct:
    # 15 Oct -> 15 Nov 31, -> 15 Dec 61, -> 1 Jan 78 days: 61-90.
    j11 = s.referral("J11", "2026-10-15 10:00", B)
    s.task(j11, "review").at("2026-10-16 09:00", "received", "assigned", role(R3), deadline="2026-10-21 16:00").at(
        "2026-10-20 10:00", "completed", "forwarded", decided="2026-10-20 10:00", decision="MMRpv"
    )
    s.task(j11, "intake").at("2026-10-20 10:00", "received", "awaiting-booking", org(UNIT))
    s.task(j11, "booking").at("2026-10-20 10:00", "requested", "awaiting-booking", org(ADMIN))

    # A draft is the referrer's own: never counted.
    s.referral("J12", "2026-12-05 10:00", A, status="draft")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    s = Store(tmp_path_factory.mktemp("flow") / "flow.duckdb")
    journeys(s)
    yield s
    s.close()


@pytest.fixture(scope="module")
def figures(store: Store) -> dict[str, Any]:
    return compute(store.con, AT, *DECEMBER)


def by_org(figures: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {o["organization"]: o for o in figures["organisations"]}


def test_the_shape_is_the_contracts(figures: dict[str, Any]) -> None:
    assert figures["at"] == "2027-01-01T00:00:00+01:00"
    assert (figures["from"], figures["to"], figures["guarantee_days"]) == ("2026-12-01", "2026-12-31", 90)
    # Every clinic, the unit, each site, in directory order; the coordinator only holds.
    assert [(o["organization"], o["kind"]) for o in figures["organisations"]] == [
        (A, "clinic"),
        (B, "clinic"),
        (C, "clinic"),
        (UNIT, "unit"),
        (HBG, "site"),
        (MLM, "site"),
        (KSD, "site"),
    ]
    region = figures["region"]
    assert (region["organization"], region["name"], region["kind"]) == (None, "Region", "region")
    assert set(region) == set(figures["organisations"][0])


def test_reviews_decided_within_the_deadline_in_working_days(figures: dict[str, Any]) -> None:
    o = by_org(figures)
    # A: J1 (within, 3), J2 (late, 5), J9 (late, 12): median 5. B: J7a (within, 2). C: none.
    assert [o[A][k] for k in ("reviews_decided", "reviews_within_deadline", "review_median_working_days")] == [
        3,
        1,
        5.0,
    ]
    assert [o[B][k] for k in ("reviews_decided", "reviews_within_deadline", "review_median_working_days")] == [
        1,
        1,
        2.0,
    ]
    assert [o[C][k] for k in ("reviews_decided", "reviews_within_deadline", "review_median_working_days")] == [
        0,
        0,
        None,
    ]
    # Region: 2, 3, 5, 12 working days: median (3 + 5) / 2 = 4.
    r = figures["region"]
    assert [r[k] for k in ("reviews_decided", "reviews_within_deadline", "review_median_working_days")] == [4, 2, 4.0]


def test_reviews_overdue_at_the_snapshot(figures: dict[str, Any]) -> None:
    o = by_org(figures)
    # J7b at A (deadline 28 Dec, past julafton and the weekend) and J8 at C (15 Dec) are open.
    assert (o[A]["reviews_overdue_now"], o[B]["reviews_overdue_now"], o[C]["reviews_overdue_now"]) == (1, 0, 1)
    assert figures["region"]["reviews_overdue_now"] == 2


def test_weekly_reviews(figures: dict[str, Any]) -> None:
    # ISO weeks of 2026: Thu 3 Dec is W49, Wed 9 Dec W50, Wed 30 Dec W53 (2026 has 53 weeks).
    assert figures["weekly_reviews"] == [
        {"organization": A, "week": "2026-W49", "decided": 1, "within_deadline": 0},  # J9
        {"organization": A, "week": "2026-W50", "decided": 1, "within_deadline": 0},  # J2
        {"organization": A, "week": "2026-W53", "decided": 1, "within_deadline": 1},  # J1
        {"organization": B, "week": "2026-W49", "decided": 1, "within_deadline": 1},  # J7a
    ]


def waiting(o: dict[str, Any]) -> list[int]:
    keys = ("waiting_now", "waiting_0_30", "waiting_31_60", "waiting_61_90", "waiting_over_90")
    return [o[k] for k in (*keys, "waiting_patient_chosen")]


def test_waiting_at_the_snapshot_where_the_referral_is(figures: dict[str, Any]) -> None:
    o = by_org(figures)
    # A: J1 (10), J7b (12), J9 (46); J6 by the patient's choice, apart. J4 was seen, J7a rejected.
    assert waiting(o[A]) == [3, 2, 1, 0, 0, 1]
    assert waiting(o[B]) == [1, 0, 0, 0, 1, 0]  # J10, 122 days
    assert waiting(o[C]) == [1, 1, 0, 0, 0, 0]  # J8, 22 days
    # J2 booked at HBG, counted from its first issue on 1 Dec (31 days), not from the forwarding.
    assert waiting(o[HBG]) == [1, 0, 1, 0, 0, 0]
    # The unit: its own J11 (78 days, not booked) and its site's J2.
    assert waiting(o[UNIT]) == [2, 0, 1, 1, 0, 0]
    assert waiting(o[MLM]) == waiting(o[KSD]) == [0] * 6
    # Region: 0-30 J1, J7b, J8; 31-60 J2, J9; 61-90 J11; over 90 J10; J6 apart; the draft never.
    assert waiting(figures["region"]) == [7, 3, 2, 1, 1, 1]


def test_waiting_by_the_step_that_holds_it(figures: dict[str, Any]) -> None:
    steps = {(row["step"], row["age"]): row["referrals"] for row in figures["waiting_by_step"]}
    # The seven waiting in the region (J6, the patient's choice, apart), each at the step of the Task
    # holding its next step: J7b's review still with its reviewer; J8 nobody's; J1 and J9 in their
    # clinic's booking round (both decided MMRsv); J11's intake waits for the unit's booking round, the
    # holder; J10's booking round at B since September; J2 booked at Helsingborg, its intake holds it.
    assert steps == {
        ("review/assigned", "0-30"): 1,
        ("nobody", "0-30"): 1,
        ("booking/awaiting-booking", "0-30"): 1,
        ("booking/awaiting-booking", "31-60"): 1,
        ("booking/awaiting-booking", "61-90"): 1,
        ("booking/awaiting-booking", "over-90"): 1,
        ("intake/booked", "31-60"): 1,
    }
    assert sum(steps.values()) == figures["region"]["waiting_now"]


def first(o: dict[str, Any]) -> list[Any]:
    keys = ("first_visits", "first_visit_median_days", "first_visit_p90_days", "first_visit_max_days")
    return [o[k] for k in (*keys, "first_visits_within_guarantee")]


def test_first_visits_in_the_period_against_the_guarantee(figures: dict[str, Any]) -> None:
    o = by_org(figures)
    assert first(o[A]) == [1, 70.0, 70.0, 70, 1]  # J4
    assert first(o[B]) == [1, 103.0, 103.0, 103, 0]  # J5
    assert first(o[MLM]) == first(o[UNIT]) == [1, 90.0, 90.0, 90, 1]  # J3, day 90 is within
    assert first(o[HBG]) == [0, None, None, None, 0]  # J2's booking was moved to January
    # Region: 70, 90, 103. p90: position (3 - 1) * 0.9 = 1.8, 90 + 0.8 * (103 - 90) = 100.4.
    region = first(figures["region"])
    assert region[:2] == [3, 90.0] and region[2] == pytest.approx(100.4) and region[3:] == [103, 2]


def test_a_shorter_regional_guarantee(store: Store) -> None:
    o = by_org(compute(store.con, AT, *DECEMBER, guarantee_days=80))
    # J4 (70) stays within 80 days, J3 (90) no longer.
    assert (o[A]["first_visits_within_guarantee"], o[MLM]["first_visits_within_guarantee"]) == (1, 0)


def test_time_on_hold_per_reason(figures: dict[str, Any]) -> None:
    o = by_org(figures)
    assert o[A]["on_hold_median_days"] == {"referrer": 5.0, "patient": 14.0}  # J2, J9
    assert o[B]["on_hold_median_days"] == {"referrer": None, "patient": None}
    assert figures["region"]["on_hold_median_days"] == {"referrer": 5.0, "patient": 14.0}


def test_organisations_per_referral_and_re_referrals(figures: dict[str, Any]) -> None:
    o = by_org(figures)
    # Arrived at A in December: J1 (1), J7b (1), J2 (MMRK, A, the unit: 3). At B: J7a. At C: J8.
    assert o[A]["organisations_per_referral"] == {"1": 2, "3": 1}
    assert o[B]["organisations_per_referral"] == {"1": 1}
    assert o[C]["organisations_per_referral"] == {"1": 1}
    # At the unit in December, and booked at HBG: J2.
    assert o[UNIT]["organisations_per_referral"] == o[HBG]["organisations_per_referral"] == {"3": 1}
    # In the region: J1, J2, J7a, J7b, J8 (J9 arrived in November).
    assert figures["region"]["organisations_per_referral"] == {"1": 4, "3": 1}
    # J7a rejected at B on 3 Dec, the patient referred again on 20 Dec.
    assert (o[A]["re_referrals_after_rejection"], o[B]["re_referrals_after_rejection"]) == (0, 1)
    assert figures["region"]["re_referrals_after_rejection"] == 1


def test_nobody_responsible(figures: dict[str, Any], store: Store) -> None:
    assert figures["nobody_responsible"] == figures["region"]["nobody_responsible"] == ["J8"]
    assert by_org(figures)[C]["nobody_responsible"] == ["J8"]
    assert by_org(figures)[A]["nobody_responsible"] == []
    # Before the owner was cleared (11 Dec 12:00), the clinic held J8: the version current then.
    assert compute(store.con, t("2026-12-11 11:00"), *DECEMBER)["nobody_responsible"] == []


def test_one_clinic(store: Store) -> None:
    figures = compute(store.con, AT, *DECEMBER, clinic=C)
    assert [o["organization"] for o in figures["organisations"]] == [C]
    assert figures["weekly_reviews"] == []
    assert figures["region"]["waiting_now"] == 7  # the region stays over everything
    with pytest.raises(ValueError, match="SE2321000255-MMRK is no specialist clinic"):
        compute(store.con, AT, *DECEMBER, clinic=COORD)


def test_the_owner_chain(store: Store) -> None:
    # J2: MMRK 1 Dec 09:00 -> 2 Dec 09:00 (1 day); A (R1's clinic) -> 9 Dec 14:00 (7 days); the unit
    # since, still holding (the administrative function counts as no organisation): 9 Dec -> 1 Jan, 23.
    chain = owner_chain(store.con, "J2", AT)
    assert [(c["organization"], c["from"], c["to"], c["days"]) for c in chain] == [
        (COORD, "2026-12-01T09:00:00+01:00", "2026-12-02T09:00:00+01:00", 1),
        (A, "2026-12-02T09:00:00+01:00", "2026-12-09T14:00:00+01:00", 7),
        (UNIT, "2026-12-09T14:00:00+01:00", None, 23),
    ]
    # J4 ended with the booking standing (6 Oct): A held it 2 Oct -> 6 Oct.
    assert [(c["organization"], c["to"], c["days"]) for c in owner_chain(store.con, "J4", AT)] == [
        (A, "2026-10-06T10:00:00+02:00", 4)
    ]
    assert owner_chain(store.con, "no-such-referral", AT) == []


def test_days_are_stockholm_dates(tmp_path: Path) -> None:
    # Issued 1 Dec 00:30 Stockholm (30 Nov 23:30 UTC), decided 1 Dec 00:40 (UTC: still November),
    # seen 31 Dec 12:00: 30 Stockholm days (31 by UTC dates), and the decision is December's.
    s = Store(tmp_path / "flow.duckdb")
    sr = s.referral("S1", "2026-12-01 00:30", A)
    s.task(sr, "review").at("2026-12-01 00:35", "received", "assigned", role(R1), deadline="2026-12-04 16:00").at(
        "2026-12-01 00:40", "completed", "decided", decided="2026-12-01 00:40", decision="MMRsv"
    )
    s.task(sr, "booking").at("2026-12-01 00:40", "requested", "awaiting-booking", org(A)).at(
        "2026-12-02 10:00", "completed", "booked"
    )
    s.appointment(sr, "fulfilled", "2026-12-31 12:00", organization=A)
    o = by_org(compute(s.con, AT, *DECEMBER))
    s.close()
    assert (o[A]["reviews_decided"], o[A]["review_median_working_days"]) == (1, 0.0)  # decided on its arrival day
    assert first(o[A]) == [1, 30.0, 30.0, 30, 1]


# ---------------------------------------------------------------- the command, run for real


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state directory holding a store of the same journeys, closed so that the command can open it."""
    state = tmp_path_factory.mktemp("state")
    s = Store(state / "flow.duckdb")
    journeys(s)
    s.close()
    return state


def flow(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMR_")}
    return subprocess.run(
        [sys.executable, "-m", "adapter.cli", "flow", *args],
        env={**env, "MMR_STATE_DIR": str(state)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_flow_json_is_the_figures(state_dir: Path, figures: dict[str, Any]) -> None:
    # --at 2027-01-01 alone: the snapshot at its start, the period the month before (December).
    result = flow(state_dir, "--at", "2027-01-01", "--format", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == figures
    assert result.stderr.strip() == "NOBODY IS RESPONSIBLE for 1 referral(s): J8"  # loud, apart from the json


def test_flow_csv_a_line_per_organisation_and_the_region(state_dir: Path) -> None:
    result = flow(state_dir, "--at", "2027-01-01", "--from", "2026-12-01", "--to", "2026-12-31", "--format", "csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["organization"] for r in rows] == [A, B, C, UNIT, HBG, MLM, KSD, ""]
    hassleholm, region = rows[0], rows[-1]
    assert (hassleholm["waiting_now"], hassleholm["on_hold_median_days_patient"]) == ("3", "14.0")
    assert (region["name"], region["first_visit_p90_days"], region["nobody_responsible"]) == ("Region", "100.4", "J8")
    assert json.loads(region["organisations_per_referral"]) == {"1": 4, "3": 1}


def test_flow_table_says_loudly_who_nobody_holds(state_dir: Path) -> None:
    result = flow(state_dir, "--at", "2027-01-01", "--clinic", C)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "Flow 2026-12-01..2026-12-31" in lines[0]
    assert any(line.startswith("│ Smärtrehabilitering Ängelholm") for line in lines)
    assert not any("Hässleholm" in line for line in lines)  # one clinic, and the region
    assert any(line.startswith("│ Region") for line in lines)
    assert lines[-1] == "NOBODY IS RESPONSIBLE for 1 referral(s): J8"
    # Before the owner was cleared, everyone is held, and the table says that too.
    calm = flow(state_dir, "--at", "2026-12-11", "--clinic", C)
    assert calm.stdout.splitlines()[-1] == "Every referral has someone responsible for its next step."


def test_flow_referral_prints_its_owner_chain(state_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "chain.json"
    result = flow(state_dir, "--at", "2027-01-01", "--referral", "J2", "--format", "json", "--output", str(out))
    assert result.returncode == 0 and result.stdout == "", result.stderr
    assert [(link["organization"], link["days"]) for link in json.loads(out.read_text())] == [
        (COORD, 1),
        (A, 7),
        (UNIT, 23),
    ]
    table = flow(state_dir, "--at", "2027-01-01", "--referral", "J2")
    assert table.stdout.splitlines()[1] == (
        f"Smärtrehabilitering Hässleholm ({A}): 2026-12-02T09:00:00+01:00 -> 2026-12-09T14:00:00+01:00, 7 days"
    )
    unknown = flow(state_dir, "--at", "2027-01-01", "--referral", "no-such-referral")
    assert unknown.returncode == 1 and unknown.stdout == ""
    assert (
        unknown.stderr.strip() == "no-such-referral: no organisation of the directory has held it (not in the store?)"
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--from", "2026-12-01"), "--from and --to go together"),
        (("--from", "2026-12-31", "--to", "2026-12-01"), "--from is after --to"),
        (("--refresh", "--rebuild"), "--refresh and --rebuild exclude each other"),
        (("--clinic", COORD), "--clinic: SE2321000255-MMRK is no specialist clinic"),
        (("--referral", "J2", "--format", "html"), "--referral prints a chain of owners as table, json or csv"),
    ],
)
def test_flow_usage_errors_exit_2_in_one_line(state_dir: Path, args: tuple[str, ...], says: str) -> None:
    result = flow(state_dir, "--at", "2027-01-01", *args)
    assert result.returncode == 2
    assert result.stdout == "" and result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(says), result.stderr


def test_flow_without_a_store_says_to_rebuild(tmp_path: Path) -> None:
    result = flow(tmp_path, "--at", "2027-01-01")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"no flow store at {tmp_path / 'flow.duckdb'}: run `mmr-adapter flow --rebuild` to make it from the FHIR server"
    )
