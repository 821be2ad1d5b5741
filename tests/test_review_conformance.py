"""What the review steps write conforms to the profiles in profiles/ (validated offline)."""

from __future__ import annotations

from datetime import datetime

from adapter.conformance.outcome import has_errors
from adapter.conformance.validate import validate_resource
from adapter.workflow.core import Referral
from tests.support.workflow import (
    MMRPV_ANSWERS,
    STHLM,
    add,
    ctx,
    decide_as_reviewer,
    referral,
    resource_event,
    response,
    review,
    run,
    service_request,
    sr_event,
    task,
    timer_event,
    update_resource,
)

LATER = ctx(datetime(2026, 3, 9, 10, tzinfo=STHLM))


def ours(state: Referral) -> list[dict]:  # type: ignore[type-arg]
    return [
        r
        for r in state.all("Task") + state.all("Communication")
        if any(
            str(i.get("system", "")).startswith("https://mmr-adapter.se/fhir/identifier/")
            for i in r.get("identifier") or ()
        )
    ]


def errors(state: Referral) -> dict[str, list[str]]:
    found = {}
    for resource in ours(state):
        outcome = validate_resource(resource)
        if has_errors(outcome):
            found[resource["identifier"][0]["value"]] = [
                i["diagnostics"] for i in outcome["issue"] if i["severity"] in ("error", "fatal")
            ]
    return found


def test_every_path_writes_conformant_tasks_and_communications() -> None:
    state = referral()
    _, asked = run(state, sr_event(state), ctx())
    answer = response(MMRPV_ANSWERS, based_on=f"Task/{task(asked, 'R-1-complete-questionnaire-mmr-intake')['id']}")
    _, answered = run(add(asked, answer), resource_event(answer), ctx())
    states = [asked, answered]
    for level in ("MMRpv", "MMRsv"):
        decided = decide_as_reviewer(answered, level)
        states.append(run(decided, resource_event(review(decided)), ctx())[1])
    revoked = update_resource(states[-1], states[-1].service_request, status="revoked")
    states.append(run(revoked, sr_event(revoked), ctx())[1])
    incomplete = referral(service_request(note=[]))
    _, kom = run(incomplete, sr_event(incomplete), ctx())
    states += [
        kom,
        run(kom, timer_event(kom, "supplement-reminder"), LATER)[1],
        run(kom, timer_event(kom, "review-overdue"), LATER)[1],
    ]
    assert sum(len(ours(s)) for s in states) > 20
    for s in states:
        assert errors(s) == {}
