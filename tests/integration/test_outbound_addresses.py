"""Where the proxy sends work: global addresses only, unless the deployment allows more,
and never where a redirect points. Real miners on 127.0.0.1; no mocks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from miners.addresses import is_global
from miners.client import Answered, MinerClient, Refused
from miners.directory import CAPABILITIES, MinerInfo
from miners.identity import Identity
from tests.support.edge_system import running_edge

PROXY = Identity.from_uri("//Alice", "proxy")
MINER = Identity.from_uri("//Bob", "miner")
TASK = {"task_id": "0b6f", "type": "summarization", "input": {"text": "long"}, "input_url": None}


class Recorder:
    """A miner that counts what reaches it: answers, or redirects to ``redirect``."""

    def __init__(self, redirect: str | None = None) -> None:
        self.hits = 0
        self.redirect = redirect
        app = web.Application()
        app.router.add_post("/task", self._task)
        self.server = TestServer(app, host="127.0.0.1")

    async def _task(self, request: web.Request) -> web.Response:
        await request.read()
        self.hits += 1
        if self.redirect is not None:
            raise web.HTTPTemporaryRedirect(self.redirect)
        return web.json_response({"result": {"summary": "ok"}})

    async def url(self) -> URL:
        await self.server.start_server()
        return self.server.make_url("")


@pytest.fixture
async def recorders() -> AsyncIterator[list[Recorder]]:
    made: list[Recorder] = []
    yield made
    for recorder in made:
        await recorder.server.close()


async def started(recorders: list[Recorder], redirect: str | None = None) -> tuple[Recorder, URL]:
    recorder = Recorder(redirect)
    recorders.append(recorder)
    return recorder, await recorder.url()


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("192.168.0.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1%eth0", False),
        ("fd00::1", False),
        ("::ffff:127.0.0.1", False),
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
        ("localhost", False),
    ],
)
def test_only_global_addresses_count_as_global(address: str, allowed: bool) -> None:
    assert is_global(address) is allowed


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_work_is_not_sent_to_loopback_unless_allowed(
    recorders: list[Recorder], host: str
) -> None:
    recorder, url = await started(recorders)
    base = str(url.with_host(host)).rstrip("/")
    miner = MinerInfo(MINER.ss58, base, CAPABILITIES)
    strict = MinerClient(PROXY, timeout_seconds=2.0, max_connections=4, global_only=True)
    lenient = MinerClient(PROXY, timeout_seconds=2.0, max_connections=4)
    try:
        refused = await strict.send_work(miner, TASK)
        assert isinstance(refused, Refused) and refused.reason == "connection_failed"
        assert "global address" in refused.detail
        assert recorder.hits == 0
        assert isinstance(await lenient.send_work(miner, TASK), Answered)
        assert recorder.hits == 1
    finally:
        await strict.close()
        await lenient.close()


async def test_a_name_resolving_to_loopback_is_refused_on_the_pooled_session_too(
    recorders: list[Recorder],
) -> None:
    # A URL with user info goes through the aiohttp session (the lean client takes
    # plain http only), whose resolver keeps global addresses only.
    recorder, url = await started(recorders)
    base = str(url.with_host("localhost").with_user("miner")).rstrip("/")
    strict = MinerClient(PROXY, timeout_seconds=2.0, max_connections=4, global_only=True)
    try:
        refused = await strict.send_work(MinerInfo(MINER.ss58, base, CAPABILITIES), TASK)
        assert isinstance(refused, Refused) and refused.reason == "connection_failed"
        assert recorder.hits == 0
    finally:
        await strict.close()


@pytest.mark.parametrize("user", [None, "miner"])
async def test_redirects_are_not_followed(recorders: list[Recorder], user: str | None) -> None:
    target, target_url = await started(recorders)
    redirecting, url = await started(recorders, redirect=str(target_url / "task"))
    base = str(url.with_user(user)).rstrip("/")
    client = MinerClient(PROXY, timeout_seconds=2.0, max_connections=4)
    try:
        reply = await client.send_work(MinerInfo(MINER.ss58, base, CAPABILITIES), TASK)
    finally:
        await client.close()
    assert isinstance(reply, Refused) and reply.detail == "HTTP 307"
    assert redirecting.hits == 1
    assert target.hits == 0  # the signed body went nowhere else


@pytest.mark.slow
async def test_an_edge_that_allows_no_private_miners_sends_them_nothing(tmp_path: Path) -> None:
    async with running_edge(
        tmp_path, allow_private_miners=False, miner_timeout_seconds=2.0
    ) as edge:
        task_id = (await edge.submit())["task_id"]
        document = await edge.wait_for(task_id, "FAILED", timeout=15)
        assert document["miners"][0]["state"] == "failed"
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(edge.miners[0].work.get(), 0.2)
