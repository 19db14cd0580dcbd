"""Keeps the read models current and tells listeners which tasks changed."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import subprocess
import sys
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from aggregates import TaskState
from events import EventLog
from events.sqlite_log import SqliteEventLog
from processors.status_sink import StatusSink
from projections import Projector
from projections.sqlite_store import SqliteReadModelStore


class StatusBroadcaster:
    """In-process fan-out of task changes, for status streams in the same process."""

    def __init__(self) -> None:
        self._listeners: dict[str, set[StatusSink]] = defaultdict(set)

    def listen(self, task_id: str) -> asyncio.Queue[TaskState]:
        queue: asyncio.Queue[TaskState] = asyncio.Queue()
        self.attach(task_id, queue)
        return queue

    def forget(self, task_id: str, queue: asyncio.Queue[TaskState]) -> None:
        self.detach(task_id, queue)

    def attach(self, task_id: str, sink: StatusSink) -> None:
        self._listeners[task_id].add(sink)

    def detach(self, task_id: str, sink: StatusSink) -> None:
        listeners = self._listeners.get(task_id)
        if listeners is not None:
            listeners.discard(sink)
            if not listeners:
                del self._listeners[task_id]

    def publish(self, states: list[TaskState]) -> None:
        for state in states:
            for queue in self._listeners.get(state.task_id, ()):
                queue.put_nowait(state)


# The most events folded and committed at once. A projection that keeps up gets
# what was appended since it last looked; one that lags reads up to this many,
# and the more of a task's events share a batch, the fewer times its row is
# written (a whole lifecycle often fits: half the CPU per event of 2,000).
MAX_BATCH = 10_000
# Beside the dispatcher in one event loop, a batch holds the loop for as long as
# it takes to fold (about 40 ms for 2,000 events): larger ones delay dispatch.
SHARED_LOOP_MAX_BATCH = 2_000


class ProjectionRunner:
    def __init__(
        self,
        log: EventLog,
        projector: Projector,
        broadcaster: StatusBroadcaster,
        *,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._log = log
        self._projector = projector
        self._broadcaster = broadcaster
        self._max_batch = max_batch
        self.position = 0

    async def run(self) -> None:
        checkpoint = await self._projector.checkpoint()
        async for batch in self._log.subscribe(after=checkpoint, batch_size=self._max_batch):
            changed = await self._projector.apply(batch)
            self.position = int(batch.checkpoint) if batch.checkpoint.isdigit() else self.position
            self._broadcaster.publish(changed)


async def follow_log_file(
    log_path: Path,
    store_path: Path,
    *,
    stop: Callable[[], bool],
    ready: Callable[[], None] | None = None,
    check_seconds: float = 0.05,
) -> None:
    """Project the SQLite log at ``log_path`` into the SQLite read models at ``store_path``.

    Meant for a process of its own: the log's followers in other processes see
    appends by polling, so the writer pays nothing for the projection but the
    shared disk. Runs until ``stop()`` answers true; resumes from the store's
    checkpoint, like the runner inside a process.
    """
    log = SqliteEventLog(log_path)
    store = SqliteReadModelStore(store_path)
    runner = ProjectionRunner(log, Projector(store), StatusBroadcaster())
    following = asyncio.create_task(runner.run())
    try:
        if ready is not None:
            ready()
        while not stop():
            done, _ = await asyncio.wait({following}, timeout=check_seconds)
            if done:
                following.result()  # the runner only ends by failing: raise it here
    finally:
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following
        await log.close()
        await store.close()


class ProjectionProcess:
    """The projection runner in a child process, following the embedded log file.

    Start it, append in this process, and read how far it got from the store's
    checkpoint (which commits with the read models). The child is a fresh
    interpreter (``python -m processors.projection_runner``): it shares no SQLite
    connection or lock with this one, and it stops when its stdin closes, so
    it does not outlive this process.
    """

    def __init__(self, log_path: Path, store_path: Path) -> None:
        self._command = [
            sys.executable,
            "-m",
            "processors.projection_runner",
            str(log_path),
            str(store_path),
        ]
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
    """``python -m processors.projection_runner LOG STORE``: project until stdin closes."""
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
