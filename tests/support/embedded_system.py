"""A taskledger system on the embedded runtime, driven in process without HTTP: settings with
short miner timeouts, a submit through intake, and waits on the read models."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from aggregates import TaskState
from miners.identity import Identity
from projections import status_document
from taskledger.settings import Settings
from taskledger.system import System

PROXY = Identity.from_uri("//TaskledgerTestProxy")


def settings_for(data_dir: Path, **changes: Any) -> Settings:
    base = Settings(
        data_dir=data_dir,
        durability="normal",
        miners_per_type={"summarization": 2, "transcription": 2, "tts": 2},
        miner_timeout_seconds=0.6,
        task_deadline_seconds=5.0,
        allow_private_miners=True,
    )
    return replace(base, **changes)


async def wait_for(
    system: System, task_id: str, done: Callable[[TaskState], bool], seconds: float = 10.0
) -> TaskState:
    state: TaskState | None = None
    for _ in range(int(seconds / 0.02)):
        state = await system.store.get_task(task_id)
        if state is not None and done(state):
            return state
        await asyncio.sleep(0.02)
    raise AssertionError(f"task {task_id} never got there: {state and status_document(state)}")


def is_status(*statuses: str) -> Callable[[TaskState], bool]:
    return lambda state: state.status in statuses


async def submit(system: System, text: str = "One. Two. Three.", priority: str = "normal") -> str:
    state, created = await system.intake.submit(
        client="tester",
        task_type="summarization",
        priority=priority,  # type: ignore[arg-type]
        input={"text": text},
    )
    assert created
    return state.task_id
