"""The state tables of ``mappings/task-states.yaml``: which (status, businessStatus) a Task of ours may be at.

The tables are the contract (``profiles/README.md`` shows them; ``adapter.mappings`` reads them);
this module tells a Task's kind by its code, checks a Task against its table, and gives every
Task that reached a final status by another's hand a final business status (``settle``, the
last step of every event), so no closed Task keeps saying it waits for something.
"""

from __future__ import annotations

from adapter.fhir.resource import Resource
from adapter.mappings import TaskStateTable, codes, task_state_tables
from adapter.workflow.core import NOTHING, Context, Event, Plan, Referral
from adapter.workflow.referral import code_in, codings, points_to
from adapter.workflow.tasks import OPEN, concept, revise


def table_of(task: Resource) -> TaskStateTable | None:
    """The table of one of our Tasks, by its code; the workflow codes before the SDC code that
    the follow-up shares with the questionnaire Task."""
    ours = codes().system("task-type")
    code = code_in(task.get("code"), ours)
    if code is None:
        sdc = codes().sdc_task_code
        code = next(
            (
                c.get("code")
                for c in codings(task.get("code"))
                if c.get("system") == sdc["system"] and c.get("code") == sdc["code"]
            ),
            None,
        )
    return next((t for t in task_state_tables() if t.code == code), None)


def business_of(task: Resource) -> str | None:
    return code_in(task.get("businessStatus"), codes().system("business-status"))


def problems(task: Resource) -> list[str]:
    """What is wrong with a Task of ours against its table (nothing: ``[]``)."""
    table = table_of(task)
    if table is None:
        return ["a Task of no kind in mappings/task-states.yaml"]
    status, business = task.get("status"), business_of(task)
    if table.row(status, business):
        return []
    return [f"{table.kind} Task at {status} / {business or '(no businessStatus)'}: not a row of its table"]


def closed_by_another(task: Resource) -> bool:
    """A Task someone else closed, not yet given its final business status (the adapter's next
    version settles it): a version a person writes, never one the adapter writes."""
    table = table_of(task)
    return table is not None and str(task.get("status")) in table.settle and problems(task) != []


def settle(referral: Referral, event: Event, ctx: Context) -> Plan:
    """A Task of ours at a final status whose business status is not a final one gets the table's."""
    system = codes().identifier_system("task")
    plan = NOTHING
    for task in referral.all("Task"):
        if (
            task.get("status") in OPEN
            or not points_to(task.get("focus"), referral.reference)
            or not any(i.get("system") == system for i in task.get("identifier") or ())
        ):
            continue
        table = table_of(task)
        final = table.settle.get(str(task.get("status"))) if table else None
        now = table.row(task.get("status"), business_of(task)) if table else None
        if table is None or final is None or (now is not None and now.final):
            continue
        plan += Plan(
            writes=(
                revise(
                    referral,
                    task,
                    "task",
                    businessStatus=concept("business-status", final, ctx),
                    lastModified=ctx.now.isoformat(),
                ),
            ),
            notes=(f"{table.kind} Task {task.get('status')}: business status {final}",),
        )
    return plan
