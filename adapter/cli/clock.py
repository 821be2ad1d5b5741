"""``clock set|show|clear``: the test clock every adapter process reads from Redis."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from adapter.cli.context import ExitCode, exit_with
from adapter.config import load_settings

if TYPE_CHECKING:
    from adapter.pipeline.state import State


@click.group()
def clock() -> None:
    """The test clock every adapter process reads from Redis (only with MMR_TEST_CLOCK=true).

    Tests, the demo and integration teams move time with it: deadlines, reminders and the
    12-month follow-up fall due as if that time had come. Never in production.
    """


def _clock_state() -> State:
    """The state holding the clock; refuses (exit 2) unless the test clock is switched on."""
    from adapter.pipeline.state import State

    s = load_settings()
    if not s.test_clock:
        click.echo(
            "the test clock is off: set MMR_TEST_CLOCK=true (tests and the demo only, never production)", err=True
        )
        exit_with(ExitCode.USAGE)
    return State.from_url(s.redis_url)


@clock.command("set")
@click.argument("when")
def clock_set(when: str) -> None:
    """Freeze the clock at WHEN, an ISO 8601 time with its offset (2027-02-08T09:00:00+01:00)."""
    try:
        moment = datetime.fromisoformat(when)
    except ValueError:
        click.echo("WHEN: not an ISO 8601 time, e.g. 2027-02-08T09:00:00+01:00", err=True)
        exit_with(ExitCode.USAGE)
    if moment.tzinfo is None:
        click.echo("WHEN: give the offset (+01:00, Z): a time without one is ambiguous", err=True)
        exit_with(ExitCode.USAGE)
    _clock_state().clock.set(moment)
    click.echo(f"test clock set to {moment.isoformat()}")


@clock.command("show")
def clock_show() -> None:
    """Print the time the adapter's processes go by, and whether it is frozen."""
    frozen = _clock_state().clock.frozen()
    if frozen is None:
        click.echo(f"{datetime.now(UTC).isoformat()} (not set: the real time)")
    else:
        click.echo(f"{frozen.isoformat()} (test clock)")


@clock.command("clear")
def clock_clear() -> None:
    """Go back to the real time."""
    _clock_state().clock.set(None)
    click.echo("test clock cleared: the real time again")
