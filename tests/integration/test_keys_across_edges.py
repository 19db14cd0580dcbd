"""Client keys across two real edge processes on one data directory, and `taskledger keys`.

A key created on one edge (or with the command line) works on the other within
5 seconds; one revoked on one edge is refused on the other within 5 seconds; a
quota is counted once for both edges.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from taskledger.dev import free_port
from tests.support.dev_process import stop_groups, wait_healthy

if TYPE_CHECKING:
    from tests.support.firestore_emulator import FirestoreEmulator

pytestmark = pytest.mark.slow

ADMIN = "edges-admin-key-0123456789"
ENV_KEY = "edges-env-client-key-0123456789"
PROPAGATION_SECONDS = 5.0
FIRESTORE_PROJECT = "taskledger-edges"


class Edges:
    def __init__(self, root: Path, **extra_env: str) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.env = {
            **os.environ,
            "TASKLEDGER_DATA_DIR": str(self.data_dir),
            "TASKLEDGER_API_KEYS": f"env={ENV_KEY}",
            "TASKLEDGER_ADMIN_KEYS": f"ops={ADMIN}",
            **extra_env,
        }
        self.processes: list[subprocess.Popen[bytes]] = []
        self.urls: list[str] = []

    def start(self, role: str, data_dir: Path | None = None) -> str:
        port = free_port()
        name = f"{role}-{len(self.processes)}"
        env = dict(self.env)
        if data_dir is not None:
            env["TASKLEDGER_DATA_DIR"] = str(data_dir)
        process = subprocess.Popen(
            [sys.executable, "-m", "taskledger.cli", "serve", "--role", role, "--port", str(port)],
            env=env,
            stdout=(self.root / f"{name}.out").open("wb"),
            stderr=(self.root / f"{name}.err").open("wb"),
            start_new_session=True,
        )
        self.processes.append(process)
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, 60)
        self.urls.append(url)
        return url

    def cli(self, *arguments: str) -> tuple[int, Any]:
        done = subprocess.run(
            [sys.executable, "-m", "taskledger.cli", "keys", *arguments],
            env=self.env,
            capture_output=True,
            timeout=60,
        )
        output = done.stdout.decode()
        return done.returncode, (json.loads(output) if done.returncode == 0 else done.stderr)

    def stop(self) -> None:
        stop_groups(self.processes)


@pytest.fixture(scope="module")
def edges(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edges]:
    deployment = Edges(tmp_path_factory.mktemp("edges"))
    try:
        deployment.start("all")
        deployment.start("edge")
        yield deployment
    finally:
        deployment.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    # A new connection per request: the edges close idle kept-alive ones, and a request
    # racing that close would fail for a reason that is not the test's.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as client:
        yield client


async def _submit(session: aiohttp.ClientSession, url: str, key: str) -> tuple[int, Any]:
    async with session.post(
        f"{url}/api/v1/summarization",
        json={"text": "a text worth summarising across edges"},
        headers={"Authorization": f"Bearer {key}"},
    ) as response:
        return response.status, await response.json()


async def _admin(
    session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> tuple[int, Any]:
    async with session.request(
        method, url, headers={"Authorization": f"Bearer {ADMIN}"}, **kwargs
    ) as response:
        return response.status, await response.json()


async def _until(session: aiohttp.ClientSession, url: str, key: str, wanted: int) -> float:
    """Seconds until a submission with ``key`` on ``url`` answers ``wanted``; fails past 5 s."""
    started = time.monotonic()
    while True:
        status, body = await _submit(session, url, key)
        if status == wanted:
            return time.monotonic() - started
        elapsed = time.monotonic() - started
        assert elapsed < PROPAGATION_SECONDS, (status, body)
        await asyncio.sleep(0.1)


async def test_a_key_created_on_one_edge_works_on_the_other_and_a_revocation_reaches_it(
    edges: Edges, session: aiohttp.ClientSession
) -> None:
    first, second = edges.urls
    status, made = await _admin(session, "POST", f"{first}/api/v1/admin/keys", json={"name": "k1"})
    assert status == 201, made
    assert (await _submit(session, first, made["key"]))[0] == 202  # at once where made
    await _until(session, second, made["key"], 202)
    status, _ = await _admin(session, "DELETE", f"{first}/api/v1/admin/keys/k1")
    assert status == 200
    assert (await _submit(session, first, made["key"]))[0] == 401
    await _until(session, second, made["key"], 401)
    # The environment's key works on both, seeded by both without a quarrel.
    assert (await _submit(session, second, ENV_KEY))[0] == 202
    assert (await _submit(session, first, ENV_KEY))[0] == 202


async def test_a_quota_is_counted_once_for_both_edges(
    edges: Edges, session: aiohttp.ClientSession
) -> None:
    first, second = edges.urls
    status, made = await _admin(
        session, "POST", f"{second}/api/v1/admin/keys", json={"name": "q1", "quota_per_day": 4}
    )
    assert status == 201, made
    await _until(session, first, made["key"], 202)  # known on the first edge: one task
    answers = await asyncio.gather(
        *(_submit(session, url, made["key"]) for url in (first, second) for _ in range(4))
    )
    statuses = sorted(status for status, _ in answers)
    assert statuses == [202, 202, 202, 429, 429, 429, 429, 429], answers
    refused = [body for status, body in answers if status == 429]
    assert {body["error"]["code"] for body in refused} == {"quota_exceeded"}
    status, listed = await _admin(session, "GET", f"{first}/api/v1/admin/keys")
    assert {entry["name"]: entry["used_today"] for entry in listed["keys"]}["q1"] == 4


async def test_the_command_line_manages_keys_on_the_data_dir_and_through_a_proxy(
    edges: Edges, session: aiohttp.ClientSession
) -> None:
    first, second = edges.urls
    code, made = edges.cli("create", "cli1", "--quota-per-day", "100", "--rate", "50")
    assert code == 0, made
    assert (made["name"], made["quota_per_day"], made["rate_per_second"]) == ("cli1", 100, 50.0)
    await _until(session, first, made["key"], 202)
    await _until(session, second, made["key"], 202)
    code, listed = edges.cli("list", "--url", second, "--admin-key", ADMIN)
    assert code == 0, listed
    entry = {e["name"]: e for e in listed["keys"]}["cli1"]
    assert entry["used_today"] == 2 and not entry["revoked"] and "key" not in entry
    code, again = edges.cli("create", "cli1")
    assert code == 1 and b"exists" in again
    code, refused = edges.cli("list", "--url", second, "--admin-key", "not-the-key")
    assert code == 1 and b"401" in refused
    code, revoked = edges.cli("revoke", "cli1", "--url", first, "--admin-key", ADMIN)
    assert code == 0 and revoked["revoked"] is True
    await _until(session, second, made["key"], 401)
    code, listed = edges.cli("list")
    assert code == 0 and {e["name"]: e for e in listed["keys"]}["cli1"]["revoked"] is True


@pytest.mark.firestore
async def test_on_firestore_keys_and_quotas_reach_edges_that_share_nothing_else(
    tmp_path: Path, firestore_emulator: FirestoreEmulator, session: aiohttp.ClientSession
) -> None:
    """Two edges with data directories of their own (as on two machines), one Firestore."""
    firestore_emulator.reset(FIRESTORE_PROJECT)
    deployment = Edges(
        tmp_path,
        TASKLEDGER_READ_MODELS=f"firestore://{FIRESTORE_PROJECT}",
        FIRESTORE_EMULATOR_HOST=firestore_emulator.host,
    )
    try:
        first = deployment.start("edge", tmp_path / "machine-1")
        second = deployment.start("edge", tmp_path / "machine-2")
        status, made = await _admin(
            session, "POST", f"{first}/api/v1/admin/keys", json={"name": "fs", "quota_per_day": 3}
        )
        assert status == 201, made
        await _until(session, second, made["key"], 202)
        answers = await asyncio.gather(
            *(_submit(session, url, made["key"]) for url in (first, second) for _ in range(2))
        )
        assert sorted(status for status, _ in answers) == [202, 202, 429, 429], answers
        status, _ = await _admin(session, "DELETE", f"{second}/api/v1/admin/keys/fs")
        assert status == 200
        await _until(session, first, made["key"], 401)
        assert (await _submit(session, first, ENV_KEY))[0] == 202
    finally:
        deployment.stop()
