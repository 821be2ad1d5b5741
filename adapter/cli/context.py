"""What every command shares: how it exits, and what a configuration error looks like.

A command loads its Settings with :func:`adapter.config.load_settings` (naming the settings it
requires) and lets a :class:`ConfigError` rise, from there or from any layer below: the ``main``
group catches it around every command it runs and prints the one line an operator reads,
``configuration error: ...`` on stderr, exit 2, instead of a traceback. One place, so no command
can forget it.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, NoReturn

import click

from adapter.config import ConfigError


class ExitCode(IntEnum):
    """The exit codes every command keeps to, so scripts and health checks can rely on them."""

    OK = 0
    FAILED = 1  # a check failed, something was refused or not found
    USAGE = 2  # a usage or configuration error (click's own usage errors exit 2 as well)


def exit_with(code: int) -> NoReturn:
    """End the command with ``code`` (an :class:`ExitCode`, or a process's own exit code)."""
    click.get_current_context().exit(int(code))


def refuse(line: str) -> NoReturn:
    """End the command as a usage error, saying why in one line on stderr."""
    click.echo(line, err=True)
    exit_with(ExitCode.USAGE)


class Main(click.Group):
    """The ``mmr-adapter`` group: runs a command and turns a configuration error into one line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            click.echo(f"configuration error: {exc}", err=True)
            exit_with(ExitCode.USAGE)
