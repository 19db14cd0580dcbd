"""Admitting miners and validators: everything their headers show, before any body byte.

A btauth/1 request is judged in the order of what it costs us: the headers
(version, receiver, freshness), then whether the claimed hotkey is one we
know at all, then that hotkey's rate, and only then is the body read and the
signature verified (which also writes the nonce store). A stranger's request
therefore costs neither a body read, nor a signature check, nor a nonce.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from http_edge.auth import RateLimiter
from http_edge.context import EdgeContext
from http_edge.errors import ApiError
from miners.btauth import AuthFailed, check_headers


@dataclass(frozen=True, slots=True)
class PeerGate:
    """One token bucket per peer hotkey, apart from the clients' buckets."""

    limiter: RateLimiter

    @classmethod
    def from_context(cls, context: EdgeContext) -> PeerGate:
        limits = context.limits
        return cls(RateLimiter(limits.peer_rate_per_second, limits.peer_rate_burst))


PEER_GATE: Final = web.AppKey("peer_gate", PeerGate)

Membership = Callable[[EdgeContext, str], Awaitable[bool]]


async def is_miner(context: EdgeContext, hotkey: str) -> bool:
    return await context.pool.get(hotkey) is not None


async def is_validator(context: EdgeContext, hotkey: str) -> bool:
    return hotkey in await context.pool.validators()


async def is_peer(context: EdgeContext, hotkey: str) -> bool:
    return await is_validator(context, hotkey) or await is_miner(context, hotkey)


async def admit_peer(
    request: web.Request,
    context: EdgeContext,
    member: Membership,
    refusal: Callable[[], ApiError],
) -> str:
    """The claimed hotkey of a request whose headers pass, by a known peer within its rate.

    401 for headers that cannot be right, ``refusal()`` for a hotkey ``member``
    does not know, 429 over the rate. The signature is not checked here.
    """
    try:
        hotkey = check_headers(request.headers, self_ss58=context.identity.ss58)
    except AuthFailed as failure:
        raise ApiError(401, failure.code, failure.message) from None
    if not await member(context, hotkey):
        raise refusal()
    wait = request.app[PEER_GATE].limiter.take(hotkey)
    if wait is not None:
        retry_after = str(max(1, math.ceil(wait))) if math.isfinite(wait) else "3600"
        raise ApiError(
            429,
            "rate_limited",
            "too many requests from this hotkey; slow down",
            headers={"Retry-After": retry_after},
        )
    return hotkey
