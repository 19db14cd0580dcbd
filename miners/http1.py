"""A lean HTTP/1.1 client for plain-``http`` peers: kept-alive connections, one exchange each.

Sending work to miners is most of what the processors do over the network: a
handful of small requests per task. aiohttp's client spends well over a
hundred microseconds of CPU on each (request and response objects, header
multidicts, payload writers, stream readers); this one writes the request in
one piece and parses the answer from one buffer, at a fraction of that.

It speaks just what those exchanges need: ``Content-Length``, ``chunked`` or
until-close bodies, interim ``1xx`` answers skipped, ``Connection: close``
honoured, no redirects (aiohttp follows none for POST either), no content
codings (it asks for ``identity``). Failures are aiohttp's exception types, so
callers handle both clients alike. HTTPS and anything else go through aiohttp.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass

import aiohttp
from yarl import URL

from miners.addresses import global_address

_USER_AGENT = b"taskledger"
_NO_BODY_STATUSES = frozenset({204, 304})


class ResponseTooLarge(Exception):
    """The answer is (or declares itself) longer than the client accepts."""


class PeerConnectError(aiohttp.ClientConnectionError):
    """No connection to the peer could be made."""


class PeerDisconnected(aiohttp.ClientConnectionError):
    """The peer closed the connection before its answer was complete."""


class MalformedResponse(aiohttp.ClientPayloadError):
    """The peer's answer is not HTTP/1.x as this client reads it."""


@dataclass(slots=True)
class _Head:
    status: int
    keep_alive: bool
    # Body framing: a length, chunked, or (neither) everything until the peer closes.
    length: int | None
    chunked: bool
    end: int  # where the body starts in the buffer


def _parse_head(buffer: bytearray, header_end: int) -> _Head | None:
    """The status line and headers up to ``header_end``; None for an interim 1xx answer."""
    lines = bytes(buffer[:header_end]).split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise MalformedResponse(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    status = int(parts[1])
    if 100 <= status < 200:
        return None
    keep_alive = parts[0] == b"HTTP/1.1"
    length: int | None = None
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            try:
                length = int(value.strip())
            except ValueError:
                raise MalformedResponse(f"bad Content-Length {value.strip()[:40]!r}") from None
            if length < 0:
                raise MalformedResponse("negative Content-Length")
        elif name == b"transfer-encoding":
            chunked = value.strip().lower().endswith(b"chunked")
        elif name == b"connection":
            tokens = {token.strip() for token in value.lower().split(b",")}
            if b"close" in tokens:
                keep_alive = False
            elif b"keep-alive" in tokens:
                keep_alive = True
        elif name == b"content-encoding" and value.strip().lower() not in (b"", b"identity"):
            raise MalformedResponse(f"unrequested content coding {value.strip()[:40]!r}")
    if status in _NO_BODY_STATUSES:
        length, chunked = 0, False
    elif chunked:
        length = None
    elif length is None:
        keep_alive = False  # the body runs until the peer closes
    return _Head(status, keep_alive, length, chunked, header_end + 4)


class _Dechunker:
    """Decodes a chunked body as it arrives, each chunk once, whatever the pieces."""

    def __init__(self, start: int, max_bytes: int) -> None:
        self._position = start
        self._max = max_bytes
        self._chunks: list[bytes] = []
        self._total = 0
        self._last = False  # the zero-size chunk was read: trailers follow

    def advance(self, buffer: bytearray) -> tuple[bytes, int] | None:
        """The whole body and where the message ends, once it is complete; else None."""
        while not self._last:
            line_end = buffer.find(b"\r\n", self._position)
            if line_end < 0:
                return None
            size_text = bytes(buffer[self._position : line_end]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise MalformedResponse(f"bad chunk size {size_text[:40]!r}") from None
            if size == 0:
                self._position, self._last = line_end + 2, True
                break
            self._total += size
            if self._total > self._max:
                raise ResponseTooLarge
            start = line_end + 2
            if len(buffer) < start + size + 2:
                return None
            self._chunks.append(bytes(buffer[start : start + size]))
            self._position = start + size + 2
        # Trailers, if any, then the empty line that ends the message.
        while True:
            line_end = buffer.find(b"\r\n", self._position)
            if line_end < 0:
                return None
            if line_end == self._position:
                return b"".join(self._chunks), line_end + 2
            self._position = line_end + 2


class _Connection(asyncio.Protocol):
    """One kept-alive connection; :meth:`exchange` sends a request and awaits its answer."""

    def __init__(self, max_response_bytes: int) -> None:
        self._max = max_response_bytes
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._head: _Head | None = None
        self._dechunker: _Dechunker | None = None
        self._answer: asyncio.Future[tuple[int, bytes, bool]] | None = None
        self.closed = False
        self.idle_since = 0.0

    # -- asyncio.Protocol -----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        if self._answer is None or self._answer.done():
            self.close()  # nobody asked: a peer talking out of turn is not reused
            return
        self._buffer += data
        try:
            self._advance(eof=False)
        except Exception as error:
            self._fail(error)

    def eof_received(self) -> bool:
        self._peer_closed()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._peer_closed()

    # -- use ------------------------------------------------------------------

    async def exchange(self, request: bytes) -> tuple[int, bytes, bool]:
        """Send ``request``; returns status, body, and whether the connection may be reused."""
        assert self._transport is not None
        self._buffer.clear()
        self._head = None
        self._dechunker = None
        answer: asyncio.Future[tuple[int, bytes, bool]] = asyncio.get_running_loop().create_future()
        self._answer = answer
        self._transport.write(request)
        return await answer

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    # -- parsing --------------------------------------------------------------

    def _advance(self, *, eof: bool) -> None:
        buffer = self._buffer
        while self._head is None:
            header_end = buffer.find(b"\r\n\r\n")
            if header_end < 0:
                if len(buffer) > 64 * 1024:
                    raise MalformedResponse("response headers over 64 KiB")
                return
            head = _parse_head(buffer, header_end)
            if head is None:  # an interim answer (100 Continue): the real one follows
                del buffer[: header_end + 4]
                continue
            if head.length is not None and head.length > self._max:
                raise ResponseTooLarge
            self._head = head
        head = self._head
        # Chunked framing adds a little per chunk: its declared sizes are checked as read.
        if len(buffer) - head.end > (2 * self._max + 64 * 1024 if head.chunked else self._max):
            raise ResponseTooLarge
        if head.length is not None:
            end = head.end + head.length
            if len(buffer) < end:
                return
            body, keep_alive = bytes(buffer[head.end : end]), head.keep_alive
            keep_alive = keep_alive and len(buffer) == end
        elif head.chunked:
            if self._dechunker is None:
                self._dechunker = _Dechunker(head.end, self._max)
            decoded = self._dechunker.advance(buffer)
            if decoded is None:
                return
            body, end = decoded
            keep_alive = head.keep_alive and len(buffer) == end
        elif eof:
            body, keep_alive = bytes(buffer[head.end :]), False
        else:
            return
        answer = self._answer
        if answer is not None and not answer.done():
            answer.set_result((head.status, body, keep_alive))

    def _peer_closed(self) -> None:
        was_closed, self.closed = self.closed, True
        answer = self._answer
        if answer is None or answer.done():
            return
        try:
            if self._head is not None and not was_closed:
                self._advance(eof=True)
        except Exception as error:
            self._fail(error)
            return
        if not answer.done():
            answer.set_exception(PeerDisconnected("the peer closed the connection mid-answer"))

    def _fail(self, error: Exception) -> None:
        answer = self._answer
        if answer is not None and not answer.done():
            answer.set_exception(error)
        self.close()


class Http1Client:
    """Kept-alive connections to many peers; each peer may hold ``limit_per_peer`` of ``limit``.

    A call waits for its peer's share first and then for the whole pool, so a
    peer that hangs holds only its own share. Deadlines are the caller's
    (``asyncio.timeout`` around :meth:`request`): a call cut short closes its
    connection rather than return it half-read.
    """

    def __init__(
        self,
        *,
        limit: int,
        limit_per_peer: int,
        max_response_bytes: int,
        keepalive_seconds: float = 15.0,
        global_only: bool = False,
    ) -> None:
        self._global_only = global_only
        self._limit = asyncio.Semaphore(limit)
        self._limit_per_peer = limit_per_peer
        self._per_peer: defaultdict[tuple[str, int], asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(self._limit_per_peer)
        )
        self._idle: defaultdict[tuple[str, int], list[_Connection]] = defaultdict(list)
        self._max = max_response_bytes
        self._keepalive = keepalive_seconds
        self._swept_at = time.monotonic()

    @staticmethod
    def handles(url: URL) -> bool:
        return url.scheme == "http" and url.raw_host is not None and url.user is None

    async def request(
        self, method: str, url: URL, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes]:
        """One exchange; raises aiohttp's client errors, or :class:`ResponseTooLarge`."""
        host, port = url.raw_host, url.port
        assert host is not None and port is not None
        peer = (host, port)
        lines = [f"{method} {url.raw_path_qs} HTTP/1.1", f"Host: {url.host_port_subcomponent}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines)).encode("latin-1")
        request = head + b"\r\nUser-Agent: " + _USER_AGENT + b"\r\nAccept-Encoding: identity"
        request += b"\r\n\r\n" + body
        async with self._per_peer[peer], self._limit:
            self._sweep()
            connection = self._idle_connection(peer) or await self._connect(host, port)
            try:
                status, answer, reusable = await connection.exchange(request)
            except BaseException:
                connection.close()
                raise
            if reusable and not connection.closed:
                connection.idle_since = time.monotonic()
                self._idle[peer].append(connection)
            else:
                connection.close()
            return status, answer

    def _idle_connection(self, peer: tuple[str, int]) -> _Connection | None:
        idle = self._idle.get(peer)
        stale_before = time.monotonic() - self._keepalive
        while idle:
            connection = idle.pop()  # the most recently used: the likeliest still open
            if not connection.closed and connection.idle_since > stale_before:
                return connection
            connection.close()
        return None

    def _sweep(self) -> None:
        """Now and then, close connections idle too long (to peers no longer called, say)."""
        now = time.monotonic()
        if now - self._swept_at < self._keepalive:
            return
        self._swept_at = now
        for peer, idle in list(self._idle.items()):
            fresh = [c for c in idle if not c.closed and c.idle_since > now - self._keepalive]
            for connection in idle:
                if connection not in fresh:
                    connection.close()
            if fresh:
                self._idle[peer] = fresh
            else:
                del self._idle[peer]

    async def _connect(self, host: str, port: int) -> _Connection:
        loop = asyncio.get_running_loop()
        if self._global_only:
            # Resolved here and connected to by address, so the address checked is the one used.
            host = await global_address(host, port)
        try:
            _, connection = await loop.create_connection(lambda: _Connection(self._max), host, port)
        except OSError as error:
            raise PeerConnectError(f"Cannot connect to host {host}:{port}: {error}") from error
        return connection

    async def close(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()
