"""Hostile peers over real HTTP: a btauth/1 request is judged by its headers first.

A stranger, a stale nonce or another receiver is answered before a byte of
the body is read (the body here is announced and never sent), costs no
signature check and writes no nonce; every known hotkey has its own rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
import uuid

import orjson
import pytest
from bittensor import http_auth
from yarl import URL

from miners.identity import Identity
from tests.support.edge_system import STRANGER, VALIDATOR, Edge
from tests.support.signing import signed_request, stale_nonce

pytestmark = [pytest.mark.slow, pytest.mark.edge(peer_rate_per_second=0.01, peer_rate_burst=3)]

RESPONSE = "/api/v1/miner/response"
EVALUATION = "/api/v1/validator/evaluation"


async def announce_body(
    edge: Edge, path: str, headers: dict[str, str], length: int = 512 * 1024
) -> tuple[int, bytes]:
    """Send the headers of a ``length``-byte body (within the limits), never the body;
    the status and answer the edge gives regardless, within 2 s."""
    url = URL(edge.url)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        lines = [f"POST {path} HTTP/1.1", f"Host: {url.host}", f"Content-Length: {length}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        async with asyncio.timeout(2):
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            answer = await reader.readexactly(length)
        return int(head.split(b" ", 2)[1]), answer
    finally:
        writer.close()


def signed_headers(identity: Identity, path: str, receiver: str, **kwargs: int) -> dict[str, str]:
    headers = http_auth.sign(
        identity.signer, method="POST", path=path, body=b"{}", receiver_ss58=receiver, **kwargs
    )
    return {**headers, "Content-Type": "application/json"}


def stored_nonces(edge: Edge, hotkey: str) -> int:
    with sqlite3.connect(edge.data_dir / "nonces.db") as db:
        (count,) = db.execute(
            "SELECT count(*) FROM btauth_nonces WHERE hotkey = ?", (hotkey,)
        ).fetchone()
    return int(count)


@pytest.mark.parametrize(
    ("path", "code"), [(RESPONSE, "not_assigned"), (EVALUATION, "not_a_validator")]
)
async def test_a_stranger_is_refused_before_its_body_is_read(
    edge: Edge, path: str, code: str
) -> None:
    status, answer = await announce_body(edge, path, signed_headers(STRANGER, path, edge.hotkey))
    assert status == 403
    assert orjson.loads(answer)["error"]["code"] == code


@pytest.mark.parametrize("path", [RESPONSE, EVALUATION])
async def test_headers_that_cannot_be_right_are_refused_before_the_body(
    edge: Edge, path: str
) -> None:
    known = edge.miners[0].identity if path == RESPONSE else VALIDATOR
    for headers in (
        signed_headers(known, path, edge.hotkey, nonce_ns=stale_nonce()),
        signed_headers(known, path, STRANGER.ss58),
        {**signed_headers(known, path, edge.hotkey), http_auth.HEADER_VERSION: "2"},
    ):
        status, _ = await announce_body(edge, path, headers)
        assert status == 401


async def test_a_strangers_signed_request_writes_no_nonce(edge: Edge) -> None:
    body = orjson.dumps({"task_id": str(uuid.uuid4()), "result": {"summary": "x"}})
    status, answer, _ = await signed_request(
        edge.session, "POST", edge.url + RESPONSE, STRANGER, body, receiver=edge.hotkey
    )
    assert status == 403, answer
    assert stored_nonces(edge, STRANGER.ss58) == 0
    # A known miner's request is checked in full and its nonce kept.
    miner = edge.miners[0].identity
    status, answer, _ = await signed_request(
        edge.session, "POST", edge.url + RESPONSE, miner, body, receiver=edge.hotkey
    )
    assert status == 403, answer
    assert stored_nonces(edge, miner.ss58) == 1


async def test_each_peer_hotkey_has_its_own_rate(edge: Edge) -> None:
    body = orjson.dumps({"task_id": str(uuid.uuid4()), "result": {"summary": "x"}})
    miner = edge.miners[0].identity
    statuses = []
    for _ in range(4):
        status, _, _ = await signed_request(
            edge.session, "POST", edge.url + RESPONSE, miner, body, receiver=edge.hotkey
        )
        statuses.append(status)
    assert statuses == [403, 403, 403, 429]
    # The validator's bucket is its own.
    reply = await edge.peer(VALIDATOR).get_signed(
        edge.url, "/api/v1/validator/weights", receiver_ss58=edge.hotkey
    )
    assert reply.status == 200
    started = time.monotonic()
    status, _ = await announce_body(edge, RESPONSE, signed_headers(miner, RESPONSE, edge.hotkey))
    assert status == 429 and time.monotonic() - started < 2


def tiny_parts(task_id: str, boundary: str, size: int) -> bytes:
    """A form of about ``size`` bytes: the task id, then one-byte "file" parts."""
    part = f'--{boundary}\r\nContent-Disposition: form-data; name="file"\r\n\r\nx\r\n'
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="task_id"\r\n\r\n{task_id}\r\n'
    return (head + part * (size // len(part)) + f"--{boundary}--\r\n").encode()


async def test_a_form_of_tiny_parts_is_refused_at_its_first_bad_part(edge: Edge) -> None:
    # 25 MiB of parts, signed: once read whole and split, ten times its size in memory.
    # Only the first 256 KiB are sent (aiohttp reads ahead by a chunk or two): the
    # second "file" part ends it.
    task_id = str(uuid.uuid4())
    boundary = "b" * 20
    body = tiny_parts(task_id, boundary, edge.system.edge_context().limits.max_upload_bytes)
    miner = edge.miners[0].identity
    headers = http_auth.sign(
        miner.signer, method="POST", path=RESPONSE, body=body, receiver_ss58=edge.hotkey
    )
    headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
    status, answer = await send_part_of(edge, RESPONSE, headers, body, sent=256 * 1024)
    assert status == 400, answer
    assert orjson.loads(answer)["error"]["code"] == "invalid_request"


async def test_a_forms_preamble_counts_against_its_limit_chunked_too(edge: Edge) -> None:
    limit = edge.system.edge_context().limits.max_upload_bytes
    preamble = b"filler line\r\n" * ((limit + 256 * 1024) // 13)
    headers = {
        **edge.auth(),
        "Content-Type": "multipart/form-data; boundary=xyz",
        "Transfer-Encoding": "chunked",
    }
    status, answer = await send_part_of(
        edge, "/api/v1/transcription", headers, preamble, sent=len(preamble), chunked=True
    )
    assert status == 413, answer


async def send_part_of(
    edge: Edge,
    path: str,
    headers: dict[str, str],
    body: bytes,
    *,
    sent: int,
    chunked: bool = False,
) -> tuple[int, bytes]:
    """Send the first ``sent`` bytes of ``body`` and then nothing; the answer within 2 s."""
    url = URL(edge.url)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        lines = [f"POST {path} HTTP/1.1", f"Host: {url.host}"]
        if not chunked:
            lines.append(f"Content-Length: {len(body)}")
        lines += [f"{name}: {value}" for name, value in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        piece = body[:sent]
        if chunked:
            for at in range(0, len(piece), 65536):
                chunk = piece[at : at + 65536]
                writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        else:
            writer.write(piece)
        with contextlib.suppress(ConnectionError):  # the edge may stop reading once it refused
            await writer.drain()
        async with asyncio.timeout(2):
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            answer = await reader.readexactly(length)
        return int(head.split(b" ", 2)[1]), answer
    finally:
        writer.close()


async def test_a_link_signature_that_is_not_ascii_is_403_not_500(edge: Edge) -> None:
    # Found by schemathesis: hmac.compare_digest raised TypeError on such a str.
    query = f"task={uuid.uuid4()}&expires={int(time.time()) + 60}&sig=%C2%B7V"
    reply = await edge.miners[0].client.get_signed(
        edge.url, f"/api/v1/blobs/{'ab' * 32}?{query}", receiver_ss58=edge.hotkey
    )
    assert reply.status == 403, reply.json
    assert reply.json["error"]["code"] == "invalid_link"
