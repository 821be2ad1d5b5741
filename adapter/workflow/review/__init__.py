"""The specialist clinic's review of an MMR referral (routine steps 5-7), one concern per module.

Reading: ``sources`` (what the review may read: Consent first; FHIRPath over it), ``criteria``
(the four level criteria, evaluated), ``loading`` (what the shell must load for the review). The
vocabulary the review shares with the rest of the routine is in ``adapter.workflow``:
``referral``, ``tasks``, ``options``.

Steps, in the order ``adapter.workflow.steps`` runs them for one event (after
``adapter.workflow.arrival``): ``completeness`` (supplement request, KOM), ``questionnaire`` (the
patient's intake questionnaire), ``recommendation`` (the level the criteria recommend),
``decision`` (reviewer or auto, rejection), then ``adapter.workflow.forwarding`` and the MMRpv
steps, then ``revocation`` (its place matters little: every other step requires an active
referral); ``deadline`` handles the overdue timer.

This package imports nothing on purpose: ``adapter.workflow.load`` imports ``loading`` in
processes that never run a step.
"""
