"""Traffic that is no referral's business, written beside every end-to-end scenario.

A regional FHIR server notifies about every booked Appointment, completed Communication, current
DocumentReference and QuestionnaireResponse of every patient. :class:`Noise` writes such resources
of every subscribed type (other patients', other workflows') while a test runs, so each scenario
meets them in its queue; afterwards the suite checks that none was dead-lettered or written to.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

from adapter.fhir.client import FhirClient, FhirError
from adapter.pipeline.state import State


def unrelated(tag: str) -> list[dict[str, Any]]:
    """One round of resources that concern no MMR referral: at least one of every subscribed type."""
    patient = {"reference": f"Patient/other-{tag}", "display": "Another patient"}
    physio = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "subject": patient,
        "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "91251008"}]}],
        "code": {"text": "Physiotherapy"},
    }
    return [
        physio,
        {
            "resourceType": "Appointment",
            "status": "booked",
            "start": "2027-01-11T09:00:00+01:00",
            "end": "2027-01-11T09:30:00+01:00",
            "participant": [{"actor": patient, "status": "accepted"}],
        },
        {
            "resourceType": "Communication",
            "status": "completed",
            "subject": patient,
            "payload": [{"contentString": "Your prescription is ready"}],
        },
        {
            "resourceType": "DocumentReference",
            "status": "current",
            "subject": patient,
            "content": [{"attachment": {"contentType": "text/plain", "data": "bm9pc2U="}}],
        },
        {
            "resourceType": "QuestionnaireResponse",
            "status": "completed",
            "subject": patient,
            "questionnaire": "http://example.org/Questionnaire/phq-9",
        },
        {
            "resourceType": "Task",
            "status": "requested",
            "intent": "order",
            "for": patient,
            "code": {"coding": [{"system": "http://example.org/other-workflow", "code": "lab-order"}]},
        },
        {"resourceType": "CarePlan", "status": "active", "intent": "plan", "subject": patient},
        {
            "resourceType": "Consent",
            "status": "active",
            "scope": {"text": "research"},
            "category": [{"text": "x"}],
            "patient": patient,
        },
        {"resourceType": "EpisodeOfCare", "status": "active", "patient": patient},
    ]


class Noise:
    """Writes a round of unrelated resources every ``every`` seconds until stopped; remembers them."""

    def __init__(self, fhir: FhirClient, every: float = 1.0) -> None:
        self.fhir, self.every = fhir, every
        self.written: list[tuple[str, str]] = []  # (type, id), each created at version 1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Noise:
        self._round()  # one round before the scenario starts, so its first events queue behind noise
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _round(self) -> None:
        tag = uuid.uuid4().hex[:8]
        try:  # the other patient exists: HAPI refuses references to a missing one (HAPI-1094)
            self.fhir.update({"resourceType": "Patient", "id": f"other-{tag}", "active": True})
        except FhirError:
            return
        for body in unrelated(tag):
            try:
                made = self.fhir.create(body)
            except FhirError:
                continue  # the server refused it (a test made it fail on purpose): no noise then
            self.written.append((made["resourceType"], made["id"]))

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._round()

    def types(self) -> set[str]:
        """The resource types the noise got onto the server."""
        return {rtype for rtype, _ in self.written}

    def touched(self) -> list[str]:
        """The noise resources that are no longer at the version we wrote: someone wrote to them."""
        by_type: dict[str, list[str]] = {}
        for rtype, rid in self.written:
            by_type.setdefault(rtype, []).append(rid)
        moved = []
        for rtype, ids in by_type.items():
            for chunk in (ids[i : i + 50] for i in range(0, len(ids), 50)):
                for found in self.fhir.search(rtype, {"_id": ",".join(chunk), "_count": "100"}):
                    if found.get("resourceType") == rtype and (found.get("meta") or {}).get("versionId") != "1":
                        moved.append(f"{rtype}/{found['id']}")
        return moved

    def dead_lettered(self, state: State) -> list[str]:
        ours = {f"{t}/{i}" for t, i in self.written}
        return [
            f"{e['envelope'].get('resource_type')}/{e['envelope'].get('resource_id')}"
            for e in state.dlq.entries()
            if f"{e['envelope'].get('resource_type')}/{e['envelope'].get('resource_id')}" in ours
        ]
