"""The long-running processes and their health checks: ``serve``, ``worker``, ``beat``,
``ping-worker``, ``check-scheduler``."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import click

from adapter.cli.context import ExitCode, exit_with
from adapter.config import REQUIRED_FOR_FHIR, REQUIRED_FOR_INTAKE, ConfigError, is_loopback, load_settings


@click.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface to listen on. Beyond loopback (e.g. 0.0.0.0 in a container) only with "
    "MMR_OPERATOR_TOKEN set, which /metrics, /docs and /openapi.json then require.",
)
@click.option("--port", default=8000, show_default=True, help="Port to listen on.")
@click.option("--workers", default=1, show_default=True, help="Uvicorn worker processes.")
def serve(host: str, port: int, workers: int) -> None:
    """Run the notification API: /notify, /health, /metrics, /docs.

    Limits per client come from MMR_MAX_HEADER_BYTES, MMR_HEADER_TIMEOUT, MMR_BODY_TIMEOUT,
    MMR_KEEP_ALIVE_TIMEOUT and MMR_MAX_CONCURRENCY (per worker process).
    """
    import uvicorn

    from adapter.intake.server import uvicorn_options
    from adapter.logs import configure

    settings = load_settings(require=REQUIRED_FOR_FHIR + REQUIRED_FOR_INTAKE)
    if settings.operator_token is None and not is_loopback(host):
        # Refused at start rather than judged per client: behind a proxy on this machine every
        # client looks like loopback, and a refusal at start is seen before anything is exposed.
        raise ConfigError(
            f"MMR_OPERATOR_TOKEN is required to serve on {host}: without it /metrics, /docs and "
            "/openapi.json would be open beyond this machine (or serve on 127.0.0.1)"
        )
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


@click.command()
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
def worker(concurrency: int, pool: str) -> None:
    """Run a Celery worker that processes events from the queue."""
    s = load_settings(require=REQUIRED_FOR_FHIR)
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
    exit_with(worker_.exitcode or ExitCode.OK)


@click.command("ping-worker")
@click.option("--timeout", default=5.0, show_default=True, help="Seconds to wait for an answer.")
def ping_worker(timeout: float) -> None:
    """Exit 0 if a worker on this host answers a ping (the worker container's health check)."""
    import socket

    from adapter.pipeline.worker import app

    s = load_settings()
    host = socket.gethostname()
    answers = app.control.ping(timeout=timeout) or []
    mine = [name for reply in answers for name in reply if name.endswith(f"@{host}")]
    click.echo(
        f"{len(mine)} worker(s) on {host} answered" if mine else f"no worker on {host} answered (queue {s.queue})"
    )
    exit_with(ExitCode.OK if mine else ExitCode.FAILED)


@click.command("check-scheduler")
@click.option(
    "--lag", type=float, default=None, help="Seconds a timer may stay due unfired [default: 3 x MMR_TIMER_INTERVAL]."
)
def check_scheduler(lag: float | None) -> None:
    """Exit 0 unless a timer has been due for longer than --lag (beat's health check).

    Beat queues the timer job and a worker runs it, so a timer left unfired means one of them is
    not running: reminders, overdue flags and follow-ups would silently not come.
    """
    from adapter.pipeline.state import State

    s = load_settings()
    allowed = lag if lag is not None else 3 * s.timer_interval
    late = State.from_url(s.redis_url).timers.due_count(datetime.now(UTC) - timedelta(seconds=allowed))
    click.echo(f"{late} timer(s) due for more than {allowed:.0f} s" if late else "timers are being fired")
    exit_with(ExitCode.FAILED if late else ExitCode.OK)


@click.command()
@click.option(
    "--schedule-file",
    default=None,
    help="Where beat keeps its last-run times [default: beat-schedule in MMR_STATE_DIR].",
)
def beat(schedule_file: str | None) -> None:
    """Run the scheduler: reconciliation, due timers and the sweep of open referrals, periodically."""
    s = load_settings(require=REQUIRED_FOR_FHIR)
    from adapter.pipeline.worker import app

    if schedule_file is None:
        try:
            s.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"MMR_STATE_DIR: cannot create {s.state_dir} ({exc.strerror})") from None
        schedule_file = str(s.state_dir / "beat-schedule")
    app.start(["beat", "--loglevel", s.log_level, "-s", schedule_file])
