"""Who is responsible for a referral's next step: the rule no referral may break.

Every referral the adapter recognises as an MMR referral has, at every moment, exactly one party
responsible for its next step, who can see it: an open Task of ours with an ``owner``, or, once
the journey is over, a final Task that ends it. The rows of ``mappings/task-states.yaml`` say which
is which: a row that is not ``final`` is open; an open row that ``waits_for`` another kind hands
the next step to the open Task of that kind when there is one (the review on hold waits for the
patient's questionnaire Task); a final row that ``ends`` closes the journey, judged on the Task
changed last (a discharged intake after a completed booking is not the end: the follow-up is
missing).

Pure over the referral as loaded, so the end-to-end tests check every referral they made with
it and the shell can count the referrals nobody holds (issue 24's ``nobody_responsible``) with
the same definition.
"""

from __future__ import annotations

from dataclasses import dataclass

from adapter.fhir.resource import Resource, ref
from adapter.mappings import TaskStateRow
from adapter.workflow import task_states
from adapter.workflow.core import Referral
from adapter.workflow.tasks import OPEN, own_value, referral_tasks

# The referrer's own: not yet sent (draft), or withdrawn as a mistake; nobody else has a step to take.
NOT_A_REFERRAL_YET = frozenset({"draft", "entered-in-error"})


@dataclass(frozen=True)
class Responsibility:
    """Who holds the referral: the open Tasks holding its next step, or the final Task that ended it."""

    holders: tuple[Resource, ...] = ()
    ended_by: Resource | None = None
    problem: str | None = None  # None: exactly one responsible party

    @property
    def ok(self) -> bool:
        return self.problem is None


def _row(task: Resource) -> TaskStateRow | None:
    table = task_states.table_of(task)
    return table.row(task.get("status"), task_states.business_of(task)) if table else None


def _open(task: Resource) -> bool:
    row = _row(task)
    return not row.final if row else task.get("status") in OPEN


def _kind(task: Resource) -> str | None:
    table = task_states.table_of(task)
    return table.kind if table else None


def _changed(task: Resource) -> str:
    """The server's stamp: one clock for every writer's change (the adapter's, a reviewer's, a unit's)."""
    return str((task.get("meta") or {}).get("lastUpdated") or "")


def _named(task: Resource) -> str:
    """``Task/id (kind status/business status)``: which Task, and where it stands, without its content."""
    return f"{ref(task)} ({_kind(task)} {task.get('status')}/{task_states.business_of(task)})"


def responsible(referral: Referral) -> Responsibility:
    """Exactly one party responsible for the referral's next step, or the problem in one line."""
    if referral.service_request.get("status") in NOT_A_REFERRAL_YET:
        return Responsibility()
    ours = [t for t in referral_tasks(referral) if own_value(t, "task") is not None]
    open_ = [t for t in ours if _open(t)]
    open_kinds = {_kind(t) for t in open_}
    holders = tuple(t for t in open_ if not ((row := _row(t)) and row.waits_for and row.waits_for in open_kinds))
    if holders:
        if len(holders) > 1:
            return Responsibility(
                holders, problem=f"{len(holders)} open Tasks hold the next step: {', '.join(map(_named, holders))}"
            )
        if not (holders[0].get("owner") or {}).get("reference"):
            return Responsibility(holders, problem=f"{_named(holders[0])} is open without an owner")
        return Responsibility(holders)
    if not ours:
        return Responsibility(problem="no Task of ours: nobody holds the referral")
    last = max(ours, key=_changed)
    if (row := _row(last)) and row.ends:
        return Responsibility(ended_by=last)
    return Responsibility(problem=f"no open Task, and the last one, {_named(last)}, does not end the journey")


__all__ = ["Responsibility", "responsible"]
