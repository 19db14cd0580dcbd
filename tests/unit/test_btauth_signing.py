"""sign_headers' own path for sr25519 keypairs: what http_auth.sign would send, verifiable."""

import pytest
from bittensor import http_auth

from miners.btauth import sign_headers
from miners.identity import Identity

PROXY = Identity.from_uri("//Alice", "proxy")
MINER = Identity.from_uri("//Bob", "miner")


def test_headers_match_http_auth_sign_but_for_the_random_signature(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("time.time_ns", lambda: 1_700_000_000_000_000_000)
    ours = sign_headers(PROXY, "POST", "/task?x=1", b'{"a": 1}', MINER.ss58)
    theirs = http_auth.sign(
        PROXY.signer, method="POST", path="/task?x=1", body=b'{"a": 1}', receiver_ss58=MINER.ss58
    )
    signature = http_auth.HEADER_SIGNATURE
    assert {k: v for k, v in ours.items() if k != signature} == {
        k: v for k, v in theirs.items() if k != signature
    }
    assert ours[signature].startswith("0x") and len(ours[signature]) == len(theirs[signature])


def test_headers_verify() -> None:
    body = b'{"task_id": "t"}'
    headers = sign_headers(PROXY, "POST", "/api/v1/miner/response", body, MINER.ss58)
    caller = http_auth.verify(
        headers,
        body,
        method="POST",
        path="/api/v1/miner/response",
        self_hotkey_ss58=MINER.ss58,
    )
    assert caller.hotkey_ss58 == PROXY.ss58
