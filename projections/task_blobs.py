"""Which stored files a task refers to: its inputs and its miners' audio results."""

from __future__ import annotations

from typing import Any

from aggregates import TaskState


def result_blobs(result: dict[str, Any] | None) -> list[str]:
    if not result:
        return []
    audio = result.get("audio")
    if isinstance(audio, dict) and isinstance(audio.get("digest"), str):
        return [audio["digest"]]
    return []


def task_blobs(state: TaskState) -> list[str]:
    # Written for every task row the projection commits: most tasks have no files.
    digests = dict.fromkeys(state.blobs)
    for slot in state.miners:
        if slot.result:
            digests.update(dict.fromkeys(result_blobs(slot.result)))
    return list(digests)
