"""A real HAPI FHIR JPA server on loopback, without Docker: the project's fixture in ``hapi/``.

Development and tests only (H2 in memory, no authentication). The fixture is built once with
Maven from Maven Central into a cache keyed by the hash of its sources
(``~/.cache/mmr-adapter/hapi/<hash>/``, or ``$MMR_HAPI_CACHE``), then started with ``java -jar``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from adapter.dev.sandbox import free_port, serve_until_signalled
from adapter.polling import TimedOut, poll_or_raise

SOURCES = Path(__file__).resolve().parents[2] / "hapi"
JAR = "mmr-hapi-fixture.jar"
HEAP = "768m"
# Spring Boot and HAPI take about 20 s to start on two cores; a first start after a build is slower.
BOOT_TIMEOUT = 180.0


class HapiError(RuntimeError):
    """The HAPI fixture cannot be built or started; the message is one line saying why."""


def cache_root() -> Path:
    return Path(os.environ.get("MMR_HAPI_CACHE", Path.home() / ".cache" / "mmr-adapter" / "hapi"))


def source_files(root: Path = SOURCES) -> list[Path]:
    """What the jar is built from: the POM and everything under ``src/``."""
    return [root / "pom.xml", *sorted(p for p in (root / "src").rglob("*") if p.is_file())]


def source_hash(root: Path = SOURCES) -> str:
    digest = hashlib.sha256()
    for path in source_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _require(tool: str, what: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise HapiError(f"the HAPI fixture needs `{tool}` ({what}) on the PATH")
    return path


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One build at a time per cache entry, across processes (two test sessions may start together)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build(quiet: bool = True) -> Path:
    """The fixture's runnable jar, built with ``mvn -q -B package`` unless the cache already holds it."""
    _require("java", "a Java 17+ runtime")
    entry = cache_root() / source_hash()
    jar = entry / JAR
    if jar.is_file():
        return jar
    mvn = _require("mvn", "Maven 3.8+")
    with _locked(entry.with_suffix(".lock")):
        if jar.is_file():
            return jar
        entry.mkdir(parents=True, exist_ok=True)
        log_path = entry / "build.log"
        with tempfile.TemporaryDirectory(prefix="build-", dir=entry) as workdir:
            shutil.copy2(SOURCES / "pom.xml", workdir)
            shutil.copytree(SOURCES / "src", Path(workdir) / "src")
            with log_path.open("wb") as log:
                result = subprocess.run(
                    [mvn, "-q", "-B", "package"],
                    cwd=workdir,
                    check=False,
                    stdout=log if quiet else None,
                    stderr=subprocess.STDOUT if quiet else None,
                )
            built = Path(workdir) / "target" / JAR
            if result.returncode != 0 or not built.is_file():
                raise HapiError(f"building the HAPI fixture failed (mvn exit {result.returncode}); see {log_path}")
            os.replace(built, jar)
    return jar


@dataclass
class HapiServer:
    """A running fixture; same ``base_url`` and ``stop()`` as :class:`adapter.dev.sandbox.Sandbox`."""

    port: int
    process: subprocess.Popen[bytes]
    log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.log is not None:
            self.log.close()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def start_hapi(
    port: int = 0, timeout: float = BOOT_TIMEOUT, quiet: bool = True, log_path: Path | None = None
) -> HapiServer:
    """Build if needed, start the fixture on ``127.0.0.1`` (a free port if 0) and wait for ``/fhir/metadata``.

    ``quiet`` sends HAPI's output to ``log_path`` (default: ``hapi.log`` in the cache entry), anew each start.
    """
    jar = build(quiet=quiet)
    java = _require("java", "a Java 17+ runtime")
    port = port or free_port()
    log = None
    if quiet:
        log = (log_path or jar.parent / "hapi.log").open("wb")  # one start, one log
    command = [
        java,
        f"-Xmx{HEAP}",
        "-XX:+UseSerialGC",
        "-jar",
        str(jar),
        f"--server.port={port}",
        "--server.address=127.0.0.1",
    ]
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT if quiet else None, stdin=subprocess.DEVNULL
    )
    server = HapiServer(port, process, log)

    def ready() -> bool:
        if process.poll() is not None:
            where = f"; see {log.name}" if log is not None else ""
            raise HapiError(f"the HAPI fixture exited with code {process.returncode} while starting{where}")
        return _answers(f"{server.base_url}/metadata")

    try:
        poll_or_raise(ready, timeout, interval=0.25, what=f"{server.base_url}/metadata")
    except TimedOut:
        server.stop()
        raise HapiError(f"the HAPI fixture did not answer {server.base_url}/metadata within {timeout:.0f} s") from None
    except BaseException:
        server.stop()
        raise
    return server


def run_hapi(port: int, echo: Callable[[str], None]) -> None:
    """``mmr-adapter sandbox --hapi``: start the fixture, say where it is, stop it on Ctrl-C or SIGTERM."""
    _require("java", "a Java 17+ runtime")
    if not (cache_root() / source_hash() / JAR).is_file():
        _require("mvn", "Maven 3.8+")
        echo("building the HAPI FHIR fixture with Maven (first use only; a few minutes) ...")
    server = serve_until_signalled(
        lambda: start_hapi(port),
        lambda server: echo(
            f"HAPI FHIR server at {server.base_url} (log: {server.log.name if server.log else '-'}; "
            "Ctrl-C or SIGTERM to stop)"
        ),
    )
    if server is not None and server.process.returncode not in (0, 143, -signal.SIGTERM):
        raise HapiError(f"the HAPI fixture exited with code {server.process.returncode}")
