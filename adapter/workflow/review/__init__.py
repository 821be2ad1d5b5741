"""The specialist clinic's review of an MMR referral (routine steps 5-7), one concern per module.

Reading: ``referral`` (is it ours, which clinic, safe references), ``state`` (the review Task
and its siblings, how to revise them), ``sources`` (what the review may read: Consent first),
``options`` (configuration with defaults from ``mappings/review.yaml``).

Steps, in the order they run for one event (``adapter.workflow.arrival`` first):
``completeness`` (supplement request, KOM), ``questionnaire`` (the patient's intake
questionnaire), ``recommendation`` (the four criteria, evaluated by ``criteria``), ``decision``
(reviewer or auto, rejection), then ``adapter.workflow.forwarding``. ``revocation`` may run
anywhere in that order (every other step requires an active referral); ``deadline`` handles the
overdue timer.

This package imports nothing on purpose: ``adapter.workflow.arrival`` imports from it. Each step
module imports the module whose steps must run before its own, so importing
``adapter.workflow.forwarding`` registers the whole chain in the routine's order whoever imports
what first.
"""
