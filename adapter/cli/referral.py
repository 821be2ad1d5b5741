"""``status REFERRAL``: one referral's journey, read from the FHIR server."""

from __future__ import annotations

import click

from adapter.cli.context import ExitCode, exit_with
from adapter.config import REQUIRED_FOR_FHIR, load_settings


@click.command()
@click.argument("referral")
def status(referral: str) -> None:
    """Print a referral's journey: each step so far, who holds it, what is due and when.

    REFERRAL is the referral's business identifier (value or system|value) or its server id.
    """
    from adapter.operations.status import find_referral, journey_lines
    from adapter.wiring import fhir_client

    s = load_settings(require=REQUIRED_FOR_FHIR)
    with fhir_client(s) as client:
        sr = find_referral(client, referral)
        if sr is None:
            click.echo(f"no referral {referral!r} on {s.fhir_base}", err=True)
            exit_with(ExitCode.FAILED)
        for line in journey_lines(client, sr["id"]):
            click.echo(line)
