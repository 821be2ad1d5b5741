"""``mmr-adapter``: run the API, the worker and the scheduler; set up a server; operate the queue."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

import click

from adapter.config import REQUIRED_FOR_FHIR, REQUIRED_FOR_INTAKE, ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from adapter.pipeline.state import State

F = TypeVar("F", bound=Callable[..., Any])


def settings_or_exit(require: Iterable[str] = ()) -> Settings:
    try:
        return load_settings(require=require)
    except ConfigError as exc:
        click.echo(f"configuration error: {exc}", err=True)
        sys.exit(2)


def friendly(fn: F) -> F:
    """Turn configuration errors into one line and exit code 2 instead of a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            click.echo(f"configuration error: {exc}", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mmr-adapter")
def main() -> None:
    """MMR adapter: the Swedish multimodal pain rehabilitation referral workflow on FHIR.

    Settings come from MMR_* environment variables (see the README's configuration table).
    """


@main.command()
@click.option("--host", default="0.0.0.0", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, help="Port to listen on.")
@click.option("--workers", default=1, show_default=True, help="Uvicorn worker processes.")
@friendly
def serve(host: str, port: int, workers: int) -> None:
    """Run the notification API: /notify, /health, /metrics, /docs.

    Limits per client come from MMR_MAX_HEADER_BYTES, MMR_HEADER_TIMEOUT, MMR_BODY_TIMEOUT,
    MMR_KEEP_ALIVE_TIMEOUT and MMR_MAX_CONCURRENCY (per worker process).
    """
    import uvicorn

    from adapter.intake.server import uvicorn_options
    from adapter.logs import configure

    settings = settings_or_exit(REQUIRED_FOR_FHIR + REQUIRED_FOR_INTAKE)
    configure(settings.log_level, settings.log_json)  # uvicorn's own lines too, in every process
    uvicorn.run(
        "adapter.intake.api:app_from_settings",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        **uvicorn_options(settings),
    )


@main.command()
@click.option(
    "--concurrency",
    "-c",
    default=4,
    show_default=True,
    help="Events processed in parallel (processes); an event mostly waits on the FHIR server, so "
    "more than the host's cores: raise it for a distant server, lower it for a small host.",
)
@click.option(
    "--pool",
    default="prefork",
    show_default=True,
    type=click.Choice(["prefork", "threads", "solo"]),
    help="Celery execution pool.",
)
@friendly
def worker(concurrency: int, pool: str) -> None:
    """Run a Celery worker that processes events from the queue."""
    s = settings_or_exit(REQUIRED_FOR_FHIR)
    from celery.utils.nodenames import host_format

    from adapter.pipeline.worker import app

    # Not app.worker_main: it drops the worker's exit code, so a worker that gave up on a lost broker
    # ("Unrecoverable error") exited 0 and a supervisor restarting on failure would not restart it.
    worker_ = app.Worker(
        hostname=host_format(f"mmr-worker-{os.getpid()}@%h"),
        pool_cls=pool,
        concurrency=concurrency,
        loglevel=s.log_level,
        queues=[s.queue],
        without_gossip=True,
        without_mingle=True,
    )
    worker_.start()
    sys.exit(worker_.exitcode or 0)


@main.command("ping-worker")
@click.option("--timeout", default=5.0, show_default=True, help="Seconds to wait for an answer.")
@friendly
def ping_worker(timeout: float) -> None:
    """Exit 0 if a worker on this host answers a ping (the worker container's health check)."""
    import socket

    from adapter.pipeline.worker import app

    s = settings_or_exit()
    host = socket.gethostname()
    answers = app.control.ping(timeout=timeout) or []
    mine = [name for reply in answers for name in reply if name.endswith(f"@{host}")]
    click.echo(
        f"{len(mine)} worker(s) on {host} answered" if mine else f"no worker on {host} answered (queue {s.queue})"
    )
    sys.exit(0 if mine else 1)


@main.command("check-scheduler")
@click.option(
    "--lag", type=float, default=None, help="Seconds a timer may stay due unfired [default: 3 x MMR_TIMER_INTERVAL]."
)
@friendly
def check_scheduler(lag: float | None) -> None:
    """Exit 0 unless a timer has been due for longer than --lag (beat's health check).

    Beat queues the timer job and a worker runs it, so a timer left unfired means one of them is
    not running: reminders, overdue flags and follow-ups would silently not come.
    """
    from datetime import UTC, timedelta

    from adapter.pipeline.state import State

    s = settings_or_exit()
    allowed = lag if lag is not None else 3 * s.timer_interval
    late = State.from_url(s.redis_url).timers.due_count(datetime.now(UTC) - timedelta(seconds=allowed))
    click.echo(f"{late} timer(s) due for more than {allowed:.0f} s" if late else "timers are being fired")
    sys.exit(1 if late else 0)


@main.command()
@click.option(
    "--schedule-file", default="/tmp/mmr-beat-schedule", show_default=True, help="Where beat keeps its last-run times."
)
@friendly
def beat(schedule_file: str) -> None:
    """Run the scheduler: reconciliation, due timers and the sweep of open referrals, periodically."""
    s = settings_or_exit(REQUIRED_FOR_FHIR)
    from adapter.pipeline.worker import app

    app.start(["beat", "--loglevel", s.log_level, "-s", schedule_file])


@main.command()
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
@friendly
def setup(topic_based: bool, no_conformance: bool, delivery_timeout: float, no_delivery_check: bool) -> None:
    """Check the FHIR server, install the directory and profiles, create the Subscriptions, and prove
    that a change the adapter makes comes back as a notification (the API and a worker must run)."""
    from rich.console import Console

    from adapter.operations.setup import run_setup
    from adapter.pipeline.state import State
    from adapter.wiring import fhir_client

    s = settings_or_exit(REQUIRED_FOR_FHIR + REQUIRED_FOR_INTAKE)
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
        sys.exit(1)
    counts: dict[str, int] = {}
    for _, what in report.written:
        counts[what] = counts.get(what, 0) + 1
    for ref, what in report.written:
        if what != "unchanged":
            console.print(f"  {what:9} {ref}")
    console.print(f"setup done against {s.fhir_base}: " + ", ".join(f"{n} {w}" for w, n in sorted(counts.items())))
    console.print(f"notifications go to {s.notify_url}")


@main.command()
@click.option("--port", default=8090, show_default=True, help="Port on 127.0.0.1 (0: any free port).")
@click.option(
    "--hapi",
    is_flag=True,
    help="Run a real HAPI FHIR JPA server (R4, H2 in memory) instead: built from hapi/ with Maven "
    "on first use, so it needs java and mvn.",
)
def sandbox(port: int, hapi: bool) -> None:
    """Run a sandbox FHIR server (sekmet-fhir, or HAPI FHIR with --hapi) on loopback until Ctrl-C. Development only."""
    if hapi:
        from adapter.dev.hapi import HapiError, run_hapi

        try:
            run_hapi(port, click.echo)
        except HapiError as exc:
            raise click.ClickException(str(exc)) from exc
        return
    from adapter.dev.sandbox import start_sandbox

    server = start_sandbox(port, quiet=False)
    click.echo(f"sandbox FHIR server at {server.base_url} (Ctrl-C to stop)")
    try:
        server.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


@main.group()
def dlq() -> None:
    """Inspect and replay events parked in the dead-letter store."""


@dlq.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@friendly
def dlq_list(as_json: bool) -> None:
    """List parked events with the reason they failed."""
    from rich.console import Console
    from rich.table import Table

    from adapter.pipeline.state import State

    entries = State.from_url(settings_or_exit().redis_url).dlq.entries()
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    table = Table("id", "parked", "attempts", "event", "reason", title=f"{len(entries)} dead letter(s)")
    from adapter.pipeline.envelope import Envelope

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
@friendly
def dlq_replay(ids: tuple[str, ...], replay_all: bool) -> None:
    """Put parked events back on the queue (after fixing the cause)."""
    from adapter.pipeline.envelope import Envelope
    from adapter.pipeline.state import State
    from adapter.pipeline.worker import enqueue

    state = State.from_url(settings_or_exit().redis_url)
    if not ids and not replay_all:
        raise click.UsageError("name the ids to replay, or pass --all")
    chosen = [e["id"] for e in state.dlq.entries()] if replay_all else list(ids)
    replayed = 0
    for entry_id in chosen:
        entry = state.dlq.take(entry_id)
        if entry is None:
            click.echo(f"{entry_id}: not in the dead-letter store", err=True)
            continue
        enqueue(Envelope.from_dict(entry["envelope"]))
        replayed += 1
    click.echo(f"{replayed} event(s) re-queued")
    if replayed < len(chosen):
        sys.exit(1)


@main.command()
@click.option("--redis-url", default=None, help="Redis to use (default: MMR_REDIS_URL or the local one).")
def demo(redis_url: str | None) -> None:
    """Run sandbox, API and worker in this process and walk one example referral through them."""
    from adapter.dev.demo import run_demo

    sys.exit(run_demo(redis_url=redis_url))


@main.command()
@click.argument("referral")
@friendly
def status(referral: str) -> None:
    """Print a referral's journey: each step so far, who holds it, what is due and when.

    REFERRAL is the referral's business identifier (value or system|value) or its server id.
    """
    from adapter.operations.status import find_referral, journey_lines
    from adapter.wiring import fhir_client

    s = settings_or_exit(REQUIRED_FOR_FHIR)
    with fhir_client(s) as client:
        sr = find_referral(client, referral)
        if sr is None:
            click.echo(f"no referral {referral!r} on {s.fhir_base}", err=True)
            sys.exit(1)
        for line in journey_lines(client, sr["id"]):
            click.echo(line)


@main.group()
def clock() -> None:
    """The test clock every adapter process reads from Redis (only with MMR_TEST_CLOCK=true).

    Tests, the demo and integration teams move time with it: deadlines, reminders and the
    12-month follow-up fall due as if that time had come. Never in production.
    """


def _clock_state() -> State:
    from adapter.pipeline.state import State

    s = settings_or_exit()
    if not s.test_clock:
        click.echo(
            "the test clock is off: set MMR_TEST_CLOCK=true (tests and the demo only, never production)", err=True
        )
        sys.exit(2)
    return State.from_url(s.redis_url)


@clock.command("set")
@click.argument("when")
@friendly
def clock_set(when: str) -> None:
    """Freeze the clock at WHEN, an ISO 8601 time with its offset (2027-02-08T09:00:00+01:00)."""
    try:
        moment = datetime.fromisoformat(when)
    except ValueError:
        click.echo("WHEN: not an ISO 8601 time, e.g. 2027-02-08T09:00:00+01:00", err=True)
        sys.exit(2)
    if moment.tzinfo is None:
        click.echo("WHEN: give the offset (+01:00, Z): a time without one is ambiguous", err=True)
        sys.exit(2)
    _clock_state().clock.set(moment)
    click.echo(f"test clock set to {moment.isoformat()}")


@clock.command("show")
@friendly
def clock_show() -> None:
    """Print the time the adapter's processes go by, and whether it is frozen."""
    frozen = _clock_state().clock.frozen()
    if frozen is None:
        click.echo(f"{datetime.now(UTC).isoformat()} (not set: the real time)")
    else:
        click.echo(f"{frozen.isoformat()} (test clock)")


@clock.command("clear")
@friendly
def clock_clear() -> None:
    """Go back to the real time."""
    _clock_state().clock.set(None)
    click.echo("test clock cleared: the real time again")


@main.command("fire-timers")
@click.option("--at", "at", default=None, help="ISO time to fire timers as of (default: now).")
@friendly
def fire_timers(at: str | None) -> None:
    """Queue every timer due now (or at --at) once; beat does this periodically."""
    from adapter.pipeline.state import State
    from adapter.pipeline.worker import fire_due_timers

    s = settings_or_exit()
    state = State.from_url(s.redis_url)
    moment = datetime.fromisoformat(at) if at else state.clock.now(s.test_clock)
    click.echo(f"{fire_due_timers(state, moment)} timer(s) fired")


@main.command()
@friendly
def sweep() -> None:
    """Queue one event for every open referral now (beat does this every MMR_SWEEP_INTERVAL)."""
    from adapter.pipeline.worker import sweep_task

    settings_or_exit(REQUIRED_FOR_FHIR)
    click.echo(f"{sweep_task(when_idle=False)} open referral(s) queued")


def _register_conformance() -> None:
    from adapter.cli.conformance import profiles_build_command, profiles_doc_command, validate_command

    main.add_command(validate_command, "validate")
    main.add_command(profiles_doc_command, "profiles-doc")
    main.add_command(profiles_build_command, "profiles-build")


_register_conformance()
