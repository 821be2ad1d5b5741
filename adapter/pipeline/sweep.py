"""The sweep: every open referral is looked at again, periodically, whatever was or was not notified.

Notifications get lost and timers are written after the transaction that made them necessary, so
either can go missing. What must happen later is derivable from the FHIR server: the sweep finds
the referrals with an open Task of the adapter's and queues one event for each, which re-runs the
referral's steps and sets again every timer its state requires (``Routine.due_later``). A Task that
was deleted is noticed too: a referral open at the last sweep and without an open Task now is
looked at once more (its steps register a missing review Task anew), since a delete is invisible
to searches and to reconciliation.
"""

from __future__ import annotations

from collections.abc import Callable

from adapter.fhir.client import FhirClient
from adapter.fhir.resource import local_reference
from adapter.mappings import codes
from adapter.pipeline.envelope import Envelope
from adapter.pipeline.runner import SWEEP
from adapter.pipeline.state import State
from adapter.workflow.tasks import OPEN


def open_referrals(fhir: FhirClient) -> set[str]:
    """The ids of the ServiceRequests an open Task of the adapter's is about."""
    params = [
        ("identifier", f"{codes().identifier_system('task')}|"),
        ("status", ",".join(sorted(OPEN))),
        ("_count", "100"),
    ]
    found = set()
    for bundle in fhir.pages("Task", params):
        for entry in bundle.get("entry") or ():
            focus = str(((entry.get("resource") or {}).get("focus") or {}).get("reference") or "")
            kind, _, rid = (local_reference(focus) or "").partition("/")
            if kind == "ServiceRequest":
                found.add(rid)
    return found


def sweep(fhir: FhirClient, state: State, enqueue: Callable[[Envelope], None]) -> int:
    """Queue one event for each open referral (and each one open last time); returns how many."""
    current = open_referrals(fhir)
    for referral_id in sorted(current | state.sweep.referrals()):
        enqueue(Envelope("changed", SWEEP, "ServiceRequest", referral_id))
    state.sweep.set_referrals(current)
    return len(current)
