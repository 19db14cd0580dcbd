"""Retention: after a while, finished tasks' files are deleted; the log keeps every fact."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from aggregates import ArchiveTask, DomainError
from blobs.port import BlobStore
from processors.command_port import TaskCommands
from projections.store import ReadModelStore
from projections.task_blobs import task_blobs

log = logging.getLogger(__name__)

NAME = "retention"


class Retention:
    def __init__(
        self,
        commands: TaskCommands,
        store: ReadModelStore,
        blobs: BlobStore,
        keep_for: timedelta,
        clock: Callable[[], datetime],
    ) -> None:
        self._commands = commands
        self._store = store
        self._blobs = blobs
        self._keep_for = keep_for
        self._clock = clock

    async def tick(self, limit: int = 200) -> int:
        """Archive finished tasks older than the retention age; returns how many."""
        now = self._clock()
        archived = 0
        for state in await self._store.tasks_to_archive(now - self._keep_for, limit):
            deleted = []
            for digest in task_blobs(state):
                # Files are content-addressed: another live task may share this one.
                if await self._store.blob_in_use(digest, state.task_id):
                    continue
                if await self._blobs.delete(digest):
                    deleted.append(digest)
            try:
                await self._commands.execute(
                    state.task_id, ArchiveTask(self._clock(), tuple(deleted)), actor=NAME
                )
            except DomainError as refused:
                log.warning("archiving %s refused: %s", state.task_id, refused)
                continue
            archived += 1
        return archived
