"""The searches the shell runs so the review steps see what they need (and nothing more)."""

from __future__ import annotations

from adapter.workflow.core import Event, Referral
from adapter.workflow.load import ServerSearch, guessed_queries, referral_query
from adapter.workflow.review.loading import follow_up_queries, record_queries
from tests.support.workflow import NOW, consent, referral, service_request, task, update_resource
from tests.test_review_questionnaire import QTASK, asked


def test_phase_two_for_a_referral() -> None:
    sr = service_request(supportingInfo=[{"reference": "Consent/c1"}, {"reference": "Consent/c2"}])
    loaded = dict(referral(sr).resources)
    queries = follow_up_queries(sr, loaded)
    assert queries == [
        "Consent?_id=c2",  # c1 is loaded already; the patient's own come with phase one
        "QuestionnaireResponse?subject=Patient/p1&questionnaire=https://mmr-adapter.se/fhir/Questionnaire/mmr-intake",
    ]


def test_where_the_server_revincludes_answers_only_those_linked_by_output_alone_are_read() -> None:
    _, waiting = asked()
    sr = waiting.service_request
    assert follow_up_queries(sr, dict(waiting.resources), answers_loaded=True) == []
    linked = update_resource(
        waiting,
        task(waiting, QTASK),
        output=[{"type": {"text": "response"}, "valueReference": {"reference": "QuestionnaireResponse/qr9"}}],
    )
    assert follow_up_queries(sr, dict(linked.resources), answers_loaded=True) == ["QuestionnaireResponse?_id=qr9"]
    assert "QuestionnaireResponse?subject" in follow_up_queries(sr, dict(linked.resources))[0]


def test_phase_one_asks_for_the_answers_only_of_a_server_that_declares_it_revincludes_them() -> None:
    def capability(*specs: str) -> dict[str, object]:
        return {
            "rest": [
                {
                    "resource": [
                        {"type": "ServiceRequest", "searchRevInclude": list(specs)},
                        {"type": "Task", "searchRevInclude": ["QuestionnaireResponse:based-on"]},
                    ]
                }
            ]
        }

    hapi = ServerSearch.of(capability("Task:focus", "QuestionnaireResponse:based-on"))
    sandbox = ServerSearch.of(capability("Task:focus"))
    assert hapi.answers and not sandbox.answers and not ServerSearch.of({"rest": "nonsense"}).answers
    assert "_revinclude:iterate=QuestionnaireResponse:based-on" in referral_query("sr1", hapi)
    assert "QuestionnaireResponse" not in referral_query("sr1", sandbox)
    assert "_revinclude:iterate=Consent:patient" in referral_query("sr1", sandbox)


def test_the_event_resource_and_the_workload_when_asked_for() -> None:
    sr = service_request()
    loaded = {"ServiceRequest/sr1": sr}
    reply = Event("changed", "Communication", "reply1")
    queries = follow_up_queries(sr, loaded, reply, {"assignment": "least-open"})
    assert "Communication?_id=reply1" in queries
    workload = next(q for q in queries if q.startswith("Task?"))
    assert "referral-review" in workload and "PractitionerRole/SE2321000255-SML1R1" in workload
    assert not [q for q in follow_up_queries(sr, loaded, Event("changed", "Task", "t1")) if "_id=t1" in q]


def test_nothing_about_the_patient_without_a_subject() -> None:
    sr = service_request(subject=None, supportingInfo=None)
    assert follow_up_queries(sr, {"ServiceRequest/sr1": sr}) == []


def test_the_record_only_under_consent() -> None:
    sr = service_request(reasonReference=[{"reference": "Condition/k1"}, {"reference": "#contained"}])
    with_consent = referral(sr)
    assert record_queries(with_consent, NOW) == ["Condition?_id=k1"]
    without = Referral(sr, {k: v for k, v in with_consent.resources.items() if not k.startswith("Consent/")})
    assert record_queries(without, NOW) == []
    elsewhere = referral(sr, consent(clinic="SE2321000255-SMH1"))
    assert record_queries(elsewhere, NOW) == []


def test_the_answers_search_is_guessed_from_the_events_patient_only_where_phase_one_cannot_bring_them() -> None:
    sr = service_request()
    answers = follow_up_queries(sr, dict(referral(sr).resources))[-1]
    arrival = Event("changed", "ServiceRequest", sr["id"], "1", sr)
    assert guessed_queries(arrival) == [answers]  # the same search phase two asks for: one batch, not two reads
    assert guessed_queries(arrival, ServerSearch(answers=True)) == []  # HAPI brings them with phase one
    task_event = Event("changed", "Task", "t1", "1", {"resourceType": "Task", "for": {"reference": "Patient/p1"}})
    assert guessed_queries(task_event) == [answers]
    assert (
        guessed_queries(
            Event(
                "changed",
                "Appointment",
                "a1",
                "1",
                {"resourceType": "Appointment", "subject": {"reference": "Patient/p1"}},
            )
        )
        == []
    )
    assert guessed_queries(Event("changed", "ServiceRequest", sr["id"])) == []  # id-only: nothing to guess from
    assert guessed_queries(Event("timer", "ServiceRequest", sr["id"], timer="overdue")) == []
    for odd in ({"reference": "Group/g1"}, {"reference": "Patient/p1&_count=1000"}, "Patient/p1", None):
        assert guessed_queries(Event("changed", "ServiceRequest", sr["id"], "1", {**sr, "subject": odd})) == []
