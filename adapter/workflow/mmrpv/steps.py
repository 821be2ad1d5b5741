"""The MMRpv steps in the order they run, and the one list of events and timers they all run for.

All of them are level-triggered and each checks for itself whether it has anything to do, so they
share one list of events: an Appointment, a CarePlan, a DocumentReference, a QuestionnaireResponse,
any Task or a change of the referral, and each of the MMRpv timers. ``adapter.workflow.steps``
places them in the routine, after the review's.
"""

from __future__ import annotations

from adapter.workflow.mmrpv import booking, discharge, episode, follow_up, intake, programme
from adapter.workflow.mmrpv.common import EVENTS, TIMERS

KEYS = (*EVENTS, *(f"timer:{name}" for name in TIMERS))

ORDER = (
    episode.commit_care,
    booking.open_booking,
    booking.complete_booking,
    booking.refuse_booking,
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
