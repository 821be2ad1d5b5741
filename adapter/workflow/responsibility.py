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

The one way a person's edit of one of our Tasks breaks the rule without closing anything is a
version without ``owner``: an open Task nobody holds. :func:`restore_owner` (a routine step, early
on every resource event, so whatever event reads the state next mends it before the other steps
build on it) mends it here, for every kind at once: the Task goes back to the party
the routine gives that kind (:func:`rightful_owner`: the coordinator, the clinic, the MMRpv unit
or its administrative function, the patient; the coordinator too where the referral does not say
whose it is), never to a guessed previous owner (the core sees
the Task as it is, not its history), and says so in ``statusReason.text`` and a ``note``, in the
words of ``refused.no-owner*`` in ``mappings/confirmations.yaml``. The review goes back to its
clinic as a refused reassignment does (``review.refusal.back_to_clinic``: ``awaiting-assignment``,
the clinic assigns it again); the other kinds keep their status and business status, and a
``statusReason`` the Task already has for its reader (the patient's invalid answers) is kept, the
``note`` telling the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adapter.fhir.resource import Resource, ref
from adapter.mappings import TaskStateRow, directory
from adapter.workflow import confirmations as conf
from adapter.workflow import options, task_states
from adapter.workflow.core import NOTHING, Context, Event, Plan, Referral
from adapter.workflow.referral import (
    as_list,
    clinic_reference,
    dig,
    patient_reference,
    performer_clinic,
    unit_reference,
)
from adapter.workflow.review.refusal import NO_OWNER, back_to_clinic
from adapter.workflow.tasks import OPEN, own_value, referral_tasks, revise

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
        if _unowned(holders[0]):
            return Responsibility(holders, problem=f"{_named(holders[0])} is open without an owner")
        return Responsibility(holders)
    if not ours:
        return Responsibility(problem="no Task of ours: nobody holds the referral")
    last = max(ours, key=_changed)
    if (row := _row(last)) and row.ends:
        return Responsibility(ended_by=last)
    return Responsibility(problem=f"no open Task, and the last one, {_named(last)}, does not end the journey")


def open_tasks(referral: Referral) -> list[Resource]:
    """Our Tasks of the referral that are open by their table (the ones someone must hold)."""
    return [t for t in referral_tasks(referral) if own_value(t, "task") is not None and _open(t)]


def _unowned(task: Resource) -> bool:
    """No ``owner`` that names anyone: neither a literal reference nor an identifier (a logical
    reference, as a patient known only by personnummer is owner of their questionnaire)."""
    return not (dig(task, "owner", "reference") or dig(task, "owner", "identifier", "value"))


def rightful_owner(referral: Referral, task: Resource) -> tuple[dict[str, Any], str]:
    """The owner the routine gives a Task of this kind, and its name for the text (``""``: the
    patient). Where the referral does not say (no usable patient, no clinic it can be told to be
    at), the region's referral coordinator: the named fallback owner, as for a referral nobody in
    the directory can own."""
    found = _routine_owner(referral, task)
    if found is None:
        coordinator = directory().coordinator
        return unit_reference(coordinator, "Organization"), coordinator.name
    return found


def _routine_owner(referral: Referral, task: Resource) -> tuple[dict[str, Any], str] | None:
    kind, d = _kind(task), directory()
    if kind == "routing":
        return unit_reference(d.coordinator, "Organization"), d.coordinator.name
    if kind == "intake":
        return unit_reference(d.mmrpv, "Organization"), d.mmrpv.name
    if kind in ("questionnaire", "follow-up"):
        patient = patient_reference(referral)
        return (patient, "") if patient else None
    # the review, and a booking: the MMRpv unit's round (it is the requester) is booked by its
    # administrative function; an MMRsv booking is the clinic's own
    if kind == "booking" and d.mmrpv.hsa_id in {
        dig(task, "requester", "identifier", "value"),
        str(dig(task, "requester", "reference") or "").rsplit("/", 1)[-1],
    }:
        return unit_reference(d.mmrpv_admin, "Organization"), d.mmrpv_admin.name
    clinic = performer_clinic(referral)
    return (clinic_reference(clinic), clinic.name) if clinic else None


def restore_owner(referral: Referral, event: Event, ctx: Context) -> Plan:
    """An open Task of ours that someone left without ``owner`` goes back to its rightful owner,
    visibly (see the module): never an open Task nobody holds."""
    if referral.service_request.get("status") in NOT_A_REFERRAL_YET:
        return NOTHING
    lang = options.language(ctx)
    plan = NOTHING
    unowned = [task for task in open_tasks(referral) if _unowned(task)]
    clinic = performer_clinic(referral) if unowned else None  # looked up once, and only when needed
    for task in unowned:
        kind = _kind(task)
        if kind == "review" and clinic is not None:
            plan += back_to_clinic(referral, task, clinic, "owner removed", ctx, NO_OWNER, "owner-restored")
            continue
        owner, name = rightful_owner(referral, task)
        if name:
            text = conf.template("refused", f"{NO_OWNER}-unit", lang, {"owner": name})
        else:
            text = conf.template("refused", f"{NO_OWNER}-patient", lang, {})
        changes: dict[str, Any] = {
            "owner": owner,
            "note": [*as_list(task.get("note")), {"time": ctx.now.isoformat(), "text": text}],
            "lastModified": ctx.now.isoformat(),
        }
        if not dig(task, "statusReason", "text"):
            changes["statusReason"] = {"text": text}
        plan += Plan(
            writes=(revise(referral, task, "task", **changes),),
            counts=("owner-restored",),
            notes=(f"{_named(task)} was open without an owner: given back to {name or 'the patient'}",),
        )
    return plan


__all__ = ["Responsibility", "open_tasks", "responsible", "restore_owner", "rightful_owner"]
