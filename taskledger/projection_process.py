"""The embedded projection in a process of its own: ``python -m taskledger.projection_process``.

The child opens the SQLite log and read models by path (it shares no connection
or lock with its parent) and follows the log with the processors' runner; the
parent starts it, appends, and reads how far it got from the store's checkpoint.
It lives in the composition root because it chooses the backends.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from events.sqlite_log import SqliteEventLog
from processors.projection_runner import follow
from projections.sqlite_store import SqliteReadModelStore

_MODULE = "taskledger.projection_process"  # what the child runs (``python -m``)


async def follow_log_file(
    log_path: Path,
    store_path: Path,
    *,
    stop: Callable[[], bool],
    ready: Callable[[], None] | None = None,
    check_seconds: float = 0.05,
) -> None:
    """Project the SQLite log at ``log_path`` into the SQLite read models at ``store_path``.

    The log's followers in other processes see appends by polling, so the writer
    pays nothing for the projection but the shared disk. Runs until ``stop()``
    answers true; resumes from the store's checkpoint.
    """
    log = SqliteEventLog(log_path)
    store = SqliteReadModelStore(store_path)
    try:
        await follow(log, store, stop=stop, ready=ready, check_seconds=check_seconds)
    finally:
        await log.close()
        await store.close()


class ProjectionProcess:
    """The projection runner in a child process, following the embedded log file.

    The child is a fresh interpreter: it shares no SQLite connection or lock with
    this one, and it stops when its stdin closes, so it does not outlive this process.
    """

    def __init__(self, log_path: Path, store_path: Path) -> None:
        self._command = [sys.executable, "-m", _MODULE, str(log_path), str(store_path)]
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        """Start the child and wait until it follows the log."""
        process = self._process = subprocess.Popen(
            self._command, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert process.stdout is not None
        ready = threading.Thread(target=process.stdout.readline, daemon=True)
        ready.start()
        ready.join(timeout)
        if ready.is_alive() or process.poll() is not None:
            process.kill()
            process.wait()
            raise RuntimeError("the projection process did not start")

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self, timeout: float = 30.0) -> int | None:
        """Ask the child to finish its batch and exit; returns its exit code."""
        process = self._process
        if process is None:
            return None
        assert process.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            process.stdin.close()
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()


def main(argv: Sequence[str]) -> int:
    """``python -m taskledger.projection_process LOG STORE``: project until stdin closes."""
    log_path, store_path = (Path(argument) for argument in argv)
    # Folding makes many short-lived objects per event: a larger young generation
    # lets the collector run less often (about 7% of this process's time, measured).
    gc.set_threshold(10_000, 50, 50)
    closed = threading.Event()

    def watch_stdin() -> None:
        sys.stdin.buffer.read()
        closed.set()

    def announce() -> None:
        print("following", flush=True)
        # Nobody reads our stdout after this line: anything else goes to stderr.
        sys.stdout = sys.stderr

    threading.Thread(target=watch_stdin, daemon=True).start()
    asyncio.run(follow_log_file(log_path, store_path, stop=closed.is_set, ready=announce))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
