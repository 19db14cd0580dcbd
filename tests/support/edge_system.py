"""A whole taskledger process on 127.0.0.1 for HTTP tests, with miners the tests steer.

``running_edge`` builds the real system (``taskledger.system.build_system``) on a
temporary data dir, serves ``http_edge.create_app`` on a free port and starts
the processors. The miners are small aiohttp servers that speak the miner
protocol: they check the proxy's btauth/1 signature, record the work, and
either answer at once (``instant``) or take it (202) and leave the answer to
the test (``manual``), which then posts it signed with the miner's own hotkey.

On the way out the log must audit clean, whatever the test did to the edge.
"""

from __future__ import annotations

import asyncio
import base64
import io
import socket
import wave
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from bittensor.http_auth import InMemoryNonceStore

from audit.log_audit import audit_log
from events import TASK_TYPES
from http_edge.app import create_app
from http_edge.connections import CappedSite, edge_runner
from miners.btauth import AuthFailed, verify_request
from miners.client import MinerClient, SignedResponse
from miners.directory import MinerInfo
from miners.identity import Identity
from taskledger.backends import open_event_log
from taskledger.serving import connection_limits
from taskledger.settings import Settings
from taskledger.system import System, build_system

PROXY = Identity.from_seed(bytes([1]) * 32, "proxy")
VALIDATOR = Identity.from_seed(bytes([2]) * 32, "validator")
STRANGER = Identity.from_seed(bytes([3]) * 32, "stranger")
MINER_SEEDS = [bytes([10 + n]) * 32 for n in range(8)]
API_KEYS = {"alice": "alice-secret-key-0123456789", "bob": "bob-secret-key-9876543210"}

MinerMode = Literal["manual", "instant"]


def wav_bytes(frames: int = 1600) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\x00\x01" * frames)
    return buffer.getvalue()


def result_for(task_type: str) -> dict[str, Any]:
    if task_type == "transcription":
        return {"text": "hello world"}
    if task_type == "summarization":
        return {"summary": "short"}
    return {"audio_wav_base64": base64.b64encode(wav_bytes()).decode()}


class TestMiner:
    """One miner on loopback; ``work`` receives every payload the proxy sent it."""

    __test__ = False

    def __init__(self, identity: Identity, mode: MinerMode) -> None:
        self.identity = identity
        self.mode = mode
        self.work: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.client = MinerClient(identity, timeout_seconds=10, max_connections=8)
        self._nonces = InMemoryNonceStore()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/task", self._task)
        self.server = TestServer(app, host="127.0.0.1")

    async def start(self) -> MinerInfo:
        await self.server.start_server()
        url = str(self.server.make_url("")).rstrip("/")
        return MinerInfo(self.identity.ss58, url, frozenset(TASK_TYPES))

    async def close(self) -> None:
        await self.client.close()
        await self.server.close()

    async def _task(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            await verify_request(
                request, body, self_ss58=self.identity.ss58, nonce_store=self._nonces
            )
        except AuthFailed as failure:
            return web.json_response({"error": failure.code}, status=401)
        payload = await request.json()
        await self.work.put(payload)
        if self.mode == "instant":
            return web.json_response({"result": result_for(payload["type"])})
        return web.json_response({"accepted": True}, status=202)

    async def next_work(self, timeout: float = 10.0) -> dict[str, Any]:
        return await asyncio.wait_for(self.work.get(), timeout)


@dataclass
class Edge:
    url: str
    system: System
    session: aiohttp.ClientSession
    miners: list[TestMiner]
    data_dir: Path
    peers: dict[str, MinerClient] = field(default_factory=dict)

    @property
    def hotkey(self) -> str:
        return self.system.identity.ss58

    def auth(self, client: str = "alice") -> dict[str, str]:
        return {"Authorization": f"Bearer {API_KEYS[client]}"}

    def peer(self, identity: Identity) -> MinerClient:
        """A btauth/1 client signing as ``identity`` (a validator, a stranger, ...)."""
        if identity.name not in self.peers:
            self.peers[identity.name] = MinerClient(identity, timeout_seconds=10, max_connections=8)
        return self.peers[identity.name]

    async def submit(
        self,
        task_type: str = "summarization",
        body: Mapping[str, Any] | None = None,
        client: str = "alice",
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        document = dict(body or {"text": "a text worth summarising"})
        async with self.session.post(
            f"{self.url}/api/v1/{task_type}",
            json=document,
            headers={**self.auth(client), **(headers or {})},
        ) as response:
            assert response.status == 202, await response.text()
            accepted: dict[str, Any] = await response.json()
            return accepted

    async def status(self, task_id: str, client: str = "alice") -> dict[str, Any]:
        async with self.session.get(
            f"{self.url}/api/v1/task/{task_id}/status", headers=self.auth(client)
        ) as response:
            assert response.status == 200, await response.text()
            document: dict[str, Any] = await response.json()
            return document

    async def wait_for(
        self, task_id: str, *statuses: str, timeout: float = 10.0, client: str = "alice"
    ) -> dict[str, Any]:
        """Poll the status until it is one of ``statuses`` and the read model shows it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            document = await self.status(task_id, client)
            if document["status"] in statuses:
                return document
            if loop.time() > deadline:
                raise AssertionError(f"task {task_id} stuck in {document['status']}")
            await asyncio.sleep(0.02)

    async def answer(
        self, miner: TestMiner, task_id: str, result: Mapping[str, Any] | None = None
    ) -> SignedResponse:
        """Post a miner's late answer to the proxy, signed by that miner."""
        task_type = (await self.system.commands.load(task_id)).task_type
        return await miner.client.post_signed(
            self.url,
            "/api/v1/miner/response",
            {
                "task_id": task_id,
                "result": dict(result_for(task_type) if result is None else result),
            },
            receiver_ss58=self.hotkey,
        )

    async def evaluate(
        self, task_id: str, scores: Mapping[str, float], validator: Identity = VALIDATOR
    ) -> SignedResponse:
        return await self.peer(validator).post_signed(
            self.url,
            "/api/v1/validator/evaluation",
            {"task_id": task_id, "scores": dict(scores)},
            receiver_ss58=self.hotkey,
        )

    async def done_task(self, task_type: str = "summarization", **submit: Any) -> str:
        """A task a manual miner answered: DONE and waiting for a validator."""
        task_id = str((await self.submit(task_type, **submit))["task_id"])
        miner = self.miners[0]
        work = await miner.next_work()
        assert work["task_id"] == task_id
        reply = await self.answer(miner, task_id)
        assert reply.status == 200, reply.json
        await self.wait_for(task_id, "DONE")
        return task_id

    async def event_count(self) -> int:
        heads = await self.system.log.stream_heads()
        return sum(head.sequence for head in heads)


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@asynccontextmanager
async def running_edge(
    tmp_path: Path,
    *,
    miners: tuple[MinerMode, ...] = ("manual",),
    miners_per_task: int = 1,
    stream_heartbeat_seconds: float = 15.0,
    **settings: Any,
) -> AsyncIterator[Edge]:
    test_miners = [
        TestMiner(Identity.from_seed(MINER_SEEDS[n], f"miner-{n}"), mode)
        for n, mode in enumerate(miners)
    ]
    infos = [await miner.start() for miner in test_miners]
    sock = _free_socket()
    port = sock.getsockname()[1]
    data_dir = tmp_path / "data"
    config = Settings(
        data_dir=data_dir,
        host="127.0.0.1",
        port=port,
        api_keys=dict(API_KEYS),
        miners_per_type=dict.fromkeys(TASK_TYPES, miners_per_task),
        **{
            "miner_timeout_seconds": 20.0,
            "task_deadline_seconds": 60.0,
            "allow_private_miners": True,
            **settings,
        },
    )
    system = build_system(
        config, extra_miners=infos, extra_validators=[VALIDATOR.ss58], identity=PROXY
    )
    app = create_app(
        system.edge_context(),
        stream_poll_seconds=0.1,
        stream_heartbeat_seconds=stream_heartbeat_seconds,
    )
    limits = connection_limits(config)
    runner = edge_runner(app, limits, shutdown_timeout=2.0, lingering_time=1.0)
    await runner.setup()
    await CappedSite(runner, limits.max_connections, sock=sock).start()
    await system.start()
    session = aiohttp.ClientSession()
    edge = Edge(f"http://127.0.0.1:{port}", system, session, test_miners, data_dir)
    try:
        yield edge
    finally:
        # Stop everything that writes, then audit the log as `taskledger audit` would:
        # from its file, after every append in flight has landed.
        async with asyncio.timeout(60):
            await session.close()
            await runner.cleanup()
            await system.close()
            log = open_event_log(config)
            report = await audit_log(log)
            await log.close()
        for client in edge.peers.values():
            await client.close()
        for miner in test_miners:
            await miner.close()
        assert report.clean, [str(violation) for violation in report.violations]
