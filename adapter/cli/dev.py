"""Development only: ``sandbox`` and ``demo``, the one face of :mod:`adapter.dev`.

The only cli module that imports :mod:`adapter.dev`, and only inside a command, so the runtime's
commands never load it.
"""

from __future__ import annotations

import click

from adapter.cli.context import exit_with


@click.command()
@click.option("--port", default=8090, show_default=True, help="Port on 127.0.0.1 (0: any free port).")
@click.option(
    "--hapi",
    is_flag=True,
    help="Run a real HAPI FHIR JPA server (R4, H2 in memory) instead: built from hapi/ with Maven "
    "on first use, so it needs java and mvn.",
)
def sandbox(port: int, hapi: bool) -> None:
    """Run a sandbox FHIR server (sekmet-fhir, or HAPI FHIR with --hapi) on loopback until Ctrl-C or SIGTERM.

    Either ends the server and removes its files (the sandbox's database lives in a temporary
    directory). Development only.
    """
    if hapi:
        from adapter.dev.hapi import HapiError, run_hapi

        try:
            run_hapi(port, click.echo)
        except HapiError as exc:
            raise click.ClickException(str(exc)) from exc
        return
    from adapter.dev.sandbox import serve_until_signalled, start_sandbox

    serve_until_signalled(
        lambda: start_sandbox(port, quiet=False),
        lambda server: click.echo(f"sandbox FHIR server at {server.base_url} (Ctrl-C or SIGTERM to stop)"),
    )


@click.command()
@click.option(
    "--redis-url",
    default=None,
    help="A Redis to use on purpose (memory://: the in-process store). Default: a redis-server of the "
    "demo's own on a free loopback port, removed when it ends (the in-process store without "
    "redis-server); never MMR_REDIS_URL nor whatever answers on 6379.",
)
def demo(redis_url: str | None) -> None:
    """Run sandbox, API and worker in this process and walk one example referral through them."""
    from adapter.dev.demo import run_demo

    exit_with(run_demo(redis_url=redis_url))
