"""``setup``: make a FHIR server ready for the adapter, and print what it did."""

from __future__ import annotations

import click

from adapter.cli.context import ExitCode, exit_with
from adapter.config import REQUIRED_FOR_FHIR, REQUIRED_FOR_INTAKE, load_settings


@click.command()
@click.option("--topic-based", is_flag=True, help="Subscribe with R4 backport topics instead of classic criteria.")
@click.option("--no-conformance", is_flag=True, help="Do not install the conformance package of profiles/.")
@click.option(
    "--delivery-timeout",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds to wait for the heartbeat's notification to come back.",
)
@click.option("--no-delivery-check", is_flag=True, help="Do not prove delivery (no API or worker runs yet).")
def setup(topic_based: bool, no_conformance: bool, delivery_timeout: float, no_delivery_check: bool) -> None:
    """Check the FHIR server, install the directory and profiles, create the Subscriptions, and prove
    that a change the adapter makes comes back as a notification (the API and a worker must run)."""
    from rich.console import Console

    from adapter.operations.setup import run_setup
    from adapter.pipeline.state import State
    from adapter.wiring import fhir_client

    s = load_settings(require=REQUIRED_FOR_FHIR + REQUIRED_FOR_INTAKE)
    assert s.webhook_token is not None
    console = Console()
    state = None if no_delivery_check else State.from_url(s.redis_url)
    with fhir_client(s, fresh=True) as client:
        report = run_setup(
            client,
            notify_url=s.notify_url,
            token=s.webhook_token.get_secret_value(),
            topic_based=topic_based,
            install_conformance=not no_conformance,
            state=state,
            delivery_timeout=delivery_timeout,
        )
    for text in report.warnings:
        console.print(f"[yellow]warning:[/] {text}")
    for text in report.missing:
        console.print(f"[red]missing:[/] {text}")
    if report.missing:
        exit_with(ExitCode.FAILED)
    counts: dict[str, int] = {}
    for _, what in report.written:
        counts[what] = counts.get(what, 0) + 1
    for ref, what in report.written:
        if what != "unchanged":
            console.print(f"  {what:9} {ref}")
    console.print(f"setup done against {s.fhir_base}: " + ", ".join(f"{n} {w}" for w, n in sorted(counts.items())))
    console.print(f"notifications go to {s.notify_url}")
