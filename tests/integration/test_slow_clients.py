"""Slow and greedy connections over real HTTP: every wait of the edge has a deadline.

The edge runs with short deadlines here (1 s idle, 1000 bytes/s after 0.5 s
of grace, four connections at most), so each test takes a few seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from yarl import URL

from tests.support.edge_system import Edge

pytestmark = [
    pytest.mark.slow,
    pytest.mark.edge(
        idle_timeout_seconds=1.0,
        body_min_bytes_per_second=1000.0,
        body_grace_seconds=0.5,
        max_connections=4,
    ),
]


async def connect(edge: Edge) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    url = URL(edge.url)
    return await asyncio.open_connection(url.host, url.port)


async def trickle(writer: asyncio.StreamWriter, pieces: list[bytes], every: float) -> None:
    """Write one piece every ``every`` seconds until the edge hangs up."""
    for piece in pieces:
        try:
            writer.write(piece)
            await writer.drain()
        except ConnectionError:
            return
        await asyncio.sleep(every)


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """Everything the edge sends until it closes the connection, which it must in time."""
    async with asyncio.timeout(seconds):
        return await reader.read()


async def test_headers_trickled_line_by_line_are_cut_off(edge: Edge) -> None:
    reader, writer = await connect(edge)
    started = time.monotonic()
    lines = [b"POST /api/v1/summarization HTTP/1.1\r\n"] + [b"X-Slow: yes\r\n"] * 40
    writer_task = asyncio.create_task(trickle(writer, lines, 0.25))
    try:
        assert await closed_within(reader, 4.0) == b""
        assert time.monotonic() - started < 3.0
    finally:
        writer_task.cancel()
        writer.close()


async def test_an_idle_kept_alive_connection_is_closed(edge: Edge) -> None:
    reader, writer = await connect(edge)
    writer.write(b"GET /api/v1/health HTTP/1.1\r\nHost: edge\r\n\r\n")
    await writer.drain()
    async with asyncio.timeout(2):
        head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    length = int(next(v for k, _, v in (h.partition(b":") for h in head.split(b"\r\n"))
                      if k.lower() == b"content-length"))  # fmt: skip
    await reader.readexactly(length)
    # Kept alive, then nothing: the edge hangs up after the idle deadline.
    assert await closed_within(reader, 3.0) == b""
    writer.close()


async def test_a_body_trickled_byte_by_byte_is_408(edge: Edge) -> None:
    reader, writer = await connect(edge)
    head = (
        "POST /api/v1/summarization HTTP/1.1\r\nHost: edge\r\n"
        f"Authorization: {edge.auth()['Authorization']}\r\n"
        "Content-Type: application/json\r\nContent-Length: 10000\r\n\r\n"
    )
    writer.write(head.encode() + b'{"text": "')
    started = time.monotonic()
    writer_task = asyncio.create_task(trickle(writer, [b"a"] * 40, 0.25))
    try:
        answer = await closed_within(reader, 4.0)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b'"too_slow"' in answer
        assert time.monotonic() - started < 3.0
    finally:
        writer_task.cancel()
        writer.close()


async def test_connections_over_the_cap_get_a_503(edge: Edge) -> None:
    held = [await connect(edge) for _ in range(4)]
    await asyncio.sleep(0.1)
    reader, writer = await connect(edge)
    answer = await closed_within(reader, 2.0)
    assert answer.startswith(b"HTTP/1.1 503"), answer
    assert b'"busy"' in answer
    writer.close()
    for _, held_writer in held:
        held_writer.close()
    await asyncio.sleep(0.2)
    # Freed slots serve again.
    async with edge.session.get(f"{edge.url}/api/v1/health") as response:
        assert response.status == 200


async def test_a_client_leaving_mid_body_is_a_quiet_disconnect(
    edge: Edge, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    for path, content_type in (
        ("/api/v1/summarization", "application/json"),
        ("/api/v1/transcription", "multipart/form-data; boundary=xyz"),
    ):
        _, writer = await connect(edge)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: edge\r\n"
            f"Authorization: {edge.auth()['Authorization']}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: 50000\r\n\r\n"
        )
        writer.write(head.encode() + b"--xyz\r\n" + b"a" * 3000)
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.close()
        await writer.wait_closed()
    await asyncio.sleep(0.3)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    async with edge.session.get(f"{edge.url}/metrics") as response:
        exposition = await response.text()
    assert 'status="500"' not in exposition
    assert 'route="/api/v1/summarization",status="499"' in exposition
