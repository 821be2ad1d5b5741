"""``flow``: waiting times, review deadlines, bounces and who is responsible, from the flow store.

The figures are :func:`adapter.flow.figures.compute` over the DuckDB store (a cache of the FHIR
server, made by ``--rebuild`` and kept by ``--refresh``: :mod:`adapter.operations.flow`); this
command picks the snapshot and the period, opens the store read-only and prints one format.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, time
from pathlib import Path
from typing import Any

import click

from adapter.cli.context import ExitCode, exit_with, refuse
from adapter.config import load_settings

FORMATS = ("table", "json", "csv", "html")


@click.command("flow")
@click.option(
    "--at",
    "at_day",
    type=click.DateTime(["%Y-%m-%d"]),
    help="The snapshot: the start of this day, Stockholm time.  [default: now]",
)
@click.option("--from", "start", type=click.DateTime(["%Y-%m-%d"]), help="The period's first day (with --to).")
@click.option("--to", "end", type=click.DateTime(["%Y-%m-%d"]), help="The period's last day, included (with --from).")
@click.option("--clinic", metavar="HSA", help="One specialist clinic, the MMRpv unit or a site, by HSA id.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="table: for reading; json: the figures object; csv: a header and a line per organisation "
    "(the region last); html: one self-contained page.",
)
@click.option("--refresh", is_flag=True, help="Read what changed on the FHIR server since the last refresh first.")
@click.option("--rebuild", is_flag=True, help="Make the store anew from the FHIR server first.")
@click.option("--referral", metavar="ID", help="Instead: the referral's chain of owners (business identifier).")
@click.option(
    "--publish",
    is_flag=True,
    help="Also write the period's MeasureReports to the FHIR server (idempotent; seen from the period's end "
    "unless --at is given), as beat does monthly.",
)
@click.option("--output", type=click.Path(dir_okay=False, writable=True), help="Write to FILE instead of stdout.")
def flow(
    at_day: datetime | None,
    start: datetime | None,
    end: datetime | None,
    clinic: str | None,
    output_format: str,
    refresh: bool,
    rebuild: bool,
    referral: str | None,
    publish: bool,
    output: str | None,
) -> None:
    """Print the flow figures per specialist clinic, the MMRpv unit and its sites, and the region.

    Reviews decided in the period and within their deadline, waiting at the snapshot by days since
    the referral was issued, first visits against the care guarantee (MMR_CARE_GUARANTEE_DAYS),
    time on hold, organisations per referral, re-referrals, and the referrals nobody is
    responsible for (docs/flow.md, "The figures"). The period defaults to the last whole month
    before the snapshot.

    Referrals nobody is responsible for are printed in red under the table (in the other formats,
    on stderr); the exit status stays 0, since the figures were made: a monitor watches the gauge.
    Exit 2 for a usage error or a store not made yet (run with --rebuild), 1 when the store cannot
    be read (another process refreshing it writes it alone), the FHIR server fails a --refresh,
    --rebuild or --publish, or a --referral was held by no organisation of the directory.
    """
    if refresh and rebuild:
        refuse("--refresh and --rebuild exclude each other: --rebuild already reads everything")
    if (start is None) != (end is None):
        refuse("--from and --to go together")
    if referral and (output_format == "html" or publish):
        refuse("--referral prints a chain of owners as table, json or csv, and publishes nothing")
    from adapter.fhir.client import FhirError
    from adapter.flow.page import render
    from adapter.operations import flow as operations
    from adapter.operations.flow import StoreUnavailable
    from adapter.workflow.calendar import STOCKHOLM

    settings = load_settings()
    at = datetime.combine(at_day.date(), time(0), tzinfo=STOCKHOLM) if at_day else None
    now = datetime.now(STOCKHOLM).replace(microsecond=0)
    first, last = (start.date(), end.date()) if start and end else operations.month_before((at or now).date())
    if first > last:
        refuse("--from is after --to")
    if clinic is not None and publish:
        refuse("--publish reports every organisation and the region: leave out --clinic")
    # A published month is seen from its end (--at aside), as beat publishes it: reports that do not
    # change with the day they were made.
    at = at or (operations.end_of((first, last)) if publish else now)
    try:
        if refresh or rebuild:
            done = operations.refresh(settings, rebuild=rebuild)
            click.echo(
                f"flow store {'rebuilt' if done.rebuilt else 'refreshed'}: {sum(done.loaded.values())} rows", err=True
            )
        if referral:
            chain = operations.owner_chain(settings, referral, at)
            if not chain:
                click.echo(f"{referral}: no organisation of the directory has held it (not in the store?)", err=True)
                exit_with(ExitCode.FAILED)
            _emit(_chain_text(chain, output_format), output)
            exit_with(ExitCode.OK)
        try:
            figures = operations.figures(settings, at, first, last, clinic)
        except ValueError as exc:
            refuse(f"--clinic: {exc}")
        if publish:
            published = operations.publish(settings, (first, last), at, found=figures)  # computed once
            click.echo(
                f"MeasureReports {first}..{last}: {len(published.created)} created, "
                f"{len(published.updated)} updated, {len(published.unchanged)} unchanged",
                err=True,
            )
    except StoreUnavailable as exc:
        click.echo(str(exc), err=True)
        exit_with(ExitCode.USAGE if exc.missing else ExitCode.FAILED)
    except FhirError as exc:  # its summary: the request and the status, never the server's words
        click.echo(f"the FHIR server: {exc.summary}", err=True)
        exit_with(ExitCode.FAILED)
    if output_format == "json":
        _emit(json.dumps(figures, ensure_ascii=False, indent=2) + "\n", output)
    elif output_format == "csv":
        _emit(_csv(figures), output)
    elif output_format == "html":
        _emit(render(figures), output)
    else:
        _emit(_table(figures), output)
    nobody = figures["nobody_responsible"]
    if nobody and (output_format != "table" or output):
        click.echo(_nobody_line(nobody), err=True)
    exit_with(ExitCode.OK)


def _emit(text: str, output: str | None) -> None:
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)


def _nobody_line(nobody: list[str]) -> str:
    return f"NOBODY IS RESPONSIBLE for {len(nobody)} referral(s): {', '.join(nobody)}"


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


# (heading, the figure) per table column: short headings, so a clinic's row fits a wide terminal.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("Reviews", "reviews_decided"),
    ("in time", "reviews_within_deadline"),
    ("median wd", "review_median_working_days"),
    ("overdue", "reviews_overdue_now"),
    ("Waiting", "waiting_now"),
    ("0-30", "waiting_0_30"),
    ("31-60", "waiting_31_60"),
    ("61-90", "waiting_61_90"),
    (">90", "waiting_over_90"),
    ("pat.", "waiting_patient_chosen"),
    ("med.", "waiting_medical"),
    ("First visits", "first_visits"),
    ("median d", "first_visit_median_days"),
    ("p90 d", "first_visit_p90_days"),
    ("max d", "first_visit_max_days"),
    ("in guar.", "first_visits_within_guarantee"),
    ("re-ref.", "re_referrals_after_rejection"),
)


def _table(figures: dict[str, Any]) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"Flow {figures['from']}..{figures['to']}, waiting at {figures['at']}, "
        f"care guarantee {figures['guarantee_days']} days",
        title_justify="left",
    )
    table.add_column("Organisation", max_width=30, no_wrap=True, overflow="ellipsis")
    for heading, _ in COLUMNS:
        table.add_column(heading, justify="right")
    table.add_column("hold d ref/pat", justify="right")
    table.add_column("orgs:referrals", justify="right")
    last = len(figures["organisations"]) - 1
    for index, row in enumerate([*figures["organisations"], figures["region"]]):
        hold = row["on_hold_median_days"]
        table.add_row(
            row["name"],
            *(_number(row[key]) for _, key in COLUMNS),
            f"{_number(hold['referrer'])}/{_number(hold['patient'])}",
            " ".join(f"{n}:{count}" for n, count in row["organisations_per_referral"].items()) or "-",
            end_section=index == last,
        )
    buffer = io.StringIO()
    console = Console(file=buffer, width=220, color_system="standard", force_terminal=False)
    console.print(table)
    nobody = figures["nobody_responsible"]
    if nobody:
        console.print(_nobody_line(nobody), style="bold red", markup=False)
    else:
        console.print("Every referral has someone responsible for its next step.")
    return "".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines())  # rich pads to the width


def _csv(figures: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    nested = ("on_hold_median_days", "organisations_per_referral", "nobody_responsible")
    keys = [k for k in figures["region"] if k not in nested]
    writer.writerow(
        [
            *keys,
            "on_hold_median_days_referrer",
            "on_hold_median_days_patient",
            "organisations_per_referral",
            "nobody_responsible",
        ]
    )
    for row in [*figures["organisations"], figures["region"]]:
        writer.writerow(
            [
                *("" if row[k] is None else row[k] for k in keys),
                _cell(row["on_hold_median_days"]["referrer"]),
                _cell(row["on_hold_median_days"]["patient"]),
                json.dumps(row["organisations_per_referral"]),
                " ".join(row["nobody_responsible"]),
            ]
        )
    return buffer.getvalue()


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def _chain_text(chain: list[dict[str, Any]], output_format: str) -> str:
    if output_format == "json":
        return json.dumps(chain, ensure_ascii=False, indent=2) + "\n"
    if output_format == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["organization", "name", "from", "to", "days"])
        for link in chain:
            writer.writerow([_cell(link[k]) for k in ("organization", "name", "from", "to", "days")])
        return buffer.getvalue()
    return "".join(
        f"{link['name']} ({link['organization']}): {link['from']} -> {link['to'] or 'holds it'}, {link['days']} days\n"
        for link in chain
    )
