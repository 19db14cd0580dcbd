"""btauth/1 between aiohttp and ``bittensor.http_auth``: signing, verifying, replay store.

Both sides sign and verify the request target exactly as it travels on the
wire (path plus query, percent-encoding untouched), never a decoded or
re-built form, or a signature made for ``/a%20b`` would fail as ``/a b``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Literal

from aiohttp import web
from bittensor import http_auth
from bittensor.http_auth import NonceStore
from bittensor.sp_core import Keypair
from bittensor.wallets import CRYPTO_TYPE_NAMES

from miners.identity import Identity

AuthFailureCode = Literal[
    "missing_signature",
    "bad_signature",
    "stale_signature",
    "replayed_signature",
    "wrong_receiver",
]

# The default scheme: its requests carry no X-Bittensor-Crypto header.
_SR25519 = "sr25519"

# Without these there is no signature to check at all; anything else wrong
# with the headers is a bad signature.
_REQUIRED_HEADERS = (
    http_auth.HEADER_VERSION,
    http_auth.HEADER_HOTKEY,
    http_auth.HEADER_NONCE,
    http_auth.HEADER_SIGNATURE,
)


class AuthFailed(Exception):
    """A btauth/1 request was not authenticated; ``code`` says why.

    The message is safe to return to the caller: it never echoes the
    signature or the body.
    """

    def __init__(self, code: AuthFailureCode, message: str) -> None:
        super().__init__(message)
        self.code: AuthFailureCode = code
        self.message = message


def sign_headers(
    identity: Identity, method: str, path: str, body: bytes, receiver_ss58: str
) -> dict[str, str]:
    """The btauth/1 headers for one request; ``path`` is the target as sent, query included.

    For an sr25519 keypair (every :class:`Identity` made here) the headers are
    built from ``http_auth.build_payload`` directly: ``http_auth.sign`` first
    resolves its signer through a runtime protocol check that costs two thirds
    as much as the signature itself, on every request.
    """
    signer = identity.signer
    if not isinstance(signer, Keypair) or CRYPTO_TYPE_NAMES.get(signer.crypto_type) != _SR25519:
        return http_auth.sign(
            signer, method=method, path=path, body=body, receiver_ss58=receiver_ss58
        )
    nonce = time.time_ns()
    sender = signer.ss58_address
    payload = http_auth.build_payload(
        scheme=_SR25519,
        method=method,
        path=path,
        body=body,
        nonce_ns=nonce,
        sender_ss58=sender,
        receiver_ss58=receiver_ss58,
    )
    return {
        http_auth.HEADER_VERSION: http_auth.VERSION,
        http_auth.HEADER_HOTKEY: sender,
        http_auth.HEADER_NONCE: str(nonce),
        http_auth.HEADER_SIGNATURE: "0x" + bytes(signer.sign(payload)).hex(),
        http_auth.HEADER_RECEIVER: receiver_ss58,
    }


def check_headers(
    headers: Mapping[str, str],
    *,
    self_ss58: str,
    max_age: float = http_auth.DEFAULT_MAX_AGE,
    allowed_skew: float = http_auth.DEFAULT_ALLOWED_SKEW,
    now_ns: int | None = None,
) -> str:
    """The claimed hotkey, if everything the headers alone show is right; else AuthFailed.

    The same checks :func:`bittensor.http_auth.verify` makes before the signature
    (version, hotkey, nonce, receiver, freshness), so a server can make them before
    it reads a byte of the body. The signature is still verified afterwards, in full.
    """
    if any(name not in headers for name in _REQUIRED_HEADERS):
        raise AuthFailed("missing_signature", "request carries no complete btauth/1 signature")
    if headers[http_auth.HEADER_VERSION] != http_auth.VERSION:
        raise AuthFailed("bad_signature", f"unsupported {http_auth.HEADER_VERSION}")
    hotkey = headers[http_auth.HEADER_HOTKEY]
    try:
        nonce = int(headers[http_auth.HEADER_NONCE])
    except ValueError:
        raise AuthFailed("bad_signature", f"{http_auth.HEADER_NONCE} is not an integer") from None
    receiver = headers.get(http_auth.HEADER_RECEIVER)
    if receiver != self_ss58:
        raise AuthFailed("wrong_receiver", "request was not signed for this receiving hotkey")
    now = time.time_ns() if now_ns is None else now_ns
    if now - nonce > max_age * 1e9 or nonce - now > allowed_skew * 1e9:
        raise AuthFailed("stale_signature", "the nonce is outside the freshness window")
    return hotkey


async def verify_request(
    request: web.Request,
    body: bytes,
    *,
    self_ss58: str,
    nonce_store: NonceStore,
    max_age: float = http_auth.DEFAULT_MAX_AGE,
    allowed_skew: float = http_auth.DEFAULT_ALLOWED_SKEW,
) -> str:
    """Authenticate ``request`` (whose raw body is ``body``); returns the caller's hotkey.

    Raises :class:`AuthFailed`. Runs in a worker thread because a shared
    nonce store may wait on another process's database lock, which must not
    stall the event loop.
    """
    if any(name not in request.headers for name in _REQUIRED_HEADERS):
        raise AuthFailed("missing_signature", "request carries no complete btauth/1 signature")
    try:
        caller = await asyncio.to_thread(
            http_auth.verify,
            request.headers,
            body,
            method=request.method,
            path=request.raw_path,
            self_hotkey_ss58=self_ss58,
            max_age=max_age,
            allowed_skew=allowed_skew,
            nonce_store=nonce_store,
        )
    except http_auth.WrongReceiver as error:
        raise AuthFailed("wrong_receiver", str(error)) from None
    except http_auth.StaleRequest as error:
        raise AuthFailed("stale_signature", str(error)) from None
    except http_auth.ReplayedRequest as error:
        raise AuthFailed("replayed_signature", str(error)) from None
    except (http_auth.BadSignature, http_auth.MalformedAuth) as error:
        raise AuthFailed("bad_signature", str(error)) from None
    return caller.hotkey_ss58
