"""`taskledger dev` as a user starts it: its own process group, waited on until healthy, and
process groups stopped the way an operator stops them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path


def start_dev(
    data_dir: Path, port: int, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "taskledger.cli", "dev", "--data-dir", str(data_dir)]
    return subprocess.Popen(
        [*command, "--port", str(port)],
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def wait_healthy(base: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/api/v1/health") as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError("taskledger dev did not become healthy")


def stop_groups(processes: Iterable[subprocess.Popen[bytes]], timeout: float = 30) -> None:
    """SIGTERM every process group still running, then wait for each; SIGKILL any group that
    outlives ``timeout``."""
    processes = list(processes)
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
