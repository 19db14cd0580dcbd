"""Hand-made btauth/1 requests, for tests that need a signature to be wrong in one way."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
from bittensor import http_auth
from yarl import URL

from miners.identity import Identity


async def signed_request(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    identity: Identity,
    body: bytes = b"",
    *,
    receiver: str,
    content_type: str | None = "application/json",
    nonce_ns: int | None = None,
    claimed_hotkey: str | None = None,
    send_body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, dict[str, str]]:
    """Sign ``body`` for ``url`` as ``identity``; optionally lie about who signed
    (``claimed_hotkey``) or send other bytes than were signed (``send_body``).

    Returns the status, the JSON answer and the headers that were sent (to replay them).
    """
    target = URL(url)
    signed = headers or http_auth.sign(
        identity.signer,
        method=method,
        path=target.raw_path_qs,
        body=body,
        receiver_ss58=receiver,
        nonce_ns=nonce_ns,
    )
    sent = dict(signed)
    if claimed_hotkey is not None:
        sent[http_auth.HEADER_HOTKEY] = claimed_hotkey
    if content_type is not None:
        sent["Content-Type"] = content_type
    async with session.request(
        method, target, data=body if send_body is None else send_body, headers=sent
    ) as response:
        return response.status, await response.json(content_type=None), dict(signed)


def stale_nonce() -> int:
    return time.time_ns() - 120 * 1_000_000_000
