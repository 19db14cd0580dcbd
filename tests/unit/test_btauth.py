"""btauth/1 glue: real signatures over real HTTP on 127.0.0.1."""

import multiprocessing
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from bittensor import http_auth
from bittensor.http_auth import InMemoryNonceStore, NonceStore
from yarl import URL

from miners.btauth import AuthFailed, sign_headers, verify_request
from miners.identity import Identity
from miners.sqlite_nonces import SqliteNonceStore

PROXY = Identity.from_uri("//Alice", "proxy")
MINER = Identity.from_uri("//Bob", "miner")

StartServer = Callable[[NonceStore], Awaitable[URL]]


def _verifying_app(self_ss58: str, store: NonceStore) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            hotkey = await verify_request(request, body, self_ss58=self_ss58, nonce_store=store)
        except AuthFailed as failure:
            error = {"code": failure.code, "message": failure.message}
            return web.json_response({"error": error}, status=401)
        return web.json_response({"hotkey": hotkey, "target": request.raw_path})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


@pytest.fixture
async def start_server() -> AsyncIterator[StartServer]:
    servers: list[TestServer] = []

    async def start(store: NonceStore) -> URL:
        server = TestServer(_verifying_app(PROXY.ss58, store))
        await server.start_server()
        servers.append(server)
        return server.make_url("/")

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _send(
    session: aiohttp.ClientSession,
    base: URL,
    target: str,
    body: bytes,
    headers: dict[str, str],
    method: str = "POST",
) -> tuple[int, Any]:
    url = URL(str(base).rstrip("/") + target, encoded=True)
    async with session.request(method, url, data=body, headers=headers) as reply:
        return reply.status, await reply.json()


def _signed(target: str, body: bytes, receiver: str = PROXY.ss58) -> dict[str, str]:
    return sign_headers(MINER, "POST", target, body, receiver)


async def test_round_trip_returns_the_callers_hotkey(start_server, session) -> None:
    base = await start_server(InMemoryNonceStore())
    # Percent-encoding and the query are part of what is signed, byte for byte.
    target = "/api/v1/miner/response/a%20b%2Fc?limit=5&x=%C3%A9"
    body = b'{"task_id": "t", "result": {"text": "hi"}}'

    status, document = await _send(session, base, target, body, _signed(target, body))

    assert status == 200
    assert document == {"hotkey": MINER.ss58, "target": target}


async def test_get_with_empty_body_verifies(start_server, session) -> None:
    base = await start_server(InMemoryNonceStore())
    target = "/api/v1/validator/tasks?limit=3"
    headers = sign_headers(MINER, "GET", target, b"", PROXY.ss58)

    status, document = await _send(session, base, target, b"", headers, method="GET")

    assert (status, document["hotkey"]) == (200, MINER.ss58)


async def test_missing_signature(start_server, session) -> None:
    base = await start_server(InMemoryNonceStore())
    status, document = await _send(session, base, "/x", b"{}", {})
    assert status == 401
    assert document["error"]["code"] == "missing_signature"


async def test_wrong_receiver(start_server, session) -> None:
    base = await start_server(InMemoryNonceStore())
    headers = _signed("/x", b"{}", receiver=MINER.ss58)
    status, document = await _send(session, base, "/x", b"{}", headers)
    assert (status, document["error"]["code"]) == (401, "wrong_receiver")


async def test_tampered_body(start_server, session) -> None:
    base = await start_server(InMemoryNonceStore())
    headers = _signed("/x", b'{"score": 0.1}')
    status, document = await _send(session, base, "/x", b'{"score": 1.0}', headers)
    assert (status, document["error"]["code"]) == (401, "bad_signature")


async def test_signature_for_another_path(start_server, session) -> None:
    base = await start_server(InMemoryNonceStore())
    headers = _signed("/x?limit=1", b"")
    status, document = await _send(session, base, "/x?limit=1000", b"", headers)
    assert (status, document["error"]["code"]) == (401, "bad_signature")


async def test_garbled_signature_header(start_server, session) -> None:
    base = await start_server(InMemoryNonceStore())
    headers = _signed("/x", b"") | {"X-Bittensor-Signature": "0xnot-hex"}
    status, document = await _send(session, base, "/x", b"", headers)
    assert (status, document["error"]["code"]) == (401, "bad_signature")


async def test_stale_nonce(start_server, session) -> None:
    base = await start_server(InMemoryNonceStore())
    headers = http_auth.sign(
        MINER.signer,
        method="POST",
        path="/x",
        receiver_ss58=PROXY.ss58,
        nonce_ns=time.time_ns() - 30 * 10**9,
    )
    status, document = await _send(session, base, "/x", b"", headers)
    assert (status, document["error"]["code"]) == (401, "stale_signature")


async def test_replay_is_rejected(start_server, session) -> None:
    base = await start_server(InMemoryNonceStore())
    headers = _signed("/x", b"{}")
    first, _ = await _send(session, base, "/x", b"{}", headers)
    second, document = await _send(session, base, "/x", b"{}", headers)
    assert first == 200
    assert (second, document["error"]["code"]) == (401, "replayed_signature")


async def test_sqlite_store_rejects_a_replay_across_two_edges(
    start_server, session, tmp_path: Path
) -> None:
    database = tmp_path / "nonces.sqlite"
    edge_a = await start_server(SqliteNonceStore(database))
    edge_b = await start_server(SqliteNonceStore(database))
    headers = _signed("/x", b"{}")

    first, _ = await _send(session, edge_a, "/x", b"{}", headers)
    replayed, document = await _send(session, edge_b, "/x", b"{}", headers)

    assert first == 200
    assert (replayed, document["error"]["code"]) == (401, "replayed_signature")


def test_sqlite_store_basics(tmp_path: Path) -> None:
    store = SqliteNonceStore(tmp_path / "n.sqlite", retention=0.05)
    assert store.retention == 0.05
    assert store.check_and_store("hk", 1) is True
    assert store.check_and_store("hk", 1) is False
    assert store.check_and_store("other", 1) is True
    time.sleep(0.1)
    assert store.purge_expired() == 2
    store.close()


def test_sqlite_store_purges_on_its_own(tmp_path: Path) -> None:
    path = tmp_path / "n.sqlite"
    store = SqliteNonceStore(path, retention=0.01, purge_interval=0.0)
    store.check_and_store("hk", 1)
    time.sleep(0.05)
    store.check_and_store("hk", 2)  # purges the expired row first
    assert store.check_and_store("hk", 1) is True
    store.close()


def _claim(path: str, nonces: range, start_at: float) -> list[int]:
    # Start together, so the processes really contend for the same rows.
    time.sleep(max(0.0, start_at - time.time()))
    store = SqliteNonceStore(Path(path))
    won = [nonce for nonce in nonces if store.check_and_store("5Hotkey", nonce)]
    store.close()
    return won


def test_sqlite_store_each_nonce_wins_once_across_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "n.sqlite")
    nonces = range(2000)
    start_at = time.time() + 1.5  # after both have spawned and imported
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = pool.starmap(_claim, [(path, nonces, start_at)] * 2)
    won = sorted(nonce for result in results for nonce in result)
    assert won == list(nonces)
