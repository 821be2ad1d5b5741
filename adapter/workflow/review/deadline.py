"""Routine step 5: review within three working days of arrival; an overdue review is flagged once.

Arrival sets ``Task.restriction.period.end`` (see ``adapter.workflow.calendar`` for the
convention) and a timer at that moment. When it fires and the review Task is still open, the
clinic (and the assigned reviewer, if any) gets one ``overdue`` notice, and the plan asks the shell
to count it (``review-overdue-flagged``). The Task's own businessStatus is left alone: it says
where the review stands, which matters more than lateness.
"""

from __future__ import annotations

from datetime import datetime

from adapter.fhir.resource import Resource
from adapter.workflow import confirmations as conf
from adapter.workflow import options
from adapter.workflow.calendar import local, parse_day_end, working_day_deadline
from adapter.workflow.core import NOTHING, Context, Event, Plan, Referral, Timer, note
from adapter.workflow.referral import dig
from adapter.workflow.tasks import is_open, owner_is_reviewer, review_task

OVERDUE_TIMER = "review-overdue"
OVERDUE_COUNT = "review-overdue-flagged"


def review_deadline(arrival: datetime, ctx: Context) -> datetime:
    """End of the N-th working day after the arrival day (N = ``review_working_days``)."""
    return working_day_deadline(
        arrival, options.number(ctx, "review_working_days"), parse_day_end(options.option(ctx, "review_day_end"))
    )


def deadline_of(task: Resource) -> datetime | None:
    end = dig(task, "restriction", "period", "end")
    try:
        return datetime.fromisoformat(str(end)) if end else None
    except ValueError:
        return None


def flag_overdue(referral: Referral, event: Event, ctx: Context) -> Plan:
    """Tell the clinic once that a review is still open past its deadline."""
    task = review_task(referral)
    if not is_open(task):
        return NOTHING
    assert task is not None
    due = deadline_of(task)
    if due is None:
        return note("review Task has no readable restriction.period.end: overdue not checked")
    if ctx.now < due:
        return Plan(timers=(Timer(OVERDUE_TIMER, referral.id, due),), notes=("overdue timer early: re-armed",))
    reviewer = [task["owner"]] if owner_is_reviewer(task) else []
    flag = conf.notify(
        referral,
        ctx,
        "overdue",
        "clinic",
        "review",
        also_to=reviewer,
        days=options.number(ctx, "review_working_days"),
        deadline=local(due).date().isoformat(),
    )
    return flag + Plan(counts=(OVERDUE_COUNT,)) if flag.writes else flag
