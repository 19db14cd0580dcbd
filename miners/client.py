"""Outbound btauth/1 HTTP: sending work to miners, and signed requests to any peer.

Plain-``http`` peers go through a lean HTTP/1.1 client of our own (miners/http1.py),
anything else through one pooled aiohttp session. Each call has its own deadline covering
the whole exchange (waiting for a pooled connection, connecting, sending,
reading the reply), and each miner may hold only part of the pool, so a miner
that hangs costs its own calls their timeout and nobody else anything.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
import orjson
from yarl import URL

from miners.addresses import GlobalOnlyResolver, refuse_literal
from miners.btauth import sign_headers
from miners.directory import MinerInfo
from miners.http1 import Http1Client, ResponseTooLarge
from miners.identity import Identity

_JSON = "application/json"

RefusalReason = Literal[
    "timeout",
    "connection_failed",
    "unexpected_status",
    "invalid_json",
    "invalid_shape",
    "too_large",
]


@dataclass(frozen=True, slots=True)
class Answered:
    """The miner answered at once (200 ``{"result": {...}}``)."""

    result: dict[str, Any]
    latency_ms: float


@dataclass(frozen=True, slots=True)
class Accepted:
    """The miner took the work and will post its response later (202)."""

    latency_ms: float


@dataclass(frozen=True, slots=True)
class Refused:
    """The miner did not take the work; ``reason`` is the stable code, ``detail`` for humans."""

    reason: RefusalReason
    latency_ms: float
    detail: str = ""


MinerReply = Answered | Accepted | Refused


@dataclass(frozen=True, slots=True)
class SignedResponse:
    """A peer's answer to a signed request; ``json`` is None when the body is not JSON."""

    status: int
    json: Any
    body: bytes


class PeerUnreachable(Exception):
    """A signed request got no HTTP answer (connection failure or timeout)."""


class _TooLarge(Exception):
    pass


class MinerClient:
    """Signs as ``identity`` and talks to miners (and the proxy) over one connection pool.

    ``max_connections`` bounds the pool; one peer (host and port) may use at
    most ``max_connections_per_peer`` of it, by default a quarter.
    """

    def __init__(
        self,
        identity: Identity,
        *,
        timeout_seconds: float,
        max_connections: int,
        max_connections_per_peer: int | None = None,
        max_response_bytes: int = 32 * 1024 * 1024,
        global_only: bool = False,
    ) -> None:
        self._identity = identity
        # Connect to globally routable addresses only (see miners/addresses.py).
        self._global_only = global_only
        self._timeout = timeout_seconds
        self._max_connections = max_connections
        self._per_peer = max_connections_per_peer or max(1, max_connections // 4)
        self._max_response_bytes = max_response_bytes
        self._session: aiohttp.ClientSession | None = None
        self._plain: Http1Client | None = None

    async def send_work(
        self, miner: MinerInfo, payload: Mapping[str, Any], *, timeout_seconds: float | None = None
    ) -> MinerReply:
        """POST ``payload`` to ``<miner.url>/task``; never raises for anything the miner does."""
        url = URL(miner.url + "/task")
        body = orjson.dumps(payload)
        started = time.perf_counter()

        def elapsed() -> float:
            return (time.perf_counter() - started) * 1000.0

        timeout = self._timeout if timeout_seconds is None else timeout_seconds
        try:
            async with asyncio.timeout(timeout):
                status, raw = await self._exchange("POST", url, body, miner.hotkey, _JSON)
        except TimeoutError:
            return Refused("timeout", elapsed(), f"no complete answer within {timeout:g}s")
        except _TooLarge:
            return Refused("too_large", elapsed(), f"answer over {self._max_response_bytes} bytes")
        except aiohttp.ClientError as error:
            return Refused("connection_failed", elapsed(), _describe(error))
        latency = elapsed()
        if status == 202:
            return Accepted(latency)
        if status != 200:
            return Refused("unexpected_status", latency, f"HTTP {status}")
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            return Refused("invalid_json", latency, str(error))
        if not isinstance(document, dict) or not isinstance(document.get("result"), dict):
            return Refused("invalid_shape", latency, 'expected {"result": {...}}')
        return Answered(document["result"], latency)

    async def post_signed(
        self,
        base_url: str,
        path: str,
        body: Mapping[str, Any] | bytes,
        *,
        receiver_ss58: str,
        content_type: str = _JSON,
        timeout_seconds: float | None = None,
    ) -> SignedResponse:
        """POST ``body`` (a JSON object, or bytes of ``content_type``) to ``base_url + path``."""
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        return await self.request_signed(
            "POST",
            base_url,
            path,
            raw,
            receiver_ss58=receiver_ss58,
            content_type=content_type,
            timeout_seconds=timeout_seconds,
        )

    async def get_signed(
        self,
        base_url: str,
        path: str,
        *,
        receiver_ss58: str,
        timeout_seconds: float | None = None,
    ) -> SignedResponse:
        """GET ``base_url + path`` (``path`` may carry a query string)."""
        return await self.request_signed(
            "GET", base_url, path, b"", receiver_ss58=receiver_ss58, timeout_seconds=timeout_seconds
        )

    async def request_signed(
        self,
        method: str,
        base_url: str,
        path: str,
        body: bytes,
        *,
        receiver_ss58: str,
        content_type: str | None = None,
        timeout_seconds: float | None = None,
    ) -> SignedResponse:
        """Any btauth/1-signed request; raises :class:`PeerUnreachable` when nothing answers."""
        url = URL(base_url.rstrip("/") + path)
        timeout = self._timeout if timeout_seconds is None else timeout_seconds
        try:
            async with asyncio.timeout(timeout):
                status, raw = await self._exchange(method, url, body, receiver_ss58, content_type)
        except TimeoutError:
            raise PeerUnreachable(
                f"{method} {url}: no complete answer within {timeout:g}s"
            ) from None
        except _TooLarge:
            raise PeerUnreachable(
                f"{method} {url}: answer over {self._max_response_bytes} bytes"
            ) from None
        except aiohttp.ClientError as error:
            raise PeerUnreachable(f"{method} {url}: {_describe(error)}") from None
        try:
            parsed = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            parsed = None
        return SignedResponse(status=status, json=parsed, body=raw)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._plain is not None:
            await self._plain.close()
            self._plain = None

    async def _exchange(
        self, method: str, url: URL, body: bytes, receiver_ss58: str, content_type: str | None
    ) -> tuple[int, bytes]:
        # Sign the target exactly as aiohttp will put it on the wire.
        headers = sign_headers(self._identity, method, url.raw_path_qs, body, receiver_ss58)
        if content_type is not None:
            headers["Content-Type"] = content_type
        if self._global_only and url.raw_host is not None:
            refuse_literal(url.raw_host)  # aiohttp does not resolve literals
        if Http1Client.handles(url):
            try:
                return await self._get_plain().request(method, url, headers, body)
            except ResponseTooLarge:
                raise _TooLarge from None
        # A redirect would resend the signed body elsewhere: none is followed.
        async with self._get_session().request(
            method, url, data=body, headers=headers, allow_redirects=False
        ) as reply:
            declared = reply.content_length
            if declared is not None and declared > self._max_response_bytes:
                raise _TooLarge
            chunks: list[bytes] = []
            size = 0
            async for chunk in reply.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > self._max_response_bytes:
                    raise _TooLarge
                chunks.append(chunk)
            return reply.status, b"".join(chunks)

    def _get_plain(self) -> Http1Client:
        # Created on first use, inside the running loop that will own it.
        if self._plain is None:
            self._plain = Http1Client(
                limit=self._max_connections,
                limit_per_peer=self._per_peer,
                max_response_bytes=self._max_response_bytes,
                global_only=self._global_only,
            )
        return self._plain

    def _get_session(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running loop that will own it.
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=self._per_peer,
                resolver=GlobalOnlyResolver() if self._global_only else None,
            )
            # Deadlines are per call (asyncio.timeout), not the session's.
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None),
                raise_for_status=False,
            )
        return self._session


def _describe(error: aiohttp.ClientError) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
