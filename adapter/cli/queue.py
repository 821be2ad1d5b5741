"""Operating the queue by hand: ``dlq list``, ``dlq replay``, ``fire-timers``, ``sweep``."""

from __future__ import annotations

import json
from datetime import datetime

import click

from adapter.cli.context import ExitCode, exit_with
from adapter.config import REQUIRED_FOR_FHIR, load_settings


@click.group()
def dlq() -> None:
    """Inspect and replay events parked in the dead-letter store."""


@dlq.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def dlq_list(as_json: bool) -> None:
    """List parked events with the reason they failed."""
    from rich.console import Console
    from rich.table import Table

    from adapter.pipeline.envelope import Envelope
    from adapter.pipeline.state import State

    entries = State.from_url(load_settings().redis_url).dlq.entries()
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    table = Table("id", "parked", "attempts", "event", "reason", title=f"{len(entries)} dead letter(s)")
    for e in entries:
        table.add_row(
            e["id"],
            datetime.fromtimestamp(e["parked_at"]).isoformat(timespec="seconds"),
            str(e["attempts"]),
            Envelope.from_dict(e["envelope"]).label,
            e["reason"],
        )
    Console().print(table)


@dlq.command("replay")
@click.argument("ids", nargs=-1)
@click.option("--all", "replay_all", is_flag=True, help="Replay every parked event.")
def dlq_replay(ids: tuple[str, ...], replay_all: bool) -> None:
    """Put parked events back on the queue (after fixing the cause)."""
    from adapter.operations.dead_letters import replay_dead_letters
    from adapter.pipeline.state import State

    state = State.from_url(load_settings().redis_url)
    if not ids and not replay_all:
        raise click.UsageError("name the ids to replay, or pass --all")
    chosen = [e["id"] for e in state.dlq.entries()] if replay_all else list(ids)
    replayed = 0
    for entry_id, found in replay_dead_letters(state, chosen):
        if found:
            replayed += 1
        else:
            click.echo(f"{entry_id}: not in the dead-letter store", err=True)
    click.echo(f"{replayed} event(s) re-queued")
    if replayed < len(chosen):
        exit_with(ExitCode.FAILED)


@click.command("fire-timers")
@click.option("--at", "at", default=None, help="ISO time to fire timers as of (default: now).")
def fire_timers(at: str | None) -> None:
    """Queue every timer due now (or at --at) once; beat does this periodically."""
    from adapter.pipeline.state import State
    from adapter.pipeline.worker import fire_due_timers

    s = load_settings()
    state = State.from_url(s.redis_url)
    moment = datetime.fromisoformat(at) if at else state.clock.now(s.test_clock)
    click.echo(f"{fire_due_timers(state, moment)} timer(s) fired")


@click.command()
def sweep() -> None:
    """Queue one event for every open referral now (beat does this every MMR_SWEEP_INTERVAL)."""
    from adapter.pipeline.worker import sweep_task

    load_settings(require=REQUIRED_FOR_FHIR)
    click.echo(f"{sweep_task(when_idle=False)} open referral(s) queued")
