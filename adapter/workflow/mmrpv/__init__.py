"""The MMRpv unit and the care (routine steps 9-15), one concern per module.

Reading: ``common`` (options from ``mappings/mmrpv.yaml``, our identifiers, the referral's MMRpv
resources as loaded), ``site`` (the site nearest the patient), ``messages`` (BEK, notices and
reminders, built on ``adapter.workflow.confirmations``), ``loading`` (what the shell must load).

Steps, in the order ``steps.ORDER`` lists them (``adapter.workflow.steps`` runs them after the
review's): ``episode.commit_care`` (care commitment [10]), ``booking`` (booking rounds, the
booked Appointment, BEK [11-12], reminders), ``programme`` (the CarePlan [13]), ``discharge``
(summary and PAL offer [14], reminders, interruption), ``follow_up`` (the 12-month follow-up
[15]), ``episode.end_episode``, and last ``intake.track_intake`` (arrival [9], and where the
referral stands at the unit after all that).

This package imports nothing on purpose, like ``adapter.workflow.review``.
"""
