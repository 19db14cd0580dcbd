"""The blob store port: content-addressed, create-only storage of uploaded and produced files.

Blobs are named by the SHA-256 of their bytes and nothing else, so a client-chosen
name can never reach a path or an object name, and storing the same bytes twice is
a no-op that returns the same reference.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Protocol

_DIGEST = re.compile(r"[0-9a-f]{64}")
# A media type is stored as object metadata and sent back as a header: printable
# ASCII only, so nothing can smuggle a line break into either.
_CONTENT_TYPE = re.compile(r"[\x21-\x7e][\x20-\x7e]{0,254}")


@dataclass(frozen=True, slots=True)
class BlobRef:
    digest: str
    """Lowercase hex SHA-256 of the bytes."""
    size: int
    content_type: str


class BlobNotFound(Exception):
    """No blob with this digest is stored."""

    def __init__(self, digest: str) -> None:
        super().__init__(f"blob {digest} not found")
        self.digest = digest


def digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def validate_digest(digest: str) -> str:
    """Return ``digest`` if it is 64 lowercase hex characters, else raise ValueError."""
    if not isinstance(digest, str) or _DIGEST.fullmatch(digest) is None:
        raise ValueError(f"invalid blob digest {digest!r}: expected 64 lowercase hex characters")
    return digest


def validate_content_type(content_type: str) -> str:
    if not isinstance(content_type, str) or _CONTENT_TYPE.fullmatch(content_type) is None:
        raise ValueError(f"invalid content type {content_type!r}")
    return content_type


class BlobStore(Protocol):
    async def put(self, data: bytes, content_type: str) -> BlobRef:
        """Store ``data`` under its SHA-256; storing the same bytes again changes nothing.

        A later put of the same bytes does not change the stored content type.
        """
        ...

    async def get(self, digest: str) -> bytes:
        """The blob's bytes; BlobNotFound if absent."""
        ...

    async def exists(self, digest: str) -> bool: ...

    async def delete(self, digest: str) -> bool:
        """True if something was deleted, False if there was nothing to delete."""
        ...

    async def signed_url(self, digest: str, expires_in_seconds: int) -> str | None:
        """A direct download link valid for ``expires_in_seconds``, or None when the
        backend cannot make one (the caller then serves the bytes itself)."""
        ...

    async def check(self) -> None:
        """Health probe: returns if the store is usable, raises otherwise."""
        ...

    async def close(self) -> None: ...
