"""The routine, as one table: which steps run for which event, in which order.

Read :data:`ROUTINE` as the routine's table of contents, one row ``(step, event keys)`` per step in
the order the steps run for one event (each sees the state the earlier ones planned):

* [3]-[4] an MMR referral that names no specialist clinic of the routine is held by the referral
  coordinator, the referrer told why: ``holding``; an open Task of ours someone left without an
  owner goes back to the party the routine gives it, visibly: ``responsibility``; arrival at the specialist clinic and
  assignment to a reviewer: ``arrival``
* [5] review within three working days, overdue reviews flagged: ``review.deadline``
* [6] completeness and supplement requests ``review.completeness``, patient questionnaires
  ``review.questionnaire``, the level recommendation ``review.recommendation``, the reviewer's
  decision ``review.decision`` (refused, visibly, when the routine cannot act on it:
  ``review.refusal``)
* [7]-[8] MMRsv booked at the clinic, or the referral forwarded to the MMRpv unit: ``forwarding``
* [9]-[15] the MMRpv unit: arrival, care commitment, booking at one of three sites, BEK, the
  programme, the discharge summary with the PAL offer, the 12-month follow-up, in the order
  ``mmrpv.steps.ORDER`` lists them
* rejected or revoked referrals end with AVV / AVB: ``review.revocation``
* the patient's other questionnaires (the register's forms) at each moment: ``questionnaires``
* last, on every event about a resource: a Task of ours that someone else closed gets its table's
  final business status: ``task_states.settle``

The shell (``adapter.pipeline``) imports this module only where it runs steps: the API process
never loads them.
"""

from __future__ import annotations

from adapter.workflow import arrival, forwarding, holding, questionnaires, responsibility, task_states
from adapter.workflow.core import Routine
from adapter.workflow.mmrpv import steps as mmrpv
from adapter.workflow.mmrpv.common import EVENTS as MMRPV_EVENTS
from adapter.workflow.review import (
    completeness,
    deadline,
    decision,
    questionnaire,
    recommendation,
    refusal,
    revocation,
)
from adapter.workflow.tasks import REVIEW_EVENTS

# Every event about a resource the routine looks at (timers have their own steps).
RESOURCE_EVENTS = tuple(dict.fromkeys((*REVIEW_EVENTS, *MMRPV_EVENTS)))

ROUTINE = Routine.of(
    # [3]-[4] arrival and assignment: first an MMR referral no clinic can own is held by the
    # region's referral coordinator (and released when corrected), never dropped
    (holding.hold_unroutable, ("ServiceRequest", "Task")),
    # an open Task of ours someone left without owner goes back to its rightful owner, visibly
    (responsibility.restore_owner, RESOURCE_EVENTS),
    (arrival.register_arrival, ("ServiceRequest", "Task", "deleted:Task")),
    (arrival.assign_reviewer, ("ServiceRequest", "Task")),
    (arrival.record_start, ("Task",)),
    # [5] the review's deadline
    (deadline.flag_overdue, (f"timer:{deadline.OVERDUE_TIMER}",)),
    # [6] the review: first, a reviewer's input the routine cannot act on is refused, visibly
    (refusal.refuse_invalid, ("Task",)),
    (completeness.check_completeness, REVIEW_EVENTS),
    (completeness.remind_referrer, (f"timer:{completeness.REMINDER_TIMER}",)),
    (questionnaire.manage_questionnaire, REVIEW_EVENTS),
    (questionnaire.chase_patient, (f"timer:{questionnaire.REMINDER_TIMER}",)),
    (recommendation.recommend_level, recommendation.RECOMMEND_EVENTS),
    (decision.record_decision, recommendation.RECOMMEND_EVENTS),
    # [7]-[8] MMRsv at the clinic, or forwarded to the MMRpv unit
    (forwarding.forward, recommendation.RECOMMEND_EVENTS),
    # [9]-[15] the MMRpv unit
    *((step, mmrpv.KEYS) for step in mmrpv.ORDER),
    # A deleted review Task is registered (above) and assigned anew: a referral must never go silent
    # because someone removed its Task.
    (arrival.assign_reviewer, ("deleted:Task",)),
    # Rejected or revoked: AVV / AVB (every step above requires an active referral).
    (revocation.revoke, REVIEW_EVENTS),
    # The patient's questionnaires beyond the criteria and follow-up forms, on every resource event
    # and their due timer.
    (questionnaires.track_companions, (*RESOURCE_EVENTS, f"timer:{questionnaires.DUE_TIMER}")),
    # Last on every resource event: a closed Task never keeps saying it waits for something.
    (task_states.settle, RESOURCE_EVENTS),
)
