"""Signatures of the proxy hotkey over checkpoints and receipts (sr25519, hex).

Signed with the same keypair that signs btauth/1 requests; verified against an
SS58 address alone, so anyone holding a checkpoint or receipt can check it
offline.
"""

from __future__ import annotations

from bittensor.signing import Signer
from bittensor.sp_core import Keypair


def sign_hex(signer: Signer, message: bytes) -> str:
    """The signer's signature over ``message``, as 0x-prefixed hex."""
    return "0x" + bytes(signer.sign(message)).hex()


def verify_hex(ss58: str, message: bytes, signature: str) -> bool:
    """Whether ``signature`` (hex, 0x optional) is ``ss58``'s over ``message``.

    Anything that is not a signature (bad hex, wrong length, a malformed
    address) is simply not valid: an auditor gets False, never a crash.
    """
    try:
        raw = bytes.fromhex(signature.removeprefix("0x"))
        if len(raw) != 64:
            return False
        return bool(Keypair(ss58_address=ss58).verify(message, raw))
    except (ValueError, TypeError):
        return False
