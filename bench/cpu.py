"""CPU seconds (user + system) of processes, from /proc, and optional py-spy profiles.

A process's figure is its own and its threads' (the kernel sums them in /proc/PID/stat),
plus its descendants' that are alive at the reading (the broker's script starts Java as a
child). Linux only; elsewhere every figure is NaN rather than a guess.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

_LINE = re.compile(r":\d+\)$")
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user + system seconds) of one process, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICKS


def cpu_seconds(pid: int, *, descendants: bool = False) -> float:
    """CPU seconds of ``pid`` so far, with ``descendants`` those of its living descendants too."""
    if not Path("/proc/self/stat").exists():
        return float("nan")
    if not descendants:
        own = _stat(pid)
        return float("nan") if own is None else own[1]
    parents: dict[int, int] = {}
    seconds: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            parents[int(entry.name)], seconds[int(entry.name)] = stat
    total = 0.0
    for candidate, spent in seconds.items():
        walker = candidate
        while walker > 1:
            if walker == pid:
                total += spent
                break
            walker = parents.get(walker, 0)
    return total


class CpuMeter:
    """CPU seconds each named process spent between :meth:`start` and :meth:`stop`."""

    def __init__(self, pids: dict[str, int], trees: frozenset[str] = frozenset()) -> None:
        self._pids, self._trees = pids, trees
        self._started: dict[str, float] = {}
        self.spent: dict[str, float] = {}

    def start(self) -> None:
        self._started = self._read()

    def stop(self) -> dict[str, float]:
        now = self._read()
        self.spent = {name: now[name] - self._started[name] for name in self._pids}
        return self.spent

    def _read(self) -> dict[str, float]:
        return {
            name: cpu_seconds(pid, descendants=name in self._trees)
            for name, pid in self._pids.items()
        }


class Profilers:
    """py-spy sampling each named process while open, writing collapsed stacks to a folder.

    Only when py-spy is on PATH (it is not a dependency: `pip install py-spy`); sampling
    costs CPU of its own, so a profiled run's CPU figures are not for recording.
    """

    def __init__(self, folder: Path | None, pids: dict[str, int], tag: str) -> None:
        self._folder, self._pids, self._tag = folder, pids, tag
        self._running: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Profilers:
        spy = shutil.which("py-spy")
        if self._folder is None or spy is None:
            return self
        self._folder.mkdir(parents=True, exist_ok=True)
        for name, pid in self._pids.items():
            output = self._folder / f"{self._tag}-{name}.txt"
            command = [spy, "record", "--pid", str(pid), "--format", "raw", "--nonblocking"]
            command += ["--rate", "50", "--output", str(output)]
            self._running.append(
                subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        return self

    def __exit__(self, *_: object) -> None:
        for process in self._running:
            process.send_signal(2)  # SIGINT: py-spy writes what it sampled and exits
        for process in self._running:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def top_functions(collapsed: Path, count: int = 25) -> list[tuple[str, float, float]]:
    """(function, share of samples it was on the stack, share it was on top) from py-spy's
    raw (collapsed) output, the most inclusive first."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack or not number.isdigit():
            continue
        samples = int(number)
        # One entry per function, whatever line of it was running.
        frames = [_LINE.sub(")", frame) for frame in stack.split(";")]
        total += samples
        for frame in set(frames):
            inclusive[frame] += samples
        own[frames[-1]] += samples
    if total == 0:
        return []
    return [
        (frame, samples / total, own[frame] / total)
        for frame, samples in inclusive.most_common(count)
    ]
