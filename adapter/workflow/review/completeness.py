"""Routine step 6, first part: is the referral complete? If not, ask the referrer (KOM) and wait.

The rules are data (``mappings/completeness.yaml``, FHIRPath). What is missing goes to the
referrer in one supplement request (a ``KOM`` confirmation, occasion = the round number); the
review Task goes ``on-hold`` / ``awaiting-supplement``; a reminder timer follows.

The review resumes (``in-progress``) when the round is answered, which is either:
- a Communication ``inResponseTo`` the KOM (the reviewer reads the reply; the adapter cannot
  judge free text, so no second request follows automatically), or
- a version of the ServiceRequest that now passes every rule.
The answer is recorded on the review Task as an input ``supplement-reply`` (the reply, or the
ServiceRequest version), so that later events, which may not load the reply, still see it.

A referral that breaks the ``mmr-referral`` profile (profiles/) is incomplete too: each part of it
the validator finds wrong is one missing item, named in the referrer's words (which part, missing
or wrong: ``profile_parts`` in ``mappings/completeness.yaml``), so a clinician is never handed a
profile error. The validator's own issues (paths, ValueSets, the profile) go to the KOM's ``note``
for the integrator who must fix the referring system.

A referral whose referrer cannot be reached (no usable requester) gets no KOM: the adapter
stops there with a note and the clinic takes it by hand (the overdue flag still comes).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from adapter.conformance.outcome import ERRORS
from adapter.conformance.validate import validate_against
from adapter.fhir.resource import Resource
from adapter.mappings import Clinic, codes, load
from adapter.workflow import confirmations as conf
from adapter.workflow import options
from adapter.workflow.calendar import add_working_days
from adapter.workflow.core import NOTHING, Context, Event, Plan, Referral, Timer, per_state
from adapter.workflow.referral import (
    as_list,
    dig,
    performer_clinic,
    points_to,
    referral_key,
    referrer_reference,
    routing_problem,
)
from adapter.workflow.review.sources import RECORD, RuleError, holds
from adapter.workflow.tasks import (
    at_stage,
    concept,
    find_own,
    key_of,
    on_hold,
    open_review,
    own_value,
    parameters,
    resumed,
    revise,
)

REMINDER_TIMER = "supplement-reminder"
# What the KOM's note starts with: the technical issues behind its items, for the integrator.
PROFILE_NOTE = "For the integrator: the referral does not conform to the mmr-referral profile: "


@dataclass(frozen=True)
class Rule:
    id: str
    sv: str
    en: str
    expression: str
    detail: str = ""  # the technical issue, for the integrator (a profile error's diagnostics)

    def label(self, lang: str) -> str:
        return self.en if lang == "en" else self.sv


def rules() -> list[Rule]:
    return [Rule(r["id"], r["sv"], r.get("en") or r["sv"], r["expression"]) for r in load("completeness")["rules"]]


def profile_errors(service_request: Resource) -> tuple[Rule, ...]:
    """One missing item per part of the referral that breaks the mmr-referral profile.

    The referrer reads the part in clinical words (``profile_parts`` in
    ``mappings/completeness.yaml``); the validator's own text, which names paths, ValueSets and
    profiles, is the item's ``detail``, for the integrator (the KOM's ``note``). The referral itself
    is judged: contained resources (a Consent) are judged by the rules that read them. The id is
    ``profile:<path>`` (a path, never a value, so notes stay free of patient data). Validation is
    pure and memoised on the resource's content: the steps of one event ask again.
    """
    own = {k: v for k, v in service_request.items() if k != "contained"}
    return _profile_errors(json.dumps(own, sort_keys=True, default=str))


@lru_cache(maxsize=256)
def _profile_errors(body: str) -> tuple[Rule, ...]:
    sr = json.loads(body)
    result = validate_against(sr, f"{codes().base}/StructureDefinition/mmr-referral")
    out: dict[str, tuple[Rule, bool]] = {}  # by part: the item, and whether the part is missing
    for issue in result["issue"]:
        if issue.get("severity") not in ERRORS:
            continue
        path = str((issue.get("expression") or ["ServiceRequest"])[0])
        diagnostics = str(issue.get("diagnostics") or issue.get("code"))
        missing_ = issue.get("code") == "required" or diagnostics.endswith("Field required")
        part = _part(_element(sr, path, diagnostics))
        earlier, was_missing = out.get(str(part["sv"]), (None, False))
        missing_ = missing_ or was_missing  # a part missing and so also wrong is told as missing
        sv, en = _words(part, "missing" if missing_ else "wrong")
        detail = f"{earlier.detail}; {diagnostics}" if earlier else diagnostics
        out[str(part["sv"])] = (Rule(earlier.id if earlier else f"profile:{path}", sv, en, path, detail), missing_)
    return tuple(rule for rule, _ in out.values())


def _element(sr: Resource, path: str, diagnostics: str) -> str:
    """The part of the referral an issue is about: its path without indexes and slice names, an
    extension by its StructureDefinition's name, an invariant by what ``profile_parts`` maps it to."""
    invariant = re.search(r"invariant ([\w-]+) failed", diagnostics)
    parts = load("completeness")["profile_parts"]
    if invariant and invariant.group(1) in parts["invariants"]:
        return str(parts["invariants"][invariant.group(1)])
    steps = path.split(".")
    element = [steps[0]]
    for step in steps[1:]:
        name = re.sub(r"\[\d+\]$", "", step.split(":")[0])
        index = re.search(r"\[(\d+)\]$", step)
        if len(element) == 1 and name == "extension" and index:
            extensions = as_list(sr.get("extension"))
            at = int(index.group(1))
            url = extensions[at].get("url") if at < len(extensions) and isinstance(extensions[at], dict) else None
            element.append(f"extension({str(url).rsplit('/', 1)[-1]})" if isinstance(url, str) else name)
        else:
            element.append(name)
    return ".".join(element)


def _part(element: str) -> dict[str, Any]:
    """The part of the referral ``element`` belongs to: the longest prefix ``profile_parts`` lists."""
    known = load("completeness")["profile_parts"]["parts"]
    steps = element.split(".")
    keys = (".".join(steps[:n]) for n in range(len(steps), 0, -1))
    return dict(next((known[key] for key in keys if key in known), known["ServiceRequest"]))


def _words(part: dict[str, Any], problem: str) -> tuple[str, str]:
    """The part in Swedish and English, worded as ``missing`` or ``wrong``."""
    wording = load("completeness")["profile_parts"]["wording"][problem]
    return (
        str(wording["sv"]).format(part=part["sv"]),
        str(wording.get("en") or wording["sv"]).format(part=part.get("en") or part["sv"]),
    )


def missing(referral: Referral, clinic: Clinic | None, now: datetime) -> tuple[tuple[Rule, ...], tuple[str, ...]]:
    """The rules the referral fails, then its profile errors, and notes on rules that could not be
    evaluated (they count as failed). Evaluated once per event, however many steps ask."""
    return referral.derived(("missing", clinic, now), lambda: _missing(referral, clinic, now), RECORD)


def _missing(referral: Referral, clinic: Clinic | None, now: datetime) -> tuple[tuple[Rule, ...], tuple[str, ...]]:
    failed, notes = [], []
    for rule in rules():
        try:
            ok = holds(referral, clinic, now, rule.expression)
        except RuleError as exc:
            ok = False
            notes.append(f"completeness rule {rule.id} could not be evaluated ({exc}): counted as missing")
        if not ok:
            failed.append(rule)
    profile = profile_errors(referral.service_request)
    if routing_problem(referral) is not None:  # the receiver is refused on its own (holding): one answer
        profile = tuple(r for r in profile if not _about_performer(r))
    return (*failed, *profile), tuple(notes)


def _about_performer(rule: Rule) -> bool:
    return rule.expression.startswith("ServiceRequest.performer") or "invariant mmr-sr-2 " in rule.detail


# ---------------------------------------------------------------- supplement rounds


def kom_id(referral: Referral, round_no: int) -> str:
    return conf.message_id(referral, "KOM", "referrer", str(round_no))


@per_state(frozenset({"ServiceRequest", "Communication"}))
def rounds(referral: Referral) -> tuple[Resource, ...]:
    """The KOM Communications sent for this referral, in round order."""
    prefix = f"{referral_key(referral.service_request)}-KOM-referrer-"
    found = []
    for comm in referral.all("Communication"):
        value = own_value(comm, "communication") or ""
        if value.startswith(prefix) and (number := value[len(prefix) :]).isdigit() and number.isascii():
            found.append((int(number), comm))
    return tuple(c for _, c in sorted(found, key=lambda pair: pair[0]))


def reply_to(referral: Referral, kom: Resource) -> Resource | None:
    """A Communication in the loaded state that answers this KOM."""
    key = key_of(referral, kom) if kom.get("id") else None
    return next((c for c in referral.all("Communication") if key and points_to(c.get("inResponseTo"), key)), None)


def answered(referral: Referral, task: Resource, round_no: int, kom: Resource) -> bool:
    """Round n is answered once n answers are recorded on the Task, or a reply to it is loaded."""
    return len(parameters(task, "input", "supplement-reply")) >= round_no or reply_to(referral, kom) is not None


@dataclass(frozen=True)
class Gate:
    """Whether the review may go past completeness, and why (or why not)."""

    passed: bool
    missing: tuple[Rule, ...]
    reason: str
    notes: tuple[str, ...] = ()


def gate(referral: Referral, task: Resource, now: datetime) -> Gate:
    """Complete, or the last supplement request answered: the rest of the review may go on."""
    failed, notes = missing(referral, performer_clinic(referral), now)
    if not failed:
        return Gate(True, (), "complete", tuple(notes))
    sent = rounds(referral)
    if sent and answered(referral, task, len(sent), sent[-1]):
        return Gate(True, tuple(failed), "supplement answered", tuple(notes))
    reason = "awaiting supplement" if sent else "incomplete"
    return Gate(False, tuple(failed), reason, tuple(notes))


# ---------------------------------------------------------------- the steps


def _answer_reference(referral: Referral, kom: Resource) -> dict[str, Any]:
    reply = reply_to(referral, kom)
    if reply is not None:
        return {"reference": key_of(referral, reply) or ""}
    sr = referral.service_request
    ver = dig(sr, "meta", "versionId")
    return {"reference": f"{referral.reference}/_history/{ver}" if ver else referral.reference}


def _record_answer(referral: Referral, task: Resource, ctx: Context, resume: bool) -> Plan:
    sent = rounds(referral)
    changes: dict[str, Any] = {}
    if sent and len(parameters(task, "input", "supplement-reply")) < len(sent):
        entry = {
            "type": concept("task-parameter", "supplement-reply"),
            "valueReference": _answer_reference(referral, sent[-1]),
        }
        changes["input"] = [*as_list(task.get("input")), entry]
    if resume:
        changes.update(resumed(task, ctx))
    if not changes:
        return NOTHING
    changes.setdefault("lastModified", ctx.now.isoformat())
    return Plan(
        writes=(revise(referral, task, "task", **changes),),
        notes=("supplement answered: review resumes" if resume else "supplement answer recorded",),
    )


def _request_supplement(referral: Referral, task: Resource, failed: tuple[Rule, ...], ctx: Context) -> Plan:
    if referrer_reference(referral) is None:
        return Plan(
            notes=(
                "referral incomplete (" + ", ".join(r.id for r in failed) + ") but the referrer "
                "cannot be reached (no usable requester): no KOM, left to the clinic",
            )
        )
    lang = options.language(ctx)
    round_no = len(rounds(referral)) + 1
    listing = "\n".join(f"- {r.label(lang)}" for r in failed)
    details = [r.detail for r in failed if r.detail]
    technical = {"note": [{"text": PROFILE_NOTE + " ".join(f"[{d}]" for d in details)}]} if details else None
    plan = conf.confirm(referral, ctx, "KOM", str(round_no), extra=technical, missing=listing)
    hold = revise(referral, task, "task", **on_hold(task, "awaiting-supplement", ctx))
    due = add_working_days(ctx.now, options.number(ctx, "supplement_reminder_days"))
    return plan + Plan(
        writes=(hold,),
        timers=(Timer(REMINDER_TIMER, referral.id, due),),
        notes=(f"referral incomplete: KOM round {round_no} for " + ", ".join(r.id for r in failed),),
    )


def check_completeness(referral: Referral, event: Event, ctx: Context) -> Plan:
    """Request a supplement when something is missing; resume the review when it is answered."""
    task = open_review(referral)
    if task is None:
        return NOTHING
    result = gate(referral, task, ctx.now)
    notes = Plan(notes=result.notes)
    waiting = at_stage(task, "on-hold", "awaiting-supplement")
    if result.passed:
        return notes + _record_answer(referral, task, ctx, resume=waiting)
    if rounds(referral):
        return notes  # a request is out and unanswered: wait for the referrer
    return notes + _request_supplement(referral, task, result.missing, ctx)


def remind_referrer(referral: Referral, event: Event, ctx: Context) -> Plan:
    """Remind the referrer of an unanswered supplement request, every N working days, at most M times."""
    task = open_review(referral)
    if task is None or not at_stage(task, "on-hold", "awaiting-supplement"):
        return NOTHING
    result = gate(referral, task, ctx.now)
    sent = rounds(referral)
    if result.passed or not sent:
        return NOTHING
    round_no, most = len(sent), options.number(ctx, "supplement_reminders")
    reminders = [
        r for m in range(1, most + 1) if (r := find_own(referral, "communication", _reminder_id(referral, round_no, m)))
    ]
    if len(reminders) >= most:
        return Plan(notes=(f"KOM round {round_no}: all {most} reminders sent, waiting for the referrer",))
    last = (reminders or [sent[-1]])[-1]
    due = _next_due(last, ctx)
    if due is None or ctx.now < due:
        return Plan(timers=(Timer(REMINDER_TIMER, referral.id, due),)) if due else NOTHING
    listing = "\n".join(f"- {r.label(options.language(ctx))}" for r in result.missing)
    plan = conf.notify(
        referral,
        ctx,
        "supplement-reminder",
        "referrer",
        f"{round_no}-{len(reminders) + 1}",
        extra={"partOf": [{"reference": key_of(referral, sent[-1]) or ""}]},
        missing=listing,
    )
    if len(reminders) + 1 < most:
        plan += Plan(
            timers=(
                Timer(
                    REMINDER_TIMER,
                    referral.id,
                    add_working_days(ctx.now, options.number(ctx, "supplement_reminder_days")),
                ),
            )
        )
    return plan


def _reminder_id(referral: Referral, round_no: int, m: int) -> str:
    return conf.message_id(referral, "supplement-reminder", "referrer", f"{round_no}-{m}")


def _next_due(last: Resource, ctx: Context) -> datetime | None:
    try:
        sent = datetime.fromisoformat(str(last.get("sent")))
    except ValueError:
        return None
    return add_working_days(sent, options.number(ctx, "supplement_reminder_days"))
