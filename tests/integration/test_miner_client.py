"""MinerClient against real aiohttp miners on 127.0.0.1, well-behaved and not."""

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from bittensor.http_auth import InMemoryNonceStore

from miners.btauth import AuthFailed, verify_request
from miners.client import (
    Accepted,
    Answered,
    MinerClient,
    PeerUnreachable,
    Refused,
    SignedResponse,
)
from miners.directory import CAPABILITIES, MinerInfo
from miners.identity import Identity

PROXY = Identity.from_uri("//Alice", "proxy")
MINER = Identity.from_uri("//Bob", "miner")

Behaviour = Callable[[web.Request, Any], Awaitable[web.StreamResponse]]
StartMiner = Callable[[Behaviour], Awaitable[MinerInfo]]

TASK = {"task_id": "0b6f", "type": "summarization", "input": {"text": "long"}, "input_url": None}


@pytest.fixture
async def release() -> AsyncIterator[asyncio.Event]:
    """Set at teardown so hanging handlers end and servers close promptly."""
    event = asyncio.Event()
    yield event
    event.set()


@pytest.fixture
async def start_miner(release: asyncio.Event) -> AsyncIterator[StartMiner]:
    servers: list[TestServer] = []

    async def start(behaviour: Behaviour, identity: Identity = MINER) -> MinerInfo:
        store = InMemoryNonceStore()

        async def task(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            try:
                caller = await verify_request(
                    request, body, self_ss58=identity.ss58, nonce_store=store
                )
            except AuthFailed as failure:
                return web.json_response({"error": {"code": failure.code}}, status=401)
            assert caller == PROXY.ss58
            return await behaviour(request, await request.json())

        app = web.Application()
        app.router.add_post("/task", task)
        server = TestServer(app)
        await server.start_server()
        servers.append(server)
        return MinerInfo(identity.ss58, str(server.make_url("")).rstrip("/"), CAPABILITIES)

    yield start
    release.set()
    for server in servers:
        await server.close()


@pytest.fixture
async def client() -> AsyncIterator[MinerClient]:
    client = MinerClient(PROXY, timeout_seconds=2.0, max_connections=16)
    yield client
    await client.close()


async def _summarise(request: web.Request, task: Any) -> web.StreamResponse:
    return web.json_response({"result": {"summary": f"summary of {task['input']['text']}"}})


async def test_answered(start_miner: StartMiner, client: MinerClient) -> None:
    miner = await start_miner(_summarise)
    reply = await client.send_work(miner, TASK)
    assert isinstance(reply, Answered)
    assert reply.result == {"summary": "summary of long"}
    assert 0 < reply.latency_ms < 2000


async def test_accepted(start_miner: StartMiner, client: MinerClient) -> None:
    async def later(request: web.Request, task: Any) -> web.StreamResponse:
        return web.Response(status=202)

    reply = await client.send_work(await start_miner(later), TASK)
    assert isinstance(reply, Accepted)
    assert reply.latency_ms > 0


@pytest.mark.parametrize(
    ("respond", "reason", "detail"),
    [
        (lambda: web.json_response({"error": "boom"}, status=500), "unexpected_status", "HTTP 500"),
        (lambda: web.Response(status=204), "unexpected_status", "HTTP 204"),
        (lambda: web.Response(text="<html>ok</html>"), "invalid_json", ""),
        (lambda: web.json_response({"result": "plain text"}), "invalid_shape", "result"),
        (lambda: web.json_response({"summary": "no envelope"}), "invalid_shape", "result"),
        (lambda: web.json_response([{"result": {}}]), "invalid_shape", "result"),
    ],
)
async def test_misbehaving_miners_are_refused(
    start_miner: StartMiner,
    client: MinerClient,
    respond: Callable[[], web.StreamResponse],
    reason: str,
    detail: str,
) -> None:
    async def behaviour(request: web.Request, task: Any) -> web.StreamResponse:
        return respond()

    reply = await client.send_work(await start_miner(behaviour), TASK)
    assert isinstance(reply, Refused)
    assert reply.reason == reason
    assert detail in reply.detail


async def test_a_miner_that_rejects_our_signature_is_refused(
    start_miner: StartMiner, client: MinerClient
) -> None:
    miner = await start_miner(_summarise)
    # Signed for a different receiver than the one behind the URL.
    impostor = MinerInfo(PROXY.ss58, miner.url, miner.capabilities)
    reply = await client.send_work(impostor, TASK)
    assert isinstance(reply, Refused)
    assert (reply.reason, reply.detail) == ("unexpected_status", "HTTP 401")


async def test_oversized_answer_is_refused(start_miner: StartMiner) -> None:
    async def flood(request: web.Request, task: Any) -> web.StreamResponse:
        return web.json_response({"result": {"text": "x" * 200_000}})

    small = MinerClient(PROXY, timeout_seconds=2, max_connections=4, max_response_bytes=100_000)
    try:
        reply = await small.send_work(await start_miner(flood), TASK)
    finally:
        await small.close()
    assert isinstance(reply, Refused)
    assert reply.reason == "too_large"


async def test_hanging_miners_do_not_stall_a_fast_one(
    start_miner: StartMiner, release: asyncio.Event
) -> None:
    async def hang(request: web.Request, task: Any) -> web.StreamResponse:
        await release.wait()
        return web.json_response({"result": {}})

    hanging, fast = await start_miner(hang), await start_miner(_summarise)
    # A pool of 4 allows one connection per peer: the six calls to the
    # hanging miner queue on its own share and must not block the fast one.
    client = MinerClient(PROXY, timeout_seconds=0.5, max_connections=4)
    try:
        started = time.monotonic()
        slow = asyncio.gather(*(client.send_work(hanging, TASK) for _ in range(6)))
        await asyncio.sleep(0.05)  # the hanging calls go first and fill their share
        fast_reply = await client.send_work(fast, TASK)
        fast_after = time.monotonic() - started
        slow_replies = await slow
        total = time.monotonic() - started
    finally:
        await client.close()

    assert isinstance(fast_reply, Answered)
    assert fast_after < 0.45  # blocked behind the pool it would be >= 0.5
    for reply in slow_replies:
        assert isinstance(reply, Refused)
        assert reply.reason == "timeout"
        assert 450 <= reply.latency_ms < 1000
    assert total < 1.5  # each call had its own deadline; in series they would take 3s


async def test_per_call_timeout_overrides_the_default(
    start_miner: StartMiner, client: MinerClient, release: asyncio.Event
) -> None:
    async def hang(request: web.Request, task: Any) -> web.StreamResponse:
        await release.wait()
        return web.Response(status=202)

    reply = await client.send_work(await start_miner(hang), TASK, timeout_seconds=0.1)
    assert isinstance(reply, Refused)
    assert reply.reason == "timeout"
    assert reply.latency_ms < 500


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_connection_refused(client: MinerClient) -> None:
    miner = MinerInfo(MINER.ss58, f"http://127.0.0.1:{_closed_port()}", CAPABILITIES)
    reply = await client.send_work(miner, TASK)
    assert isinstance(reply, Refused)
    assert reply.reason == "connection_failed"
    assert "Connect" in reply.detail


async def test_miner_closing_the_connection_mid_answer(
    start_miner: StartMiner, client: MinerClient
) -> None:
    async def cut(request: web.Request, task: Any) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()
        return web.Response()

    reply = await client.send_work(await start_miner(cut), TASK)
    assert isinstance(reply, Refused)
    assert reply.reason == "connection_failed"


# --- signed requests to any peer (late miner responses, the validator) ---


@pytest.fixture
async def proxy_url() -> AsyncIterator[str]:
    """A stand-in for the proxy's btauth/1 endpoints, echoing what it verified."""
    store = InMemoryNonceStore()

    async def endpoint(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            caller = await verify_request(request, body, self_ss58=PROXY.ss58, nonce_store=store)
        except AuthFailed as failure:
            return web.json_response({"error": {"code": failure.code}}, status=401)
        return web.json_response(
            {
                "caller": caller,
                "target": request.raw_path,
                "content_type": request.content_type,
                "body": body.decode(),
            }
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", endpoint)
    server = TestServer(app)
    await server.start_server()
    yield str(server.make_url(""))
    await server.close()


@pytest.fixture
async def miner_client() -> AsyncIterator[MinerClient]:
    client = MinerClient(MINER, timeout_seconds=2.0, max_connections=4)
    yield client
    await client.close()


async def test_post_signed_json(proxy_url: str, miner_client: MinerClient) -> None:
    response = await miner_client.post_signed(
        proxy_url,
        "/api/v1/miner/response",
        {"task_id": "0b6f", "result": {"text": "hello"}},
        receiver_ss58=PROXY.ss58,
    )
    assert isinstance(response, SignedResponse)
    assert response.status == 200
    assert response.json["caller"] == MINER.ss58
    assert response.json["target"] == "/api/v1/miner/response"
    assert response.json["content_type"] == "application/json"
    assert response.json["body"] == '{"task_id":"0b6f","result":{"text":"hello"}}'


async def test_post_signed_bytes_with_content_type(
    proxy_url: str, miner_client: MinerClient
) -> None:
    response = await miner_client.post_signed(
        proxy_url,
        "/api/v1/miner/response",
        b"--b\r\n\r\n--b--\r\n",
        receiver_ss58=PROXY.ss58,
        content_type="multipart/form-data; boundary=b",
    )
    assert response.status == 200
    assert response.json["content_type"] == "multipart/form-data"


async def test_get_signed_with_a_query(proxy_url: str, miner_client: MinerClient) -> None:
    response = await miner_client.get_signed(
        proxy_url, "/api/v1/validator/tasks?limit=5&after=a%20b", receiver_ss58=PROXY.ss58
    )
    assert (response.status, response.json["caller"]) == (200, MINER.ss58)
    assert response.json["target"] == "/api/v1/validator/tasks?limit=5&after=a%20b"


async def test_signed_request_reports_the_peers_refusal(
    proxy_url: str, miner_client: MinerClient
) -> None:
    response = await miner_client.post_signed(
        proxy_url, "/api/v1/miner/response", {}, receiver_ss58=MINER.ss58
    )
    assert response.status == 401
    assert response.json == {"error": {"code": "wrong_receiver"}}


async def test_signed_request_to_nobody_raises(miner_client: MinerClient) -> None:
    with pytest.raises(PeerUnreachable, match="Connect"):
        await miner_client.post_signed(
            f"http://127.0.0.1:{_closed_port()}", "/x", {}, receiver_ss58=PROXY.ss58
        )
