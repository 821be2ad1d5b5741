"""CPU time of the processes we started (Linux ``/proc``), to see where a phase's time goes."""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(stat: str) -> list[str]:
    return stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of every live process in process group ``pgid`` (ours: one per part)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat_fields((entry / "stat").read_text())
        except OSError:
            continue
        if int(fields[2]) == pgid:  # field 5: pgrp
            total += int(fields[11]) + int(fields[12])  # fields 14, 15: utime, stime
    return total / TICKS


def process_cpu_seconds(pid: int) -> float:
    try:
        fields = _stat_fields(Path(f"/proc/{pid}/stat").read_text())
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


# What a JVM server's threads do, by the first characters of their name (Linux keeps 15 of them).
JVM_THREADS = (
    ("http-nio-", "requests"),
    ("C1 CompilerThre", "JIT compiler"),
    ("C2 CompilerThre", "JIT compiler"),
    ("GC Thread", "GC"),
    ("VM Thread", "GC"),
    ("G1 ", "GC"),
)


def thread_group(name: str) -> str:
    """A thread's group: its role for a known JVM thread, else its name with the numbers taken out
    (``worker-7`` and ``worker-9`` count as one)."""
    return next((role for prefix, role in JVM_THREADS if name.startswith(prefix)), re.sub(r"\d+", "#", name))


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds of a process's threads, summed by :func:`thread_group`: which of a JVM's threads spent it."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = thread_group(stat[stat.index("(") + 1 : stat.rindex(")")])
        fields = _stat_fields(stat)
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / TICKS
    return out


def thread_cpu_used(before: dict[str, float], after: dict[str, float], least: float = 0.05) -> dict[str, float]:
    """What each thread group spent between two :func:`thread_cpu_seconds`, the largest first; groups
    under ``least`` seconds are left out (threads that ended in between are lost, not negative)."""
    used = {name: round(v - before.get(name, 0.0), 2) for name, v in after.items()}
    return dict(sorted(((k, v) for k, v in used.items() if v >= least), key=lambda kv: -kv[1]))


def settle(pid: int, below: float = 0.05, window: float = 0.5, timeout: float = 20.0) -> None:
    """Wait until the process uses less than ``below`` of a core over ``window`` seconds (HAPI works on
    for seconds after a burst of writes); gives up quietly after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = process_cpu_seconds(pid)
        time.sleep(window)
        if process_cpu_seconds(pid) - before < below * window:
            return


def machine_busy_seconds() -> float:
    """CPU seconds all processes of the machine spent busy (``/proc/stat``: all but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / TICKS


class CpuMeter:
    """CPU seconds per named part between :meth:`start` and :meth:`stop`, plus the whole machine's.

    ``others`` is the machine's busy time minus our parts': other people's work on a shared machine,
    which makes a run noisy when it is large.
    """

    def __init__(self, groups: dict[str, int], pids: dict[str, int] | None = None) -> None:
        self.groups = groups
        self.pids = pids or {}
        self.started: dict[str, float] = {}
        self.others_per_second: list[float] = []  # cores other processes kept busy, second by second
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None

    def _now(self) -> dict[str, float]:
        now = {name: group_cpu_seconds(pgid) for name, pgid in self.groups.items()}
        now.update({name: process_cpu_seconds(pid) for name, pid in self.pids.items()})
        now["machine"] = machine_busy_seconds()
        return now

    def _used(self, before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        used = {name: round(v - before.get(name, 0.0), 2) for name, v in after.items()}
        ours = sum(
            v
            for name, v in used.items()
            if name in self.groups or (name in self.pids and self.pids[name] not in self.groups.values())
        )
        used["others"] = round(max(used["machine"] - ours, 0.0), 2)
        return used

    def _sample(self) -> None:
        last = self.started
        while not self._stop.wait(1.0):
            now = self._now()
            self.others_per_second.append(self._used(last, now)["others"])
            last = now

    def start(self, per_second: bool = False) -> CpuMeter:
        """Start counting; with ``per_second``, also sample other processes' load each second."""
        self.started = self._now()
        self.others_per_second, self._stop = [], threading.Event()
        if per_second:
            self._sampler = threading.Thread(target=self._sample, name="cpu-sampler", daemon=True)
            self._sampler.start()
        return self

    def stop(self) -> dict[str, float]:
        self._stop.set()
        if self._sampler:
            self._sampler.join()
            self._sampler = None
        return self._used(self.started, self._now())
