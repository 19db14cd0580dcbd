"""SIGKILL while accepting tasks: every task answered 202 still reaches a terminal status."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from taskledger.dev import free_port
from tests.support.dev_process import start_dev, wait_healthy

TERMINAL = {"APPROVED", "FAILED", "CANCELLED"}


# Not a rate-limit test: the status polling below must not be throttled.
DEV_ENV = {
    "TASKLEDGER_MINER_TIMEOUT": "3",
    "TASKLEDGER_TASK_DEADLINE": "30",
    "TASKLEDGER_RATE_LIMIT": "100000",
    "TASKLEDGER_RATE_BURST": "100000",
}


async def test_tasks_accepted_before_a_sigkill_all_finish_after_a_restart(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = start_dev(tmp_path, port, DEV_ENV)
    accepted: list[str] = []
    try:
        async with aiohttp.ClientSession() as session:
            await asyncio.to_thread(wait_healthy, base)
            key = (tmp_path / "api-key").read_text().strip()
            headers = {"Authorization": f"Bearer {key}"}

            async def submit(index: int) -> None:
                body = {"text": f"Task {index}. Miners answer it. Validators score it."}
                try:
                    async with session.post(
                        f"{base}/api/v1/summarization", json=body, headers=headers
                    ) as reply:
                        if reply.status == 202:
                            accepted.append((await reply.json())["task_id"])
                except aiohttp.ClientError:
                    pass  # the process died under this request: it was never accepted

            async def flood() -> None:
                index = 0
                while True:
                    await asyncio.gather(*(submit(index + n) for n in range(8)))
                    index += 8

            flooding = asyncio.create_task(flood())
            await asyncio.sleep(1.5)
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
            await asyncio.sleep(0.2)
            flooding.cancel()
            assert len(accepted) > 20, "the flood should have had tasks accepted"

            process = start_dev(tmp_path, port, DEV_ENV)
            await asyncio.to_thread(wait_healthy, base)
            statuses: dict[str, str] = {}
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                for task_id in accepted:
                    if statuses.get(task_id) in TERMINAL:
                        continue
                    async with session.get(
                        f"{base}/api/v1/task/{task_id}/status", headers=headers
                    ) as reply:
                        assert reply.status == 200, f"accepted task {task_id} vanished"
                        statuses[task_id] = (await reply.json())["status"]
                if all(statuses.get(t) in TERMINAL for t in accepted):
                    break
                await asyncio.sleep(0.5)
            unfinished = {t: s for t, s in statuses.items() if s not in TERMINAL}
            assert not unfinished, unfinished
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    audit = subprocess.run(
        [sys.executable, "-m", "taskledger.cli", "audit", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert audit.returncode == 0, audit.stdout + audit.stderr
