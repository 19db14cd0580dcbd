"""Who is calling: clients by API key (with a rate limit), miners and validators by btauth/1."""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Protocol

from aiohttp import web
from bittensor import http_auth

from http_edge.context import EdgeContext
from http_edge.errors import ApiError
from miners.btauth import verify_request

_BEARER: Final = "bearer "
_CHALLENGE: Final = {"WWW-Authenticate": 'Bearer realm="taskledger"'}


def _hash(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


class ClientKeys:
    """Client API keys, held only as SHA-256 hashes and compared in constant time.

    Every stored hash is compared, match or not, so the time taken says
    nothing about which key (if any) came close.
    """

    def __init__(self, keys: Mapping[str, str]) -> None:
        self._hashes = [(name, _hash(key)) for name, key in keys.items() if key]

    def client_for(self, presented: str) -> str | None:
        digest = _hash(presented)
        found = None
        for name, stored in self._hashes:
            if hmac.compare_digest(digest, stored):
                found = name
        return found


class KnownKeys(Protocol):
    def client_for(self, presented: str) -> str | None: ...


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """A token bucket per client: ``rate`` requests a second, bursts up to ``burst``."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = rate
        self._burst = max(1, burst)
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, client: str) -> float | None:
        """Spend one token; None if allowed, else the seconds until one is available."""
        now = self._clock()
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = self._buckets[client] = _Bucket(float(self._burst), now)
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / self._rate if self._rate > 0 else math.inf


@dataclass(frozen=True, slots=True)
class ClientAuth:
    keys: KnownKeys
    limiter: RateLimiter

    @classmethod
    def from_context(cls, context: EdgeContext) -> ClientAuth:
        limits = context.limits
        keys: KnownKeys = context.client_keys or ClientKeys(context.api_keys)
        return cls(keys, RateLimiter(limits.rate_per_second, limits.rate_burst))


CLIENT_AUTH: Final = web.AppKey("client_auth", ClientAuth)


def authenticate_client(request: web.Request) -> str:
    """The client name behind ``Authorization: Bearer <key>``; 401 or 429 otherwise."""
    auth = request.app[CLIENT_AUTH]
    header = request.headers.get("Authorization", "")
    if header[: len(_BEARER)].lower() != _BEARER:
        raise ApiError(
            401, "missing_credentials", "send Authorization: Bearer <api key>", headers=_CHALLENGE
        )
    client = auth.keys.client_for(header[len(_BEARER) :].strip())
    if client is None:
        raise ApiError(401, "invalid_credentials", "the API key is not valid", headers=_CHALLENGE)
    wait = auth.limiter.take(client)
    if wait is not None:
        retry_after = str(max(1, math.ceil(wait))) if math.isfinite(wait) else "3600"
        raise ApiError(
            429,
            "rate_limited",
            "too many requests for this API key; slow down",
            headers={"Retry-After": retry_after},
        )
    return client


_SIGNATURE_HEADERS: Final = (
    http_auth.HEADER_VERSION,
    http_auth.HEADER_HOTKEY,
    http_auth.HEADER_NONCE,
    http_auth.HEADER_SIGNATURE,
)


def require_signed(request: web.Request) -> None:
    """401 at once for a request with no btauth/1 signature, before its body is read."""
    if any(name not in request.headers for name in _SIGNATURE_HEADERS):
        raise ApiError(401, "missing_signature", "request carries no complete btauth/1 signature")


async def authenticate_peer(request: web.Request, context: EdgeContext, body: bytes) -> str:
    """The btauth/1 signer's hotkey (a miner or validator), the receiver being us; 401 otherwise."""
    return await verify_request(
        request, body, self_ss58=context.identity.ss58, nonce_store=context.nonce_store
    )


async def authenticate_validator(request: web.Request, context: EdgeContext, body: bytes) -> str:
    """A btauth/1 signer that is an allowed validator; 401 for a bad signature, else 403."""
    hotkey = await authenticate_peer(request, context, body)
    if hotkey not in await context.pool.validators():
        raise ApiError(403, "not_a_validator", f"{hotkey} is not an allowed validator")
    return hotkey
