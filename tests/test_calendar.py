"""Swedish working days and the review deadline (end of the 3rd working day after arrival)."""

from __future__ import annotations

from datetime import date, datetime, time

import pytest

from adapter.workflow.calendar import (
    STOCKHOLM,
    add_working_days,
    days_off,
    is_working_day,
    midsommarafton,
    parse_day_end,
    working_day_deadline,
)


def at(y: int, m: int, d: int, hh: int = 10, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=STOCKHOLM)


@pytest.mark.parametrize(
    ("arrival", "deadline_day", "why"),
    [
        # Skärtorsdag 2026-04-02: långfredag, the weekend and annandag påsk do not count.
        (at(2026, 4, 2), date(2026, 4, 9), "Maundy Thursday"),
        # Day before midsommarafton 2026 (Fri 19 June): the eve and the weekend do not count.
        (at(2026, 6, 18), date(2026, 6, 24), "day before midsommarafton"),
        # 23 Dec 2026 (Wed): julafton, juldagen (Fri), the weekend.
        (at(2026, 12, 23), date(2026, 12, 30), "23 December"),
        # 30 Dec 2026 (Wed): nyårsafton, nyårsdagen (Fri), weekend, trettondedag jul (Wed 6 Jan).
        (at(2026, 12, 30), date(2027, 1, 7), "30 December"),
        # A plain Friday: Mon, Tue, Wed.
        (at(2026, 3, 13), date(2026, 3, 18), "Friday"),
        # Late on a Friday counts the same: the arrival day never counts.
        (at(2026, 3, 13, 23, 50), date(2026, 3, 18), "Friday late evening"),
        # Arrival on a Sunday: Mon, Tue, Wed.
        (at(2026, 3, 15), date(2026, 3, 18), "Sunday"),
        # Across the change to summer time (29 March 2026).
        (at(2026, 3, 27), date(2026, 4, 1), "Friday before summer time"),
    ],
)
def test_review_deadline_is_end_of_third_working_day(arrival: datetime, deadline_day: date, why: str) -> None:
    deadline = working_day_deadline(arrival, 3)
    assert deadline.date() == deadline_day, why
    assert deadline.time() == time(16, 0)
    assert (
        deadline.utcoffset()
        == datetime(deadline_day.year, deadline_day.month, deadline_day.day, 12, tzinfo=STOCKHOLM).utcoffset()
    )


def test_add_working_days_keeps_local_time_and_zero_is_identity() -> None:
    start = at(2026, 3, 27, 9, 15)  # CET
    later = add_working_days(start, 1)  # Monday 30 March, CEST
    assert later == datetime(2026, 3, 30, 9, 15, tzinfo=STOCKHOLM)
    assert later.utcoffset() != start.utcoffset()
    assert add_working_days(start, 0) == start


def test_a_utc_arrival_is_counted_on_its_stockholm_date() -> None:
    from datetime import UTC

    # 23:30 UTC on Tuesday 10 March is already Wednesday in Stockholm: Thu, Fri, Mon.
    arrival = datetime(2026, 3, 10, 23, 30, tzinfo=UTC)
    assert working_day_deadline(arrival, 3).date() == date(2026, 3, 16)


def test_naive_datetimes_are_stockholm_time() -> None:
    assert add_working_days(datetime(2026, 3, 13, 10, 0), 1) == at(2026, 3, 16)


def test_the_de_facto_days_off_and_sundays() -> None:
    for year in (2025, 2026, 2027):
        assert date(year, 12, 24) in days_off(year)
        assert date(year, 12, 31) in days_off(year)
        eve = midsommarafton(year)
        assert eve.weekday() == 4 and date(year, 6, 19) <= eve <= date(year, 6, 25)
        assert not is_working_day(eve)
    assert midsommarafton(2026) == date(2026, 6, 19)
    assert is_working_day(date(2026, 4, 2))  # skärtorsdag is a working day
    assert not is_working_day(date(2026, 4, 3))  # långfredag
    # Sundays are weekend days; they are not listed as holidays (include_sundays=False).
    assert date(2026, 3, 15) not in days_off(2026)
    assert not is_working_day(date(2026, 3, 15))


def test_negative_counts_are_refused() -> None:
    with pytest.raises(ValueError):
        add_working_days(at(2026, 3, 13), -1)


def test_day_end_configuration() -> None:
    assert parse_day_end("23:59:59") == time(23, 59, 59)
    assert parse_day_end(None) == time(16, 0)
    assert parse_day_end("not a time") == time(16, 0)
    assert working_day_deadline(at(2026, 3, 13), 3, time(23, 59, 59)).time() == time(23, 59, 59)
