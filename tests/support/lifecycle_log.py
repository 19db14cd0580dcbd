"""A real events.db of bench lifecycles, written through the embedded commands as a running
system writes them."""

from __future__ import annotations

from pathlib import Path

from bench.workload import lifecycle
from events.sqlite_log import SqliteEventLog
from processors.commands import EmbeddedCommands


async def write_lifecycles(data_dir: Path, count: int) -> list[str]:
    log = SqliteEventLog(data_dir / "events.db")
    commands = EmbeddedCommands(log)
    ids = []
    for index in range(count):
        flow = lifecycle(index)
        for command in flow.commands:
            await commands.execute(flow.task_id, command, actor="test")
        ids.append(flow.task_id)
    await log.close()
    return ids
