"""Rows per second of the ViewDefinition runner, beside plain fhirpathpy evaluating the same paths.

Generates referral-shaped resources (ServiceRequests, review Tasks with outputs of several types,
Appointments), runs three ViewDefinitions over them with the runner as it is
(``adapter.fhir.fhirpath.nodes``: compiled closures, fhirpathpy where they do not reach) and again
with every path handed to fhirpathpy (parsed once, evaluated by its interpreter), and prints the
rows per second of each. Both must give the same rows, or the figure means nothing: the run stops
if they differ. A benchmark, not a test. Run: ``python bench/views.py [--resources N] [--repeat R]``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import fhirpathpy
from fhirpathpy.engine.nodes import ResourceNode

from adapter.fhir import fhirpath
from adapter.flow import viewdef
from adapter.flow.viewdef import parse_view

VIEWS: dict[str, dict[str, Any]] = {
    "referrals (flat, getReferenceKey, where)": {
        "resource": "ServiceRequest",
        "where": [{"path": "status != 'entered-in-error'"}],
        "select": [
            {
                "column": [
                    {"name": "id", "path": "getResourceKey()"},
                    {"name": "patient", "path": "subject.getReferenceKey(Patient)"},
                    {"name": "identifier", "path": "identifier.where(system = 'urn:x:referral').value.first()"},
                    {"name": "authored", "path": "authoredOn"},
                    {"name": "status", "path": "status"},
                    {"name": "clinic", "path": "performer.first().identifier.value"},
                    {"name": "urgent", "path": "priority = 'urgent'"},
                ]
            }
        ],
    },
    "task outputs (forEach, ofType on a choice)": {
        "resource": "Task",
        "select": [
            {
                "column": [
                    {"name": "task", "path": "getResourceKey()"},
                    {"name": "referral", "path": "focus.getReferenceKey(ServiceRequest)"},
                    {"name": "owner", "path": "owner.identifier.value"},
                    {"name": "deadline", "path": "restriction.period.end"},
                ]
            },
            {
                "forEachOrNull": "output",
                "column": [
                    {"name": "kind", "path": "type.coding.code.first()"},
                    {"name": "text", "path": "value.ofType(string)"},
                    {"name": "flag", "path": "value.ofType(boolean)"},
                    {"name": "code", "path": "value.ofType(CodeableConcept).coding.code.first()"},
                ],
            },
        ],
    },
    "bookings (unionAll)": {
        "resource": "Appointment",
        "select": [
            {"column": [{"name": "id", "path": "id"}, {"name": "status", "path": "status"}]},
            {
                "unionAll": [
                    {"column": [{"name": "moment", "path": "start"}, {"name": "what", "path": "'start'"}]},
                    {"column": [{"name": "moment", "path": "end"}, {"name": "what", "path": "'end'"}]},
                ]
            },
        ],
    },
}


def resources(count: int, seed: int = 24) -> list[dict[str, Any]]:
    """``count`` referrals, each with a review Task and, for most, an Appointment: varied, some elements missing."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for n in range(count):
        ref = f"sr{n}"
        day = f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        out.append(
            {
                "resourceType": "ServiceRequest",
                "id": ref,
                "identifier": [
                    {"system": "urn:x:referral", "value": f"R-{n}"},
                    {"system": "urn:x:other", "value": "o"},
                ],
                "status": rng.choice(["active", "active", "completed", "revoked", "entered-in-error"]),
                "intent": "order",
                "priority": rng.choice(["routine", "urgent"]),
                "subject": {"reference": f"Patient/p{n}"},
                "authoredOn": f"{day}T09:00:00+01:00",
                "performer": [{"identifier": {"system": "urn:x:hsa", "value": f"SE-{rng.randint(1, 9)}"}}],
            }
        )
        outputs = [
            {"type": {"coding": [{"code": "note"}]}, "valueString": "ok"},
            {"type": {"coding": [{"code": "complete"}]}, "valueBoolean": rng.random() < 0.5},
            {"type": {"coding": [{"code": "decision"}]}, "valueCodeableConcept": {"coding": [{"code": "MMRpv"}]}},
        ][: rng.randint(0, 3)]
        out.append(
            {
                "resourceType": "Task",
                "id": f"t{n}",
                "status": "in-progress",
                "intent": "order",
                "focus": {"reference": f"ServiceRequest/{ref}"},
                "owner": {"identifier": {"value": f"SE-{rng.randint(1, 9)}-r"}},
                "restriction": {"period": {"start": f"{day}T09:00:00+01:00", "end": f"{day}T23:59:59+01:00"}},
                **({"output": outputs} if outputs else {}),
            }
        )
        if rng.random() < 0.8:
            out.append(
                {
                    "resourceType": "Appointment",
                    "id": f"a{n}",
                    "status": rng.choice(["booked", "fulfilled", "cancelled"]),
                    "start": f"{day}T10:00:00+01:00",
                    "end": f"{day}T11:00:00+01:00",
                    "participant": [{"status": "accepted"}],
                }
            )
    return out


def plain(expression: str) -> Callable[[fhirpath.Item, Mapping[str, Any]], list[fhirpath.Item]]:
    """The same path evaluated by fhirpathpy alone (parsed once), on the same typed node."""
    interpreted = fhirpathpy.compile(expression, fhirpath.R4, {**fhirpath.OPTIONS, "returnRawData": True})

    def evaluate(node: fhirpath.Item, variables: Mapping[str, Any]) -> list[fhirpath.Item]:
        result = interpreted(ResourceNode.create_node(node[0], node[1]), dict(variables))
        return [(r.data, r.path) if isinstance(r, ResourceNode) else (r, None) for r in result]

    return evaluate


def timed(
    run: Callable[[], list[dict[str, Any]]], repeat: int, nodes: Callable[..., Any]
) -> tuple[float, list[dict[str, Any]]]:
    """Median seconds of ``repeat`` runs with ``nodes`` as the runner's path engine, and the rows of the last."""
    seconds, rows = [], []
    saved, viewdef.nodes = viewdef.nodes, nodes
    try:
        for _ in range(repeat):
            started = time.perf_counter()
            rows = run()
            seconds.append(time.perf_counter() - started)
    finally:
        viewdef.nodes = saved
    return statistics.median(seconds), rows


def lines(count: int, repeat: int) -> Iterator[str]:
    data = resources(count)
    yield f"{len(data)} resources ({count} referrals), median of {repeat} runs\n"
    yield "| view | rows | runner (compiled) rows/s | plain fhirpathpy rows/s | ratio |"
    yield "|---|---:|---:|---:|---:|"
    engines = {"compiled": viewdef.nodes, "plain": plain}  # the runner unchanged, only its path engine swapped
    for title, definition in VIEWS.items():
        view = parse_view(definition)
        runs = {name: timed(lambda view=view: list(view.rows(data)), repeat, nodes) for name, nodes in engines.items()}
        (fast, rows), (slow, same) = runs["compiled"], runs["plain"]
        if json.dumps(rows, sort_keys=True, default=str) != json.dumps(same, sort_keys=True, default=str):
            raise SystemExit(f"{title}: the compiled and the plain runs give different rows")
        yield f"| {title} | {len(rows)} | {len(rows) / fast:,.0f} | {len(rows) / slow:,.0f} | {slow / fast:.1f}x |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--resources", type=int, default=2000, help="referrals to generate (default 2000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement, the median counts (3)")
    args = parser.parse_args()
    for line in lines(args.resources, args.repeat):
        print(line)


if __name__ == "__main__":
    main()
