"""Hotkey identities: who signs our btauth/1 requests.

An :class:`Identity` carries the hotkey *keypair* itself, not the wallet.
``bittensor.http_auth.sign`` accepts a ``Wallet`` too, but then re-reads and
re-parses the hotkey file on every call (about 1 ms); a keypair signs in tens
of microseconds.

Dev wallets are created unencrypted: they guard nothing of value and must
never stop a headless start-up at a password prompt.
"""

from __future__ import annotations

import fcntl
import re
from dataclasses import dataclass, field
from pathlib import Path

from bittensor.signing import Signer
from bittensor.sp_core import Keypair
from bittensor.wallet import Wallet

# Wallet names become directory names; keep them to one safe path segment.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_HOTKEY_NAME = "default"


class IdentityError(Exception):
    """A wallet on disk cannot serve as a dev identity."""


@dataclass(frozen=True, slots=True)
class Identity:
    """A named hotkey: its SS58 address and the signer that proves it."""

    name: str
    ss58: str
    signer: Signer = field(repr=False, compare=False)

    @classmethod
    def load_or_create(cls, wallets_dir: Path, name: str) -> Identity:
        """Load wallet ``name`` under ``wallets_dir``, creating it unencrypted if absent.

        The first call writes a coldkey and a hotkey (``<name>/hotkeys/default``);
        later calls only read the hotkey. Safe when several processes start
        at once: creation is serialised by a lock file beside the wallet.
        """
        if not _NAME.fullmatch(name):
            raise IdentityError(
                f"invalid wallet name {name!r}: use letters, digits, '_', '-' or '.' "
                "(at most 64, not starting with '.' or '-')"
            )
        wallet = Wallet(name, _HOTKEY_NAME, path=str(wallets_dir))
        if not wallet.hotkey_file.exists_on_device():
            wallet_dir = wallets_dir / name
            wallet_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            with (wallet_dir / ".create.lock").open("a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                # Another process may have created it while we waited.
                if not wallet.hotkey_file.exists_on_device():
                    _create(wallet)
        if wallet.hotkey_file.is_encrypted():
            raise IdentityError(
                f"hotkey {wallet.hotkey_file.path} is encrypted; "
                "a dev identity needs an unencrypted hotkey"
            )
        hotkey = wallet.get_hotkey()
        return cls(name=name, ss58=hotkey.ss58_address, signer=hotkey)

    @classmethod
    def from_uri(cls, uri: str, name: str | None = None) -> Identity:
        """A throwaway identity from a dev URI such as ``//Alice`` (no files)."""
        keypair = Keypair.create_from_uri(uri)
        return cls(name=name or uri, ss58=keypair.ss58_address, signer=keypair)

    @classmethod
    def from_seed(cls, seed: bytes, name: str) -> Identity:
        """A deterministic identity from a 32-byte seed (no files)."""
        if len(seed) != 32:
            raise ValueError(f"seed must be 32 bytes, got {len(seed)}")
        keypair = Keypair.create_from_seed(seed)
        return cls(name=name, ss58=keypair.ss58_address, signer=keypair)


def _create(wallet: Wallet) -> None:
    if not wallet.coldkey_file.exists_on_device():
        wallet.create_new_coldkey(use_password=False, suppress=True)
    wallet.create_new_hotkey(use_password=False, suppress=True)
