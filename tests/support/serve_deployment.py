"""`taskledger serve` processes of one deployment, as an operator runs them: one data directory,
one event log, the same proxy wallet, a client key and a validator."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from miners.identity import Identity
from tests.support.dev_process import stop_groups, wait_healthy
from tests.support.fast_miners import FakeMiner

API_KEY = "roles-client-key-0123456789"


VALIDATOR = Identity.from_seed(bytes([7]) * 32, "validator")


def summarization_miners_file(path: Path, fleet: Iterable[FakeMiner]) -> Path:
    """A miners file (``TASKLEDGER_MINERS_FILE``) naming ``fleet`` as summarization miners."""
    miners = [
        {"hotkey": m.hotkey, "url": m.info.url, "capabilities": ["summarization"]} for m in fleet
    ]
    path.write_text(json.dumps(miners))
    return path


class Deployment:
    """Processes of ``taskledger serve`` sharing one data directory and one broker."""

    def __init__(self, root: Path, event_log: str, miners_file: Path) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.env = {
            **os.environ,
            "TASKLEDGER_DATA_DIR": str(self.data_dir),
            "TASKLEDGER_EVENT_LOG": event_log,
            "TASKLEDGER_API_KEYS": f"alice={API_KEY}",
            "TASKLEDGER_MINERS_FILE": str(miners_file),
            "TASKLEDGER_VALIDATOR_HOTKEYS": VALIDATOR.ss58,
            "TASKLEDGER_MINER_TIMEOUT": "30",
            "TASKLEDGER_TASK_DEADLINE": "120",
            "TASKLEDGER_ALLOW_PRIVATE_MINERS": "on",
        }
        # Every process of one deployment signs as the same proxy: make its wallet first.
        self.proxy = Identity.load_or_create(self.data_dir / "wallets", "taskledger-proxy")
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, role: str, port: int | None = None) -> subprocess.Popen[bytes]:
        name = f"{role}-{len(self.processes)}"
        command = [sys.executable, "-m", "taskledger.cli", "serve", "--role", role]
        if port is not None:
            command += ["--port", str(port)]
        process = subprocess.Popen(
            command,
            env=self.env,
            stdout=(self.root / f"{name}.out").open("wb"),
            stderr=(self.root / f"{name}.err").open("wb"),
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    async def healthy(self, base: str, seconds: float = 120) -> None:
        waiting = asyncio.create_task(asyncio.to_thread(wait_healthy, base, seconds))
        while not waiting.done():
            crashed = [p.args for p in self.processes if p.poll() is not None]
            if crashed:
                waiting.cancel()
                raise AssertionError(f"exited early: {crashed}")
            await asyncio.sleep(0.2)
        await waiting

    def stop(self) -> None:
        stop_groups(self.processes)

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted(self.root.glob("*.err"))
        )
