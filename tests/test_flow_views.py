"""The ViewDefinition runner (``adapter.flow.viewdef``) against SQL on FHIR v2's own conformance cases.

Every case of every file in ``tests/data/sql-on-fhir/`` (copied from the spec's repository, see its
README) runs: the rows compared order-insensitively, as the spec's runner compares them (a row is a
set of column values, the view's rows a multiset of rows); an ``expectError`` case must raise. A case
this runner does not implement is an xfail(strict=True) in :data:`NOT_IMPLEMENTED` with its reason,
so it fails loudly the day it passes. Then the command, ``mmr-adapter view run``, on the three inputs
it reads and the three formats it writes, and its one line for an invalid ViewDefinition.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from adapter.flow.viewdef import RunError, ViewError, parse_view, run

CASES_DIR = Path(__file__).parent / "data" / "sql-on-fhir"

# (file, title) -> why this runner does not pass it. Only the spec's "experimental" functions.
BOUNDARY = "lowBoundary()/highBoundary(): experimental in the spec, and fhirpathpy has neither"
NOT_IMPLEMENTED: dict[tuple[str, str], str] = {
    ("fn_boundary.json", f"{kind} {end}Boundary"): BOUNDARY
    for kind in ("decimal", "datetime", "date", "time")
    for end in ("low", "high")
}


def cases() -> list[Any]:
    params = []
    for path in sorted(CASES_DIR.glob("*.json")):
        group = json.loads(path.read_text(encoding="utf-8"))
        for case in group["tests"]:
            key = (path.name, case["title"])
            marks = [pytest.mark.xfail(strict=True, reason=NOT_IMPLEMENTED[key])] if key in NOT_IMPLEMENTED else []
            params.append(pytest.param(group["resources"], case, id=f"{path.stem}: {case['title']}", marks=marks))
    return params


def canonical(rows: list[dict[str, Any]]) -> Counter[str]:
    """Rows as a multiset, each row by its column values whatever the key order."""
    return Counter(json.dumps(row, sort_keys=True) for row in rows)


@pytest.mark.parametrize(("resources", "case"), cases())
def test_the_spec_case(resources: list[dict[str, Any]], case: dict[str, Any]) -> None:
    if case.get("expectError"):
        with pytest.raises((ViewError, RunError)):
            run(case["view"], resources)
        return
    view = parse_view(case["view"])
    rows = run(view, resources)
    if "expectColumns" in case:
        assert view.columns == case["expectColumns"]
    if "expectCount" in case:
        assert len(rows) == case["expectCount"]
    if "expect" in case:
        assert canonical(rows) == canonical(case["expect"])


def test_the_cases_are_all_there() -> None:
    """Copied whole: a lost file would pass unnoticed (22 files, 134 cases at the recorded commit)."""
    assert len(list(CASES_DIR.glob("*.json"))) == 22
    assert len(cases()) == 134


# ---------------------------------------------------------------- validation, by message


@pytest.mark.parametrize(
    ("view", "where", "problem"),
    [
        ({}, "ViewDefinition.resource", "required"),
        ({"resource": "Patient"}, "ViewDefinition.select", "at least one"),
        (
            {"resource": "Patient", "select": [{"column": [{"name": "1d", "path": "id"}]}]},
            "ViewDefinition.select[0].column[0].name",
            "letters",
        ),
        (
            {"resource": "Patient", "select": [{"column": [{"name": "a", "path": "id"}, {"name": "a", "path": "id"}]}]},
            "ViewDefinition.select",
            "'a' is used twice",
        ),
        (
            {"resource": "Patient", "select": [{"forEach": "name", "forEachOrNull": "name", "column": []}]},
            "ViewDefinition.select[0]",
            "forEach and forEachOrNull together",
        ),
        (
            {
                "resource": "Patient",
                "select": [
                    {"unionAll": [{"column": [{"name": "a", "path": "id"}]}, {"column": [{"name": "b", "path": "id"}]}]}
                ],
            },
            "ViewDefinition.select[0].unionAll[1]",
            "same, in order",
        ),
        (
            {"resource": "Patient", "select": [{"column": [{"name": "a", "path": "name.where(use = "}]}]},
            "ViewDefinition.select[0].column[0].path",
            "not valid FHIRPath",
        ),
        (
            {
                "resource": "Patient",
                "constant": [{"name": "n", "valueInteger": "1"}],
                "select": [{"column": [{"name": "a", "path": "id"}]}],
            },
            "ViewDefinition.constant[0].valueInteger",
            "not a integer",
        ),
        (
            {"resource": "Patient", "select": [{"column": [{"name": "a", "path": "name[%n]"}]}]},
            "ViewDefinition.select[0].column[0].path",
            "%n",
        ),
        (
            {"resource": "Patient", "select": [{"forEach": "name", "colum": [{"name": "a", "path": "id"}]}]},
            "ViewDefinition.select[0].colum",
            "no element of a select",
        ),
    ],
)
def test_an_invalid_view_is_named_by_element_and_problem(view: dict[str, Any], where: str, problem: str) -> None:
    with pytest.raises(ViewError) as raised:
        parse_view(view)
    assert raised.value.where == where
    assert problem in raised.value.problem


def test_a_column_with_several_values_says_which_column_never_the_values() -> None:
    view = {"resource": "Patient", "select": [{"column": [{"name": "given", "path": "name.given"}]}]}
    with pytest.raises(RunError) as raised:
        run(view, [{"resourceType": "Patient", "name": [{"given": ["Sven-Secret", "Olof"]}]}])
    assert "'given'" in str(raised.value) and "Secret" not in str(raised.value)


# ---------------------------------------------------------------- the command

VIEW = {
    "resourceType": "ViewDefinition",
    "name": "patient_names",
    "resource": "Patient",
    "select": [
        {"column": [{"name": "id", "path": "getResourceKey()"}]},
        {
            "forEachOrNull": "name",
            "column": [{"name": "family", "path": "family"}, {"name": "given", "path": "given", "collection": True}],
        },
    ],
}
PATIENTS = [
    {"resourceType": "Patient", "id": "p1", "name": [{"family": "Berg", "given": ["Anna", "Lo"]}, {"family": "Ek"}]},
    {"resourceType": "Patient", "id": "p2"},
    {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"}},
]
ROWS = [
    {"id": "p1", "family": "Berg", "given": ["Anna", "Lo"]},
    {"id": "p1", "family": "Ek", "given": []},
    {"id": "p2", "family": None, "given": []},
]


def view_run(tmp_path: Path, view: Any, resources: str, *options: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "view.json").write_text(json.dumps(view))
    (tmp_path / "resources").write_text(resources)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMR_")}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "adapter.cli",
            "view",
            "run",
            str(tmp_path / "view.json"),
            str(tmp_path / "resources"),
            *options,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


@pytest.mark.parametrize(
    "resources",
    [
        json.dumps(PATIENTS),
        json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in PATIENTS]}),
        "\n".join(json.dumps(r) for r in PATIENTS) + "\n",
    ],
    ids=["array", "bundle", "ndjson"],
)
def test_view_run_reads_an_array_a_bundle_or_ndjson(tmp_path: Path, resources: str) -> None:
    result = view_run(tmp_path, VIEW, resources)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert canonical(rows) == canonical(ROWS)
    assert all(list(row) == ["id", "family", "given"] for row in rows)


def test_view_run_writes_csv_and_ndjson(tmp_path: Path) -> None:
    written = view_run(tmp_path, VIEW, json.dumps(PATIENTS), "--format", "csv")
    assert written.returncode == 0, written.stderr
    table = list(csv.reader(io.StringIO(written.stdout)))
    assert table[0] == ["id", "family", "given"]
    assert sorted(table[1:]) == sorted([["p1", "Berg", '["Anna", "Lo"]'], ["p1", "Ek", "[]"], ["p2", "", "[]"]])
    lines = view_run(tmp_path, VIEW, json.dumps(PATIENTS), "--format", "ndjson")
    assert lines.returncode == 0, lines.stderr
    assert canonical([json.loads(line) for line in lines.stdout.splitlines()]) == canonical(ROWS)


def test_view_run_refuses_an_invalid_view_in_one_line_exit_2(tmp_path: Path) -> None:
    view = {
        **VIEW,
        "select": [{"forEach": "name", "forEachOrNull": "name", "column": [{"name": "a", "path": "family"}]}],
    }
    result = view_run(tmp_path, view, json.dumps(PATIENTS))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "invalid ViewDefinition: ViewDefinition.select[0]: forEach and forEachOrNull together: "
        "a select iterates one way at most"
    ]


def test_view_run_refuses_resources_it_cannot_read_exit_2(tmp_path: Path) -> None:
    result = view_run(tmp_path, VIEW, "{not json")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "resources" in result.stderr
