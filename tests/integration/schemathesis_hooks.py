"""schemathesis hooks (``SCHEMATHESIS_HOOKS``): btauth/1 signatures for the peer operations.

The operations miners and validators call are signed as `taskledger dev`'s own
reference miner and validator (their wallets in ``TASKLEDGER_DATA_DIR``), so the
fuzzer reaches past authentication there too. The signature is made by a
``requests`` auth object, over the body and target exactly as they are sent.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import requests
import schemathesis
from bittensor import http_auth

from miners.btauth import sign_headers
from miners.identity import Identity

_MINER_PATHS = ("/api/v1/miner/",)
_PEER_PATHS = (*_MINER_PATHS, "/api/v1/validator/", "/api/v1/blobs/")


@functools.cache
def _identity(name: str) -> Identity:
    return Identity.load_or_create(Path(os.environ["TASKLEDGER_DATA_DIR"]) / "wallets", name)


class _Btauth(requests.auth.AuthBase):
    def __init__(self, signer: Identity) -> None:
        self._signer = signer

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        raw = body.encode() if isinstance(body, str) else bytes(body)
        receiver = _identity("taskledger-proxy").ss58
        method, path = request.method or "GET", request.path_url
        request.headers.update(sign_headers(self._signer, method, path, raw, receiver))
        return request


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    # Only a case that carries the security header is meant to be authenticated; one
    # without it checks that the operation refuses it, and goes out unsigned.
    path = case.operation.path
    if path.startswith(_PEER_PATHS) and http_auth.HEADER_SIGNATURE in (case.headers or {}):
        name = "dev-miner-0" if path.startswith(_MINER_PATHS) else "dev-validator"
        kwargs["auth"] = _Btauth(_identity(name))
