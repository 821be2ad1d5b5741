"""The functional core: the MMR referral routine as pure steps, state in, planned writes and timers out.

Reading: ``core`` (a step is a pure ``(Referral, Event, Context) -> Plan``; ``Routine``, the
table steps run from) and ``steps`` (``ROUTINE``: which steps run for which event, in which
order, the routine's table of contents).

The vocabulary every step shares: ``referral`` (is it an MMR referral of ours, which clinic, its
key, safe references), ``tasks`` (the review Task and its siblings, finding what the adapter
made, revising it), ``options`` (configuration, defaults from ``mappings/``), ``calendar``
(Swedish working days), ``confirmations`` (BEK, VID, KOM, AVV, AVB and notices as
Communications).

The parts of the routine: ``arrival`` [3]-[4], ``review`` [5]-[7], ``forwarding`` [7]-[8],
``mmrpv`` [9]-[15], ``questionnaires`` (the register's forms at each moment), ``task_states``
(the Task state tables; ``settle``, last on every event).

What the shell asks of the core besides running the routine: ``routing`` (which referral an event
belongs to) and ``load`` (what to load for it, as FHIR searches). Nothing here reads or writes;
``adapter.pipeline`` does. No package ``__init__`` here imports anything, so a process that
imports the shell without running steps (the API's, to enqueue) never loads the steps.
"""
