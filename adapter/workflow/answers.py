"""A patient's answers count only when they answer the published Questionnaire; otherwise they go back.

A QuestionnaireResponse to one of our forms is checked against the Questionnaire in ``profiles/``
with the same check ``mmr-adapter validate`` runs (``adapter.conformance.questionnaire_check``:
linkIds, required items, answer options, value types, enableWhen). An answer that fails it does
not complete the questionnaire Task and is not read by the criteria: read, a ``kanske`` or a
typed sentence under a choice item would make every criterion ``unknown`` and the patient would
never be asked again. Instead the Task stays with the patient, as it was (``requested`` /
``awaiting-patient``, owner the patient), and its ``statusReason.text`` names the questions to
answer again by the form's own text (``answers-refused`` in ``mappings/confirmations.yaml``),
never by linkId and never repeating what the patient wrote. The linkIds go to the log note and
the ``answers-refused`` workflow counter. A later answer that counts completes the Task and
clears the reason (``questionnaires.answered``).

A form that is not in the package (a region's licensed NRS form) cannot be checked: its answers
count as they always did.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from adapter.conformance.package import package
from adapter.conformance.questionnaire_check import ResponseCheck
from adapter.fhir.resource import Resource
from adapter.workflow import confirmations as conf
from adapter.workflow import options
from adapter.workflow.core import NOTHING, Context, Plan, Referral, per_state
from adapter.workflow.referral import dig
from adapter.workflow.tasks import revise

COUNTER = "answers-refused"


MALFORMED = "item"  # the linkId-like name a malformed answer is refused under (a server that checks no structure)


def _well_formed(items: Any) -> bool:
    """Items as R4 shapes them (lists of objects, answers too), all the way down: what the check reads."""
    if items is None:
        return True
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        return False
    for item in items:
        answers = item.get("answer")
        if answers is not None and (not isinstance(answers, list) or not all(isinstance(a, dict) for a in answers)):
            return False
        if not _well_formed(item.get("item")) or not all(_well_formed(a.get("item")) for a in answers or ()):
            return False
    return True


def problems(answer: Resource) -> tuple[str, ...]:
    """The linkIds (in the order found, once each) that keep this answer from counting; ``()`` if it counts."""
    url = answer.get("questionnaire")
    questionnaire = package().get(url) if isinstance(url, str) else None
    if questionnaire is None:
        return ()
    if not _well_formed(answer.get("item")):
        return (MALFORMED,)
    check = ResponseCheck(answer, questionnaire, "QuestionnaireResponse")
    check.run()
    return tuple(dict.fromkeys(check.link_ids))


@per_state(frozenset({"QuestionnaireResponse"}))
def _checked(referral: Referral) -> dict[str, tuple[str, ...]]:
    """What each of the state's answers lacks (:func:`problems`), by ``QuestionnaireResponse/<id>``:
    checked once per state, however many steps of an event (and the timers derived after it) ask,
    and kept by the next state unless its plan writes an answer. Per state, never by id and
    version: a test's mutated answer (same id, same version) is another state's."""
    return {f"QuestionnaireResponse/{qr.get('id')}": problems(qr) for qr in referral.all("QuestionnaireResponse")}


def found(referral: Referral, answer: Resource) -> tuple[str, ...]:
    """:func:`problems` of an answer, looked up in its state's check when it is the state's own."""
    key = f"QuestionnaireResponse/{answer.get('id')}"
    if referral.resources.get(key) is not answer:  # not this state's (the event's body): check it as given
        return problems(answer)
    return _checked(referral)[key]


def counts(referral: Referral, answer: Resource) -> bool:
    """The answer answers the form (linkIds, required items, options, types, enableWhen)."""
    return not found(referral, answer)


@cache
def _form(url: str) -> tuple[dict[str, str], dict[str, tuple[str, ...]]]:
    """The items that take an answer (linkId -> text, in the form's order), and each section's
    questions that are always required (a section left out is named by those questions)."""
    texts: dict[str, str] = {}
    sections: dict[str, tuple[str, ...]] = {}

    def walk(items: Any) -> None:
        for item in items or ():
            if item.get("type") == "group":
                kids = item.get("item") or ()
                sections[str(item["linkId"])] = tuple(
                    str(k["linkId"]) for k in kids if k.get("required") and not k.get("enableWhen")
                )
            elif item.get("type") != "display" and item.get("text"):
                texts[str(item["linkId"])] = str(item["text"])
            walk(item.get("item"))

    walk((package().get(url) or {}).get("item"))
    return texts, sections


def to_correct(answer: Resource, link_ids: tuple[str, ...], lang: str) -> str:
    """What the patient is told: the questions to answer again by their text; the form's order."""
    texts, sections = _form(str(answer.get("questionnaire") or "").split("|")[0])
    wanted = {kid for link_id in link_ids for kid in sections.get(link_id, (link_id,))}
    named = [text for link_id, text in texts.items() if link_id in wanted]
    strays = [link_id for link_id in wanted if link_id not in texts]
    parts = []
    if named:
        parts.append(conf.template("answers-refused", "items", lang, {"items": ", ".join(f"”{t}”" for t in named)}))
    if strays or not named:
        parts.append(conf.template("answers-refused", "unknown", lang, {}))
    return " ".join(parts)


def refuse(referral: Referral, task: Resource, answer: Resource, ctx: Context) -> Plan:
    """The Task stays with the patient and says what to answer again; nothing if it says so already."""
    lacking = found(referral, answer)
    if not lacking:
        return NOTHING
    text = to_correct(answer, lacking, options.language(ctx))
    if dig(task, "statusReason", "text") == text:
        return NOTHING
    write = revise(referral, task, "task", statusReason={"text": text}, lastModified=ctx.now.isoformat())
    return Plan(
        writes=(write,),
        counts=(COUNTER,),
        notes=(f"patient's answers to {answer.get('questionnaire')} refused: items {', '.join(lacking)}",),
    )
