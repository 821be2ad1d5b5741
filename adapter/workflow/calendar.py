"""Swedish working days, for the routine's "within three working days" (step 5) and reminders.

A working day is a weekday that is neither a Swedish public holiday (``holidays``) nor one of the
de-facto days off: julafton (24 Dec), nyårsafton (31 Dec) and midsommarafton (the Friday before
midsommardagen). The eves are added here rather than taken from ``holidays``' DE_FACTO category,
because that category only exists in recent versions; and Sundays are asked for explicitly as
*not* holidays (``include_sundays=False``; older versions counted every Sunday as a holiday),
which changes nothing since weekends never count, but keeps the holiday set honest.

Times are local to Europe/Stockholm, so that a deadline survives the change to and from summer time.
A naive datetime is taken as Stockholm local time.

Deadline convention: arrival at any time on day D gives the deadline *end of the n-th working day
after D* (D itself never counts, however early the referral arrived). "End" is the end of the
working day, 16:00 local by default (``review_day_end`` in ``mappings/review.yaml``), not
midnight: the routine counts working days, a working day ends when the clinic closes, and a
deadline inside office hours makes the overdue flag arrive while someone can still act on it.

This is the one convention for every working-day deadline the adapter writes
(``restriction.period.end``): the review (``review_day_end``), the patient's questionnaire (the
same) and the MMRpv booking (``mmrpv_day_end``). Reminders are intervals, not deadlines: the
first one chasing a deadline goes out at the deadline, each next one N working days after the
previous message at the same time of day. A programme ends on its last activity's day.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import holidays

STOCKHOLM = ZoneInfo("Europe/Stockholm")
DEFAULT_DAY_END = time(16, 0)


def midsommarafton(year: int) -> date:
    """The Friday between 19 and 25 June (midsommardagen is the Saturday after)."""
    june19 = date(year, 6, 19)
    return june19 + timedelta(days=(4 - june19.weekday()) % 7)


@lru_cache(maxsize=64)
def days_off(year: int) -> frozenset[date]:
    """Public holidays and de-facto days off of one year (weekends aside)."""
    public = holidays.Sweden(years=year, include_sundays=False)
    eves = {date(year, 12, 24), date(year, 12, 31), midsommarafton(year)}
    return frozenset(public.keys()) | eves


def is_working_day(day: date) -> bool:
    return day.weekday() < 5 and day not in days_off(day.year)


def local(moment: datetime) -> datetime:
    """The moment in Stockholm time; a naive datetime is taken to be Stockholm time already."""
    return moment.replace(tzinfo=STOCKHOLM) if moment.tzinfo is None else moment.astimezone(STOCKHOLM)


def parse_moment(value: Any) -> datetime | None:
    """A FHIR date or dateTime as an aware datetime (a date is its local midnight); ``None`` if unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time(0), tzinfo=STOCKHOLM)
        return local(datetime.fromisoformat(value))
    except ValueError:
        return None


def add_working_days(start: datetime, n: int) -> datetime:
    """The same local wall-clock time on the n-th working day after ``start``'s local date.

    ``n == 0`` gives ``start`` itself (in Stockholm time). The start day never counts, whether it
    is a working day or not: from Friday, one working day is Monday; from Saturday, too.
    """
    if n < 0:
        raise ValueError("add_working_days counts forwards only")
    moment = local(start)
    day, left = moment.date(), n
    while left:
        day += timedelta(days=1)
        if is_working_day(day):
            left -= 1
    # Build the local time anew so that the UTC offset is the one valid on that day.
    return datetime.combine(day, moment.time(), tzinfo=STOCKHOLM)


def working_day_deadline(start: datetime, n: int, day_end: time = DEFAULT_DAY_END) -> datetime:
    """End (``day_end`` local) of the n-th working day after ``start``'s day: the review deadline."""
    day = add_working_days(start, n).date()
    return datetime.combine(day, day_end.replace(tzinfo=None), tzinfo=STOCKHOLM)


def parse_day_end(value: str | time | None) -> time:
    """``"16:00"`` or ``"23:59:59"`` from configuration; the default when absent or unreadable."""
    if isinstance(value, time):
        return value
    try:
        return time.fromisoformat(str(value)) if value else DEFAULT_DAY_END
    except ValueError:
        return DEFAULT_DAY_END
