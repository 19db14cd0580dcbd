"""The lean HTTP/1.1 client against raw servers that answer byte for byte as told."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from yarl import URL

from miners.http1 import Http1Client, MalformedResponse, PeerDisconnected, ResponseTooLarge

Answer = Callable[[bytes], Awaitable[list[bytes]]]
Serve = Callable[..., Awaitable[tuple["RawServer", URL]]]


class RawServer:
    """Reads one request at a time and writes the pieces ``answer`` returns for it."""

    def __init__(self, answer: Answer, *, close_after: bool = False) -> None:
        self.answer = answer
        self.close_after = close_after
        self.requests: list[bytes] = []
        self.connections = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> URL:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return URL(f"http://127.0.0.1:{port}")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                for piece in await self.answer(request):
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0.001)  # arrive in separate reads
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[RawServer] = []

    async def start(answer: Answer, **options: bool) -> tuple[RawServer, URL]:
        server = RawServer(answer, **options)
        servers.append(server)
        return server, await server.start()

    yield start
    for server in servers:
        await server.stop()


@pytest.fixture
async def client() -> AsyncIterator[Http1Client]:
    client = Http1Client(limit=8, limit_per_peer=2, max_response_bytes=1000)
    yield client
    await client.close()


def fixed(*pieces: bytes) -> Answer:
    async def answer(request: bytes) -> list[bytes]:
        return list(pieces)

    return answer


OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n"


async def test_content_length_and_the_request_as_sent(serve: Serve, client: Http1Client) -> None:
    server, url = await serve(fixed(OK, b'{"a": true}'))
    status, body = await client.request(
        "POST", url / "task", {"X-Signed": "yes", "Content-Type": "application/json"}, b"{}"
    )
    assert (status, body) == (200, b'{"a": true}')
    request = server.requests[0]
    assert request.startswith(b"POST /task HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"\r\nX-Signed: yes\r\n" in request and b"\r\nContent-Length: 2\r\n" in request
    assert request.endswith(b"\r\n\r\n{}")


async def test_the_connection_is_kept_alive(serve: Serve, client: Http1Client) -> None:
    server, url = await serve(fixed(OK, b'{"a": true}'))
    for _ in range(3):
        assert (await client.request("GET", url / "x", {}, b""))[0] == 200
    assert server.connections == 1


async def test_chunked_with_extensions_and_trailers(serve: Serve, client: Http1Client) -> None:
    server, url = await serve(
        fixed(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"5;x=y\r\nhello\r\n",
            b"6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n",
        )
    )
    assert await client.request("GET", url / "x", {}, b"") == (200, b"hello world")
    assert await client.request("GET", url / "x", {}, b"") == (200, b"hello world")
    assert server.connections == 1


async def test_interim_answers_are_skipped(serve: Serve, client: Http1Client) -> None:
    _, url = await serve(fixed(b"HTTP/1.1 100 Continue\r\n\r\n", OK + b'{"a": true}'))
    assert await client.request("POST", url / "x", {}, b"{}") == (200, b'{"a": true}')


async def test_a_body_until_close_and_connection_close(serve: Serve, client: Http1Client) -> None:
    server, url = await serve(fixed(b"HTTP/1.0 202 Accepted\r\n\r\n", b"later"), close_after=True)
    assert await client.request("POST", url / "x", {}, b"") == (202, b"later")
    assert await client.request("POST", url / "x", {}, b"") == (202, b"later")
    assert server.connections == 2


async def test_no_body_statuses(serve: Serve, client: Http1Client) -> None:
    server, url = await serve(fixed(b"HTTP/1.1 204 No Content\r\n\r\n"))
    assert await client.request("POST", url / "x", {}, b"") == (204, b"")
    assert await client.request("POST", url / "x", {}, b"") == (204, b"")
    assert server.connections == 1


async def test_a_connection_the_peer_closed_while_idle_is_not_reused(
    serve, client: Http1Client
) -> None:
    server, url = await serve(
        fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), close_after=True
    )
    assert await client.request("GET", url / "x", {}, b"") == (200, b"ok")
    await asyncio.sleep(0.05)  # the peer's close arrives
    assert await client.request("GET", url / "x", {}, b"") == (200, b"ok")
    assert server.connections == 2


@pytest.mark.parametrize(
    "pieces",
    [
        [b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n"],
        [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"7d0\r\n" + b"x" * 2000],
        [b"HTTP/1.1 200 OK\r\n\r\n", b"x" * 2000],
    ],
)
async def test_too_large(serve: Serve, client: Http1Client, pieces: list[bytes]) -> None:
    _, url = await serve(fixed(*pieces))
    with pytest.raises(ResponseTooLarge):
        await client.request("GET", url / "x", {}, b"")


async def test_cut_mid_answer(serve: Serve, client: Http1Client) -> None:
    _, url = await serve(
        fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"), close_after=True
    )
    with pytest.raises(PeerDisconnected):
        await client.request("GET", url / "x", {}, b"")


@pytest.mark.parametrize(
    "answer",
    [
        b"SMTP ready\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 1\r\n\r\nx",
    ],
)
async def test_malformed(serve: Serve, client: Http1Client, answer: bytes) -> None:
    _, url = await serve(fixed(answer))
    with pytest.raises(MalformedResponse):
        await client.request("GET", url / "x", {}, b"")
    assert issubclass(MalformedResponse, aiohttp.ClientError)


async def test_nobody_listening(client: Http1Client) -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(aiohttp.ClientConnectionError, match="Cannot connect"):
        await client.request("GET", URL(f"http://127.0.0.1:{port}/x"), {}, b"")


async def test_a_timeout_closes_the_connection(serve: Serve, client: Http1Client) -> None:
    async def slow(request: bytes) -> list[bytes]:
        if b"/slow" in request:
            await asyncio.sleep(0.3)
        return [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"]

    server, url = await serve(slow)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await client.request("GET", url / "slow", {}, b"")
    # The late answer to the abandoned request must not be read as this one's.
    assert await client.request("GET", url / "fast", {}, b"") == (200, b"ok")
    assert server.connections == 2


def test_what_it_handles() -> None:
    assert Http1Client.handles(URL("http://127.0.0.1:8080/task"))
    assert not Http1Client.handles(URL("https://miner.example/task"))
    assert not Http1Client.handles(URL("http://user:pw@miner.example/task"))


async def test_chunks_split_anywhere(serve: Serve, client: Http1Client) -> None:
    message = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    _, url = await serve(fixed(*(message[i : i + 7] for i in range(0, len(message), 7))))
    assert await client.request("GET", url / "x", {}, b"") == (200, b"abcde")
