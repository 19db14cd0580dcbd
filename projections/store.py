"""The read-model store port: task states, miner statistics and their checkpoints."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from aggregates import TaskState
from projections.miner_stats import MinerCount, MinerStats


class ReadModelStore(Protocol):
    async def commit(
        self,
        consumer: str,
        checkpoint: str,
        tasks: Sequence[TaskState],
        counts: Sequence[MinerCount],
    ) -> None:
        """Write task states, miner counts and the checkpoint, all or nothing.

        In one transaction, safe with several writers at once: a task state is written
        only above the stored version; a count only when its event's sequence is above
        its task's version as stored before this commit, onto the miner statistics as
        stored then (so none is lost to a concurrent commit, and none counts twice); the
        checkpoint only moves forward.
        """
        ...

    async def checkpoint(self, consumer: str) -> str | None: ...

    async def get_task(self, task_id: str) -> TaskState | None: ...

    async def get_tasks(self, task_ids: Sequence[str]) -> dict[str, TaskState]: ...

    async def get_miners(self, hotkeys: Sequence[str]) -> dict[str, MinerStats]: ...

    async def all_miners(self) -> list[MinerStats]: ...

    async def tasks_due(self, now: datetime, limit: int) -> list[str]:
        """Open tasks whose next deadline (a miner's or the task's) is at or before ``now``."""
        ...

    async def tasks_in_status(self, status: str, limit: int) -> list[TaskState]:
        """Tasks in ``status``, highest priority first, then oldest first."""
        ...

    async def tasks_for_client(self, client: str, limit: int) -> list[TaskState]: ...

    async def tasks_to_archive(self, finished_before: datetime, limit: int) -> list[TaskState]:
        """Terminal, not yet archived tasks last changed before ``finished_before``."""
        ...

    async def blob_in_use(self, digest: str, excluding_task: str) -> bool:
        """Whether a task other than ``excluding_task`` that is not archived uses the blob."""
        ...

    async def status_counts(self) -> dict[str, int]: ...

    async def recent_in_status(self, status: str, since: datetime, limit: int) -> list[TaskState]:
        """Tasks in ``status``, not archived, last changed at or after ``since``, newest first
        (the operators' dashboard)."""
        ...

    async def reset(self) -> None:
        """Drop every read model and checkpoint (before a rebuild)."""
        ...

    async def check(self) -> None: ...

    async def close(self) -> None: ...
