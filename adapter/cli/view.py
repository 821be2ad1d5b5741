"""``view run VIEW.json RESOURCES``: a SQL on FHIR v2 ViewDefinition over FHIR resources, rows out.

The runner is :mod:`adapter.flow.viewdef`; the command reads the files, picks the output format
and exits the project's way: 0 with the rows, 2 with one line when the ViewDefinition is invalid
or the resources cannot be read, 1 when a valid view meets data it cannot tabulate.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from adapter.cli.context import ExitCode, exit_with, refuse


@click.group("view")
def view() -> None:
    """SQL on FHIR v2 ViewDefinitions: tabular views of FHIR resources (docs/flow.md)."""


@view.command("run")
@click.argument("view_file", metavar="VIEW.json", type=click.Path(dir_okay=False, exists=True))
@click.argument("resources_file", metavar="RESOURCES", type=click.Path(dir_okay=False, exists=True))
@click.option(
    "--format",
    "output",
    type=click.Choice(["json", "csv", "ndjson"]),
    default="json",
    show_default=True,
    help="json: one array of row objects; csv: a header and a line per row; ndjson: a row object per line.",
)
def run(view_file: str, resources_file: str, output: str) -> None:
    """Run the ViewDefinition VIEW.json over RESOURCES and print its rows.

    RESOURCES is a Bundle, a JSON array of resources or NDJSON (one resource per line); resources
    of other types than the view's are passed over. A column that is a collection is a JSON array
    (in csv, its JSON text); an empty value is null (in csv, an empty field). An invalid
    ViewDefinition exits 2 with one line naming the element and the problem.
    """
    from adapter.flow.viewdef import RunError, ViewError, parse_view

    try:
        parsed = parse_view(json.loads(Path(view_file).read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        refuse(f"cannot read the ViewDefinition {click.format_filename(view_file)}: {_reason(exc)}")
    except ViewError as exc:
        refuse(f"invalid ViewDefinition: {exc}")
    try:
        resources = list(_resources(Path(resources_file)))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        refuse(f"cannot read the resources {click.format_filename(resources_file)}: {_reason(exc)}")
    try:
        rows = list(parsed.rows(resources))
    except RunError as exc:
        click.echo(f"view failed: {exc}", err=True)
        exit_with(ExitCode.FAILED)
    _write(rows, parsed.columns, output)
    exit_with(ExitCode.OK)


def _reason(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"not JSON (line {exc.lineno}, column {exc.colno})"  # never the text itself: it may be a patient's
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _resources(path: Path) -> Iterator[dict[str, Any]]:
    """The resources of a Bundle, of a JSON array, or of NDJSON lines."""
    text = path.read_text(encoding="utf-8")
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError:
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) < 2:
            raise
        data = [json.loads(line) for line in lines]
    if isinstance(data, dict) and data.get("resourceType") == "Bundle":
        data = [entry.get("resource") for entry in data.get("entry") or () if isinstance(entry, dict)]
    elif isinstance(data, dict):
        data = [data]  # one resource: NDJSON of one line
    if not isinstance(data, list) or not all(isinstance(r, dict) and "resourceType" in r for r in data if r):
        raise ValueError("not a Bundle, a JSON array of resources or NDJSON")
    yield from (r for r in data if r)


def _write(rows: list[dict[str, Any]], columns: list[str], output: str) -> None:
    if output == "json":
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
    elif output == "ndjson":
        for row in rows:
            click.echo(json.dumps(row, ensure_ascii=False))
    else:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(row[c]) for c in columns])


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)
