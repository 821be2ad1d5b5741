"""``mmr-adapter setup``: check the server, install the directory (and conformance package), subscribe.

Everything is idempotent: run it on every deployment. A resource is written only when it differs
from what the server holds, so a second run changes nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from adapter.fhir.client import FhirClient, FhirError, NotFound
from adapter.mappings import HSA_SYSTEM, Unit, codes, directory, load
from adapter.pipeline import delivery, heartbeat
from adapter.pipeline.reconcile import subscription_criteria
from adapter.pipeline.state import State
from adapter.polling import poll

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
NEEDED_TYPES = (
    "ServiceRequest",
    "Task",
    "Communication",
    "Subscription",
    "Organization",
    "PractitionerRole",
    "Location",
    "Patient",
    "Consent",
    "QuestionnaireResponse",
)
SEND_DELETES = "http://hapifhir.io/fhir/StructureDefinition/subscription-send-delete-messages"
ACTIVATION_TIMEOUT = 30.0  # seconds setup waits for the server to take its Subscriptions up


@dataclass
class Report:
    missing: list[str] = field(default_factory=list)  # fatal: setup cannot go on
    warnings: list[str] = field(default_factory=list)
    written: list[tuple[str, str]] = field(default_factory=list)  # (reference, created|updated|replaced|unchanged)


def check_capabilities(statement: dict[str, Any], topic_based: bool) -> tuple[list[str], list[str]]:
    """What the server lacks for the workflow: (fatal, warnings), in plain words."""
    fatal: list[str] = []
    warnings: list[str] = []
    version = statement.get("fhirVersion", "")
    if not version.startswith("4.0"):
        fatal.append(f"FHIR version {version or 'unknown'}: the adapter speaks R4 (4.0.x)")
    rest: dict[str, Any] = next((r for r in statement.get("rest") or () if r.get("mode") == "server"), {})
    types = {r.get("type"): r for r in rest.get("resource") or ()}
    for t in NEEDED_TYPES:
        if t not in types:
            (fatal if t in ("ServiceRequest", "Task", "Subscription") else warnings).append(
                f"resource type {t} is not supported"
            )
    system_interactions = {i.get("code") for i in rest.get("interaction") or ()}
    if system_interactions and "transaction" not in system_interactions:
        fatal.append("transactions are not supported (each workflow step writes one transaction)")
    task = types.get("Task") or {}
    interactions = {i.get("code") for i in task.get("interaction") or ()}
    if interactions and not {"create", "update", "search-type"} <= interactions:
        fatal.append("Task needs create, update and search")
    if task and not task.get("conditionalCreate", True):
        warnings.append("conditional create is not declared: duplicates are prevented by locks only")
    if topic_based and "Basic" not in types and "SubscriptionTopic" not in types:
        fatal.append("topic-based subscriptions need SubscriptionTopic (or Basic for the R4 backport)")
    return fatal, warnings


# ------------------------------------------------------------------ directory


def _org(unit: Unit, part_of: Unit | None = None) -> dict[str, Any]:
    org: dict[str, Any] = {
        "resourceType": "Organization",
        "id": unit.hsa_id,
        "active": True,
        "identifier": [unit.identifier],
        "name": unit.name,
    }
    if part_of:
        org["partOf"] = {"reference": f"Organization/{part_of.hsa_id}", "display": part_of.name}
    return org


def directory_resources() -> list[dict[str, Any]]:
    """The directory as FHIR resources, each with its HSA-id as identifier and as logical id."""
    d = directory()
    out: list[dict[str, Any]] = []
    for clinic in d.clinics:
        out.append(_org(clinic))
        for reviewer in clinic.reviewers:
            out.append(
                {
                    "resourceType": "PractitionerRole",
                    "id": reviewer.hsa_id,
                    "active": True,
                    "identifier": [reviewer.identifier],
                    "organization": {"reference": f"Organization/{clinic.hsa_id}", "display": clinic.name},
                    "code": [{"text": "Remissgranskare"}],
                    "practitioner": {"display": reviewer.name},
                }
            )
    out.append(_org(d.mmrpv))
    out.append(_org(d.mmrpv_admin, part_of=d.mmrpv))
    out.append(_org(d.coordinator))
    for site in d.sites:
        out.append(
            {
                "resourceType": "Location",
                "id": site.hsa_id,
                "status": "active",
                "identifier": [site.identifier],
                "name": site.name,
                "address": {"city": site.ort},
                "managingOrganization": {"reference": f"Organization/{d.mmrpv.hsa_id}", "display": d.mmrpv.name},
            }
        )
    return out


def _same(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    return all(current.get(k) == v for k, v in wanted.items())


def upsert(client: FhirClient, resource: dict[str, Any]) -> str:
    """PUT by id unless the server already holds exactly this content."""
    try:
        current = client.read(resource["resourceType"], resource["id"])
    except NotFound:
        current = None
    if current is not None and _same(current, resource):
        return "unchanged"
    client.update(resource)
    return "updated" if current else "created"


# ------------------------------------------------------------------ subscriptions


def wanted_subscriptions(notify_url: str, token: str, topic_based: bool) -> list[dict[str, Any]]:
    """The Subscriptions of ``mappings/subscriptions.yaml``; ``_fallback`` is our note, never sent."""
    header = [f"Authorization: Bearer {token}"]
    subs: list[dict[str, Any]] = []
    for entry, criteria in zip(load("subscriptions")["subscriptions"], subscription_criteria(), strict=True):
        channel: dict[str, Any] = {
            "type": "rest-hook",
            "endpoint": notify_url,
            "payload": "application/fhir+json",
            "header": header,
        }
        sub: dict[str, Any] = {
            "resourceType": "Subscription",
            "meta": {"tag": [delivery.mark()]},
            "status": "requested",
            "reason": entry["reason"],
            "criteria": criteria,
            "channel": channel,
        }
        if topic_based:
            topic = codes().fill(entry.get("topic", ""))
            if not topic or any(s["criteria"] == topic for s in subs):
                continue
            sub["meta"]["profile"] = [f"{BACKPORT}/backport-subscription"]
            sub["criteria"] = topic
            # The topic says what triggers; HAPI still refuses a topic subscription without a filter
            # (HAPI-0011), so this one lets through every resource of the topic's type.
            resource_type = entry["criteria"].split("?", 1)[0]
            sub["_criteria"] = {
                "extension": [{"url": f"{BACKPORT}/backport-filter-criteria", "valueString": f"{resource_type}?"}]
            }
            channel["_payload"] = {
                "extension": [{"url": f"{BACKPORT}/backport-payload-content", "valueCode": "full-resource"}]
            }
        else:
            # HAPI delivers deletes only to channels carrying its extension; a deleted Task must be noticed.
            channel["extension"] = [{"url": SEND_DELETES, "valueBoolean": True}]
            if entry.get("fallback"):
                sub["_fallback"] = codes().fill(entry["fallback"])
        subs.append(sub)
    # Classic in either mode: the probe that proves delivery, never searched by reconciliation.
    subs.append(
        {
            "resourceType": "Subscription",
            "meta": {"tag": [delivery.mark()]},
            "status": "requested",
            "criteria": heartbeat.criteria(),
            "reason": delivery.HEARTBEAT_REASON,
            "channel": {
                "type": "rest-hook",
                "endpoint": notify_url,
                "payload": "application/fhir+json",
                "header": header,
                "extension": [{"url": SEND_DELETES, "valueBoolean": True}],
            },
        }
    )
    return subs


def prove_delivery(client: FhirClient, state: State, notify_url: str, timeout: float) -> str | None:
    """Write the heartbeat until its notification comes back; otherwise say, in one line, why not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        written = heartbeat.write(client, state)  # again each round: a new Subscription may activate late

        def came_back(w: float = written) -> bool:
            return (state.heartbeat.last_delivered() or 0.0) >= w

        if poll(
            came_back,
            min(5.0, max(deadline - time.monotonic(), 0.0)),
            0.2,
        ):
            return None
    found = client.search("Subscription", {"_count": "200"})
    here = [s for s in delivery.ours(found, notify_url) if delivery.endpoint(s) == notify_url]
    return delivery.silence(here, notify_url, timeout)


def _create(client: FhirClient, sub: dict[str, Any]) -> dict[str, Any]:
    """Create a Subscription; if the server refuses its criteria, try the fallback criteria."""
    fallback = sub.pop("_fallback", None)
    try:
        created = client.create(sub)
    except FhirError as exc:
        if fallback is None or exc.status >= 500:
            raise
        return client.create({**sub, "criteria": fallback})
    if fallback:  # some servers accept first and reject while activating: look again
        created = client.read("Subscription", created["id"])
        if created.get("status") == "error":  # replaced, never re-activated (see ensure_subscriptions)
            replacement = client.create({**sub, "criteria": fallback})
            client.delete("Subscription", created["id"])
            return replacement
    return created


def ensure_subscriptions(client: FhirClient, wanted: list[dict[str, Any]], notify_url: str) -> list[tuple[str, str]]:
    """Create what is missing, replace what drifted (went to error/off, lost its mark, or delivers
    to another endpoint), remove the adapter's own that deliver elsewhere, leave the rest.

    The adapter's own are known by their mark (``delivery.marked``), never by their endpoint: with a
    new ``MMR_PUBLIC_URL`` the old ones would otherwise stay, delivering to nobody (and a dead
    endpoint holds up a server's deliveries) or to an old API that proves nothing about this one.
    """
    out = []
    found = [s for s in client.search("Subscription", {"_count": "200"}) if s.get("resourceType") == "Subscription"]
    # Candidates: ours by the mark, or delivering here; those delivering here first, so they are kept.
    candidates = sorted(delivery.ours(found, notify_url), key=lambda s: delivery.endpoint(s) != notify_url)
    for sub in wanted:
        accepted = (sub["criteria"], sub.get("_fallback"))
        match = next((s for s in candidates if s.get("criteria") in accepted), None)
        if match is None:
            created = _create(client, sub)
            out.append((f"Subscription/{created.get('id')}", "created"))
            continue
        candidates.remove(match)
        fallback = sub.pop("_fallback", None)
        criteria = fallback if fallback and match.get("status") == "error" else match["criteria"]
        healthy = delivery.healthy(match)
        same = all((match.get("channel") or {}).get(k) == v for k, v in sub["channel"].items())
        if healthy and same and match.get("reason") == sub["reason"] and delivery.tagged(match):
            out.append((f"Subscription/{match['id']}", "unchanged"))
            continue
        # A new Subscription, then the old one away, never the old one changed: HAPI 8.2 re-registering
        # a Subscription it had taken down (switched off, in error, or changed) has been seen to leave
        # it without a delivery handler for good ("Channel has zero subscribers"). For a moment both
        # exist; a change notified twice is one event to the adapter.
        created = client.create({**sub, "criteria": criteria})
        client.delete("Subscription", match["id"])
        out.append((f"Subscription/{created.get('id')}", "replaced"))
    for stale in delivery.elsewhere(candidates, notify_url):  # ours, delivering elsewhere, wanted by nothing
        client.delete("Subscription", stale["id"])
        out.append((f"Subscription/{stale['id']}", "removed"))
    return out


def await_activation(client: FhirClient, refs: list[str], timeout: float = ACTIVATION_TIMEOUT) -> list[str]:
    """Wait until the server has taken these Subscriptions up; those still ``requested`` after ``timeout``.

    HAPI activates a Subscription asynchronously: what is written before it has is never notified,
    so setup is done only once notifications flow. A server without the channel type enabled
    leaves the Subscription ``requested`` for ever, without an error.
    """
    pending = set(refs)

    def settled() -> bool:
        for ref in sorted(pending):
            if not delivery.waiting(client.read("Subscription", ref.split("/", 1)[1])):
                pending.discard(ref)
        return not pending

    poll(settled, timeout, interval=0.25)
    return sorted(pending)


def run_setup(
    client: FhirClient,
    *,
    notify_url: str,
    token: str,
    topic_based: bool = False,
    install_conformance: bool = True,
    state: State | None = None,
    delivery_timeout: float = 60.0,
) -> Report:
    """Check, install, subscribe; with ``state`` (the adapter's Redis), then prove that a change
    comes back as a notification within ``delivery_timeout`` seconds (a failure is fatal).

    The proof is a heartbeat written after the Subscriptions are settled, when the only ones of
    ours that deliver it go to ``notify_url``: one that comes back came through this endpoint, not
    through an old one whose API still runs."""
    report = Report()
    try:
        statement = client.capabilities()
    except FhirError as exc:
        report.missing.append(f"the server's CapabilityStatement could not be read: {exc.message}")
        return report
    report.missing, report.warnings = check_capabilities(statement, topic_based)
    if report.missing:
        return report
    if install_conformance:
        try:
            from adapter.conformance.install import install_package
        except ImportError:
            report.warnings.append("conformance package installer not available")
        else:
            report.written += install_package(client)
    for resource in directory_resources():
        report.written.append((f"{resource['resourceType']}/{resource['id']}", upsert(client, resource)))
    subscriptions = ensure_subscriptions(client, wanted_subscriptions(notify_url, token, topic_based), notify_url)
    report.written += subscriptions
    for ref in await_activation(client, [ref for ref, what in subscriptions if what != "removed"]):
        report.warnings.append(
            f"{ref} is still 'requested' after {ACTIVATION_TIMEOUT:.0f} s: the server has not "
            "taken it up, so nothing is notified (HAPI: hapi.fhir.subscription.resthook_enabled)"
        )
    if state is not None and (problem := prove_delivery(client, state, notify_url, delivery_timeout)):
        report.missing.append(f"delivery: {problem}")
    return report


__all__ = ["HSA_SYSTEM", "Report", "check_capabilities", "directory_resources", "run_setup"]
