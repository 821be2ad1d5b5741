"""Checking a QuestionnaireResponse against one of our Questionnaires.

The criteria evaluation reads answers by linkId and answer code, so a response with an unknown
linkId, a code that is not an answer option, or a missing required answer is refused here.
"""

from __future__ import annotations

from typing import Any

from adapter.conformance.outcome import Issue, error

Item = dict[str, Any]
VALUE_KEYS = {
    "boolean": {"valueBoolean"},
    "decimal": {"valueDecimal"},
    "integer": {"valueInteger"},
    "date": {"valueDate"},
    "dateTime": {"valueDateTime"},
    "time": {"valueTime"},
    "string": {"valueString"},
    "text": {"valueString"},
    "url": {"valueUri"},
    "choice": {"valueCoding"},
    "open-choice": {"valueCoding", "valueString"},
    "attachment": {"valueAttachment"},
    "reference": {"valueReference"},
    "quantity": {"valueQuantity"},
}
DONE = ("completed", "amended")


def _answers_by_link(items: list[Item], out: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    for item in items or ():
        out.setdefault(item.get("linkId", ""), []).extend(item.get("answer") or ())
        _answers_by_link(item.get("item") or [], out)
        for answer in item.get("answer") or ():
            _answers_by_link(answer.get("item") or [], out)
    return out


def _value(answer: dict[str, Any]) -> Any:
    return next((v for k, v in answer.items() if k.startswith("value")), None)


def _condition_holds(condition: dict[str, Any], answers: dict[str, list[dict[str, Any]]]) -> bool:
    given = [_value(a) for a in answers.get(condition.get("question", ""), [])]
    want = next((v for k, v in condition.items() if k.startswith("answer")), None)
    op = condition.get("operator")
    if op == "exists":
        return bool(given) == bool(want)

    def same(v: Any) -> bool:
        if isinstance(want, dict) and isinstance(v, dict):
            return v.get("code") == want.get("code") and want.get("system") in (None, v.get("system"))
        return v == want

    if op == "=":
        return any(same(v) for v in given)
    if op == "!=":
        return bool(given) and not any(same(v) for v in given)
    return True  # ordering operators are not used by our questionnaires


def enabled(item: Item, answers: dict[str, list[dict[str, Any]]]) -> bool:
    conditions = item.get("enableWhen") or []
    if not conditions:
        return True
    results = [_condition_holds(c, answers) for c in conditions]
    return any(results) if item.get("enableBehavior") == "any" else all(results)


class ResponseCheck:
    def __init__(self, response: dict[str, Any], questionnaire: dict[str, Any], root_path: str) -> None:
        self.response = response
        self.url = questionnaire["url"]
        self.questionnaire = questionnaire
        self.root_path = root_path
        self.answers = _answers_by_link(response.get("item") or [], {})
        self.done = response.get("status") in DONE
        self.issues: list[Issue] = []
        # The linkId of each issue, in order (a linkId the form lacks included): what the workflow
        # names to the patient by the item's text, and logs, without the messages' answer values.
        self.link_ids: list[str] = []

    def fail(self, code: str, path: str, message: str, link_id: Any) -> None:
        self.issues.append(error(code, path, message, self.url))
        self.link_ids.append(str(link_id))

    def run(self) -> list[Issue]:
        self.items(self.questionnaire.get("item") or [], self.response.get("item") or [], self.root_path)
        return self.issues

    def items(self, defs: list[Item], given: list[Item], path: str) -> None:
        known = {d["linkId"]: d for d in defs}
        for i, item in enumerate(given):
            if item.get("linkId") not in known:
                self.fail(
                    "structure",
                    f"{path}.item[{i}]",
                    f"linkId {item.get('linkId')!r} is not in {self.url}",
                    item.get("linkId"),
                )
        for d in defs:
            found = [(i, item) for i, item in enumerate(given) if item.get("linkId") == d["linkId"]]
            on = enabled(d, self.answers)
            answered = any(item.get("answer") or item.get("item") for _, item in found)
            if not on and answered:
                self.fail("business-rule", f"{path}.item", f"{d['linkId']} is answered but not enabled", d["linkId"])
            if on and self.done and d.get("required") and not answered:
                self.fail("required", f"{path}.item", f"required item {d['linkId']} is not answered", d["linkId"])
            if len(found) > 1 and not d.get("repeats") and d["type"] != "group":
                self.fail("structure", f"{path}.item", f"{d['linkId']} appears {len(found)} times", d["linkId"])
            for i, item in found:
                self.item(d, item, f"{path}.item[{i}]")

    def item(self, d: Item, item: Item, path: str) -> None:
        answers = item.get("answer") or []
        if d["type"] in ("group", "display") and answers:
            self.fail("structure", path, f"{d['linkId']} is a {d['type']} and takes no answer", d["linkId"])
        if len(answers) > 1 and not d.get("repeats"):
            self.fail("structure", path, f"{d['linkId']} takes one answer, found {len(answers)}", d["linkId"])
        options = {(o.get("valueCoding") or {}).get("code") for o in d.get("answerOption") or ()}
        for j, answer in enumerate(answers):
            keys = {k for k in answer if k.startswith("value")}
            allowed = VALUE_KEYS.get(d["type"], keys)
            if not keys or not keys <= allowed:
                self.fail(
                    "structure",
                    f"{path}.answer[{j}]",
                    f"{d['linkId']} needs {' or '.join(sorted(allowed))}",
                    d["linkId"],
                )
            elif "valueCoding" in keys and options and answer["valueCoding"].get("code") not in options:
                self.fail(
                    "code-invalid",
                    f"{path}.answer[{j}]",
                    f"{answer['valueCoding'].get('code')!r} is not an answer option of {d['linkId']}",
                    d["linkId"],
                )
            self.items(d.get("item") or [], answer.get("item") or [], f"{path}.answer[{j}]")
        if d["type"] == "group":
            self.items(d.get("item") or [], item.get("item") or [], path)
