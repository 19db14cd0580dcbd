"""Short-lived input links: only the named miner, for the named task, until the link expires."""

from __future__ import annotations

import hashlib
import hmac


class InputLinks:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the link secret must be at least 16 bytes")
        self._secret = secret

    def _signature(self, digest: str, task_id: str, hotkey: str, expires: int) -> str:
        message = f"{digest}\n{task_id}\n{hotkey}\n{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def query(self, digest: str, task_id: str, hotkey: str, expires: int) -> str:
        signature = self._signature(digest, task_id, hotkey, expires)
        return f"task={task_id}&expires={expires}&sig={signature}"

    def valid(
        self, digest: str, task_id: str, hotkey: str, expires: int, signature: str, now: float
    ) -> bool:
        if now > expires:
            return False
        expected = self._signature(digest, task_id, hotkey, expires)
        # As bytes: compare_digest refuses str with non-ASCII characters (a TypeError).
        return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "surrogateescape"))
