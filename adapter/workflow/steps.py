"""Importing this module registers every workflow step, in the routine's order.

Read it as the table of contents of the routine: each module is one part of it, and importing a
module registers its steps (with ``@on``) after those of the modules it builds on.

* [3]-[4] arrival at the specialist clinic and assignment to a reviewer: ``arrival``
* [5] review within three working days, overdue reviews flagged: ``review.deadline``
* [6] completeness and supplement requests ``review.completeness``, patient questionnaires
  ``review.questionnaire``, the level recommendation ``review.recommendation``, the reviewer's
  decision ``review.decision``
* [7]-[8] MMRsv booked at the clinic, or the referral forwarded to the MMRpv unit: ``forwarding``;
  rejected or revoked referrals end with AVV / AVB: ``review.revocation``
* [9]-[15] the MMRpv unit: arrival, care commitment, booking at one of three sites, BEK, the
  programme, the discharge summary with the PAL offer, the 12-month follow-up:
  ``mmrpv.steps`` lists them in order
* the patient's other questionnaires (the register's forms) at each moment: ``questionnaires``
* last, on every event about a resource: a Task of ours that someone else closed gets its table's
  final business status: ``task_states.settle``
"""

from adapter.workflow import arrival, core, forwarding, questionnaires, task_states
from adapter.workflow.mmrpv import steps as mmrpv
from adapter.workflow.review import deadline, revocation

# A deleted review Task is registered (and assigned) anew: a referral must never go silent because
# someone removed its Task.
core.on("deleted:Task")(arrival.register_arrival)
core.on("deleted:Task")(arrival.assign_reviewer)

# The patient's questionnaires beyond the criteria and follow-up forms, on every resource event and
# their due timer; then, last on every resource event (timers have their own steps), a closed Task
# never keeps saying it waits for something.
_resource_events = [k for k in core.registered_keys() if not k.startswith("timer:")]
for _key in [*_resource_events, f"timer:{questionnaires.DUE_TIMER}"]:
    core.on(_key)(questionnaires.track_companions)
for _key in _resource_events:
    core.on(_key)(task_states.settle)

__all__ = ["deadline", "forwarding", "mmrpv", "revocation"]
