"""``mmr-adapter``: run the API, the worker and the scheduler; set up a server; operate the queue.

Click only: a command parses its options, calls the function that does the work (in
:mod:`adapter.operations` or the module the work concerns) and prints the result. One module per
group of commands; :data:`COMMANDS` is the one list of what ``main`` offers. Commands import their
heavy dependencies inside, so ``--help`` starts fast.
"""

from __future__ import annotations

import click

from adapter import __version__
from adapter.cli import clock, conformance, dev, flow, processes, queue, referral, server, view
from adapter.cli.context import Main

COMMANDS: list[click.Command] = [
    processes.serve,
    processes.worker,
    processes.beat,
    processes.ping_worker,
    processes.check_scheduler,
    server.setup,
    referral.status,
    queue.dlq,
    queue.fire_timers,
    queue.sweep,
    clock.clock,
    conformance.validate,
    conformance.profiles_doc,
    conformance.profiles_build,
    view.view,
    flow.flow,
    dev.sandbox,
    dev.demo,
]


@click.group(cls=Main, commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=__version__)
def main() -> None:
    """MMR adapter: the Swedish multimodal pain rehabilitation referral workflow on FHIR.

    Settings come from MMR_* environment variables (docs/configuration.md).
    """
