"""A revoked referral: every open Task of it is cancelled, and referrer and patient get ``AVB``.

Revocation is the referrer setting the ServiceRequest ``revoked``. It is checked first on every
event, so nothing else plans work for a referral that no longer stands (the other steps also
require the ServiceRequest to be ``active``). AVB goes out once the referral had arrived (a review
Task exists), unless the clinic had already rejected it.
"""

from __future__ import annotations

from adapter.workflow import confirmations as conf
from adapter.workflow import options
from adapter.workflow.core import NOTHING, Context, Event, Plan, Referral, note
from adapter.workflow.referral import REVOKED, is_mmr_referral, performer_clinic
from adapter.workflow.tasks import cancel, is_open, referral_tasks, review_task


def revoke(referral: Referral, event: Event, ctx: Context) -> Plan:
    """Cancel what is open and tell referrer and patient, once."""
    sr = referral.service_request
    if sr.get("status") != REVOKED or not is_mmr_referral(sr) or performer_clinic(referral) is None:
        return NOTHING
    review = review_task(referral)
    if review is None:
        return note("referral revoked before its arrival was registered: nothing to cancel")
    why = conf.reason("revoked", options.language(ctx))
    writes = tuple(cancel(referral, t, why, ctx, "revoked") for t in referral_tasks(referral) if is_open(t))
    plan = Plan(writes=writes, notes=(f"referral revoked: {len(writes)} open Task(s) cancelled",) if writes else ())
    if review.get("status") == "rejected":
        return plan
    return plan + conf.confirm(referral, ctx, "AVB", "revoked")
