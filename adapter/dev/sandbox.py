"""The sandbox FHIR server (``sekmet-fhir``) for development, tests and the demo; never production.

Started on loopback only, with the simulator off (it would act on our orders) and request
logging off (it would store every request, patient data included).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

import httpx

from adapter.polling import TimedOut, poll_or_raise


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sandbox_config(port: int, data_dir: Path) -> str:
    return "\n".join(
        [
            f"base_url: http://127.0.0.1:{port}/fhir",
            "host: 127.0.0.1",
            f"port: {port}",
            f"data_dir: {data_dir}",
            f"db_path: {data_dir / 'sandbox.db'}",
            "simulator:",
            "  enabled: false",
            "log_inbound: false",
            "subscriptions:",
            "  notify_method: put-resource",
            "  retries: 3",
            "",
        ]
    )


@dataclass
class Sandbox:
    port: int
    process: subprocess.Popen[bytes]
    workdir: tempfile.TemporaryDirectory[str] = field(repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.workdir.cleanup()


def start_sandbox(port: int = 0, timeout: float = 30.0, quiet: bool = True, extra_config: str = "") -> Sandbox:
    """Start the sandbox on ``127.0.0.1`` (a free port if 0) and wait until it answers.

    ``extra_config`` is appended to its YAML settings (e.g. a ``server_auth`` block).
    """
    try:
        import sekmet  # noqa: F401
    except ImportError as exc:
        raise RuntimeError("the sandbox needs the 'sandbox' extra: pip install -e '.[sandbox]'") from exc
    port = port or free_port()
    workdir = tempfile.TemporaryDirectory(prefix="mmr-sandbox-")
    config = Path(workdir.name) / "sandbox.yaml"
    config.write_text(sandbox_config(port, Path(workdir.name)) + extra_config)
    out = subprocess.DEVNULL if quiet else None
    env = {**os.environ, "SEKMET_CONFIG": str(config)}
    process = subprocess.Popen(
        [sys.executable, "-m", "sekmet.cli", "serve", "-c", str(config)],
        stdout=out,
        stderr=out,
        cwd=workdir.name,
        env=env,
    )
    sandbox = Sandbox(port, process, workdir)

    def answers() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"the sandbox exited with code {process.returncode}")
        try:
            return httpx.get(f"{sandbox.base_url}/metadata", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        poll_or_raise(answers, timeout, what=f"{sandbox.base_url}/metadata")
    except TimedOut:
        sandbox.stop()
        raise RuntimeError(f"the sandbox did not answer within {timeout:.0f} s") from None
    except BaseException:  # Ctrl-C or SIGTERM while it boots: no child, no files left
        sandbox.stop()
        raise
    return sandbox


class Server(Protocol):
    """A development server child: the sandbox or the HAPI fixture."""

    process: subprocess.Popen[bytes]

    def stop(self) -> None: ...


S = TypeVar("S", bound=Server)


def serve_until_signalled(start: Callable[[], S], announce: Callable[[S], None]) -> S | None:
    """Start a server, announce it, and wait until it ends or SIGINT or SIGTERM comes; then stop it,
    leaving nothing behind. ``None`` when a signal came before it was up (``start`` cleans up then).

    Python's default SIGTERM ends the interpreter at once, skipping every ``finally``: the server
    child was orphaned (still answering on its port) and its database left in /tmp. Both signals
    now end the wait the same way, from before the start (a signal while it boots stops it too)
    to the end, and are ignored while ``stop`` runs, so a second Ctrl-C cannot cut it short.
    """

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    caught = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, interrupt) for sig in caught}
    server: S | None = None
    try:
        server = start()
        announce(server)
        server.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        for sig in caught:
            signal.signal(sig, signal.SIG_IGN)
        try:
            if server is not None:
                server.stop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return server
