"""A processors process without an edge may project in a child process
(``TASKLEDGER_PROJECTION=process``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from processors.projection_child import ProjectionChild
from taskledger.settings import Settings
from taskledger.system import System, build_system
from tests.support.embedded_system import (
    PROXY,
    is_status,
    settings_for,
    submit,
    wait_for,
)
from tests.support.fast_miners import FakeMiner, answer


def in_a_child(tmp_path: Path) -> Settings:
    return replace(settings_for(tmp_path), projection="process")


@contextlib.asynccontextmanager
async def running(
    settings: Settings, miners: list[FakeMiner], *, edge: bool
) -> AsyncIterator[System]:
    """A system with processors (and the edge, if asked), closed on the way out."""
    system = build_system(settings, extra_miners=[m.info for m in miners], identity=PROXY)
    await system.start(edge=edge, processors=True)
    try:
        yield system
    finally:
        await system.close()


@pytest.fixture
async def miners() -> AsyncIterator[list[FakeMiner]]:
    started = [await FakeMiner(hotkey, answer).start() for hotkey in ("5MinerA", "5MinerB")]
    yield started
    for miner in started:
        await miner.stop()


async def test_the_processors_role_projects_in_a_child(
    tmp_path: Path, miners: list[FakeMiner]
) -> None:
    async with running(in_a_child(tmp_path), miners, edge=False) as system:
        assert isinstance(system.projection_child, ProjectionChild)
        task_id = await submit(system)
        # The read model this process reads was written by the child.
        await wait_for(system, task_id, is_status("DONE"))
        approved = await system.evaluations.evaluate(
            "5Validator", task_id, {"5MinerA": 0.4, "5MinerB": 0.6}
        )
        assert approved.status == "APPROVED"
        await wait_for(system, task_id, is_status("APPROVED"))
        for _ in range(100):
            figures = await system.processor_figures()
            if figures["projection_lag_events"] == 0:
                break
            await asyncio.sleep(0.05)
        assert figures["projection_lag_events"] == 0
        assert figures["restarts"]["projections"] == 0


async def test_by_default_the_processors_role_projects_inline(
    tmp_path: Path, miners: list[FakeMiner]
) -> None:
    async with running(settings_for(tmp_path), miners, edge=False) as system:
        assert system.projection_child is None
        task_id = await submit(system)
        await wait_for(system, task_id, is_status("DONE"))
        assert _projection_children() == []


async def test_with_an_edge_the_projection_stays_in_process(
    tmp_path: Path, miners: list[FakeMiner]
) -> None:
    async with running(in_a_child(tmp_path), miners, edge=True) as system:
        assert system.projection_child is None
        task_id = await submit(system)
        await wait_for(system, task_id, is_status("DONE"))


def _projection_children() -> list[int]:
    """This process's children running ``taskledger.projection_process``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == os.getpid() and b"taskledger.projection_process" in command:
            found.append(int(entry.name))
    return found


async def test_a_child_that_dies_is_reported_and_started_again(
    tmp_path: Path, miners: list[FakeMiner]
) -> None:
    async with running(in_a_child(tmp_path), miners, edge=False) as system:
        assert system.projection_child is not None
        for _ in range(100):
            if children := _projection_children():
                break
            await asyncio.sleep(0.05)
        (first,) = children
        os.kill(first, signal.SIGKILL)
        for _ in range(200):
            figures = await system.processor_figures()
            if figures["restarts"]["projections"] == 1 and _projection_children():
                break
            await asyncio.sleep(0.05)
        assert figures["restarts"]["projections"] == 1
        assert _projection_children() not in ([], [first])
        task_id = await submit(system)
        await wait_for(system, task_id, is_status("DONE"))
    assert _projection_children() == []
