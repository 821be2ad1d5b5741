"""``mmr-adapter status``: the pure formatting of a journey (the e2e tests run it against the server)."""

from __future__ import annotations

from adapter.mappings import codes
from adapter.operations.status import journey, local_text


def test_a_held_follow_up_is_due_when_it_becomes_active_and_an_open_task_at_its_deadline() -> None:
    follow_up = {
        "resourceType": "Task",
        "status": "draft",
        "code": {"coding": [{"code": "follow-up"}]},
        "lastModified": "2026-07-01T08:00:00+02:00",
        "restriction": {"period": {"start": "2027-06-30T09:00:00+02:00", "end": "2027-07-28T09:00:00+02:00"}},
    }
    review = {
        "resourceType": "Task",
        "status": "in-progress",
        "code": {"coding": [{"code": "referral-review"}]},
        "lastModified": "2026-03-02T09:30:00+01:00",
        "restriction": {"period": {"end": "2026-03-05T16:00:00+01:00"}},
    }
    done = {**review, "status": "completed", "lastModified": "2026-03-03T10:00:00+01:00"}
    steps = journey([follow_up, review, done])
    assert [s.due for s in steps] == ["2026-03-05T16:00:00+01:00", "", "2027-06-30T09:00:00+02:00"]


def test_the_programme_shows_the_participation_the_unit_recorded() -> None:
    plan = {
        "resourceType": "CarePlan",
        "status": "active",
        "period": {"start": "2026-04-07", "end": "2026-06-30"},
        "activity": [{"detail": {"status": s}} for s in ("completed", "in-progress", "in-progress")],
    }
    [step] = journey([plan])
    assert step.what == "programme active 2026-04-07–2026-06-30 (3 activities: 1 completed, 2 in-progress)"


def test_lines_follow_the_workflow_clock_in_one_time_zone_and_the_server_time_only_stands_in() -> None:
    """Under the test clock the adapter's own times are in 2027 while the server stamps 2026: the line
    takes the workflow's time where the resource records one, and the order is by the moment."""
    server_time = {"lastUpdated": "2026-12-03T07:00:00Z"}
    review = {
        "resourceType": "Task",
        "status": "in-progress",
        "code": {"coding": [{"code": "referral-review"}]},
        "meta": server_time,
        "lastModified": "2027-02-01T10:00:00+01:00",
    }
    sent = {
        "resourceType": "Communication",
        "meta": server_time,
        "sent": "2027-02-01T09:30:00Z",
        "category": [{"text": "confirmation"}],
    }  # 10:30 in Stockholm: after the review line
    episode = {
        "resourceType": "EpisodeOfCare",
        "status": "active",
        "meta": server_time,
        "period": {"start": "2027-02-02T08:00:00+01:00"},
    }
    appointment = {"resourceType": "Appointment", "status": "booked", "meta": server_time}  # records no time
    steps = journey([episode, sent, review, appointment])
    assert [s.what.split()[0] for s in steps] == ["appointment", "Task", "message", "care"]
    assert [s.when for s in steps][1:] == [
        "2027-02-01T10:00:00+01:00",
        "2027-02-01T09:30:00Z",
        "2027-02-02T08:00:00+01:00",
    ]
    assert local_text("2027-02-01T09:30:00Z") == "2027-02-01 10:30" and local_text("2027-07-01") == "2027-07-01 00:00"


def test_the_participants_writes_are_placed_on_the_workflow_clock_through_the_adapters_messages() -> None:
    """A test-clock run: the adapter's moments are in 2027, the server stamps (and the unit's own
    clock) in 2026. The discharge summary came after the review; listed by its writer's clock, or
    the server's, it sorted above it. Carried over through the adapter's messages, it follows it."""

    def message(key: str, sent: str, stamp: str) -> dict:
        return {
            "resourceType": "Communication",
            "identifier": [{"system": codes().identifier_system("communication"), "value": key}],
            "meta": {"lastUpdated": stamp},
            "sent": sent,
            "category": [{"text": key}],
        }

    referral = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "meta": {"lastUpdated": "2026-12-03T07:00:00Z"},
        "authoredOn": "2026-12-03T08:00:00+01:00",
        "identifier": [{"value": "R1"}],
    }
    vid = message("VID", "2027-03-01T10:00:00+01:00", "2026-12-03T07:00:02Z")
    review = {
        "resourceType": "Task",
        "status": "completed",
        "code": {"coding": [{"code": "referral-review"}]},
        "meta": {"lastUpdated": "2026-12-03T07:00:02Z"},
        "lastModified": "2027-03-01T10:00:00+01:00",
    }
    summary = {
        "resourceType": "DocumentReference",
        "status": "current",
        "meta": {"lastUpdated": "2026-12-03T07:05:00Z"},
        "date": "2026-12-03T08:05:00+01:00",  # the unit's wall clock
    }
    letter = message("discharge-summary", "2027-07-01T08:00:00+02:00", "2026-12-03T07:05:01Z")
    steps = journey([summary, letter, review, vid, referral])
    assert [s.what.split()[0] for s in steps] == ["referral", "Task", "message", "discharge", "message"]
    assert local_text(steps[3].when) == "2027-07-01 07:59"  # a second before the adapter's answer to it
    assert local_text(steps[0].when) == "2027-03-01 09:59"  # two seconds before the first message
