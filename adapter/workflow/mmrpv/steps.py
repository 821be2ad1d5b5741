"""Registers the MMRpv steps, in order, for every event and timer they compare the state after.

All of them are level-triggered and each checks for itself whether it has anything to do, so they
share one list of events: an Appointment, a CarePlan, a DocumentReference, a QuestionnaireResponse,
any Task or a change of the referral, and each of the MMRpv timers.
"""

from __future__ import annotations

from adapter.workflow import forwarding  # noqa: F401  (the review's steps run first)
from adapter.workflow.core import on
from adapter.workflow.mmrpv import booking, discharge, episode, follow_up, intake, programme
from adapter.workflow.mmrpv.common import EVENTS, TIMERS

ORDER = (
    episode.commit_care,
    booking.open_booking,
    booking.complete_booking,
    booking.confirm_booking,
    booking.remind_booking,
    programme.plan_programme,
    programme.ask_questionnaires,
    discharge.send_discharge,
    discharge.tell_interruption,
    follow_up.schedule_follow_up,
    follow_up.run_follow_up,
    episode.end_episode,
    intake.track_intake,  # last: the intake Task shows what this event's steps made of the referral
)

for step in ORDER:
    on(*EVENTS, *(f"timer:{name}" for name in TIMERS))(step)
