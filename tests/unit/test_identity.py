import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from bittensor import http_auth

from miners.identity import Identity, IdentityError


def test_load_or_create_creates_once_then_loads_the_same_hotkey(tmp_path: Path) -> None:
    created = Identity.load_or_create(tmp_path, "proxy")
    loaded = Identity.load_or_create(tmp_path, "proxy")

    assert created == loaded
    assert created.name == "proxy"
    assert created.ss58.startswith("5")
    for keyfile in ("coldkey", "coldkeypub.txt", "hotkeys/default", "hotkeys/defaultpub.txt"):
        mode = (tmp_path / "proxy" / keyfile).stat().st_mode
        assert stat.S_IMODE(mode) == 0o600, keyfile


def test_different_names_are_different_hotkeys(tmp_path: Path) -> None:
    assert (
        Identity.load_or_create(tmp_path, "miner-1").ss58
        != Identity.load_or_create(tmp_path, "miner-2").ss58
    )


def test_concurrent_first_use_agrees_on_one_hotkey(tmp_path: Path) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        identities = list(pool.map(lambda _: Identity.load_or_create(tmp_path, "v"), range(8)))
    assert len({identity.ss58 for identity in identities}) == 1


@pytest.mark.parametrize("name", ["", "a/b", "..", ".hidden", "-x", "x" * 65])
def test_unsafe_wallet_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(IdentityError, match="invalid wallet name"):
        Identity.load_or_create(tmp_path, name)


def test_signer_signs_for_its_ss58() -> None:
    alice = Identity.from_uri("//Alice")
    headers = http_auth.sign(alice.signer, method="GET", path="/", receiver_ss58=alice.ss58)
    caller = http_auth.verify(
        headers,
        b"",
        method="GET",
        path="/",
        self_hotkey_ss58=alice.ss58,
        nonce_store=http_auth.InMemoryNonceStore(),
    )
    assert caller.hotkey_ss58 == alice.ss58 == "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
    assert "signer" not in repr(alice)


def test_from_seed_is_deterministic() -> None:
    seed = bytes(range(32))
    assert Identity.from_seed(seed, "a").ss58 == Identity.from_seed(seed, "b").ss58
    with pytest.raises(ValueError, match="32 bytes"):
        Identity.from_seed(b"short", "a")
