"""Blob store on a local directory: the embedded default."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
from pathlib import Path

from blobs.port import BlobNotFound, BlobRef, digest_of, validate_content_type, validate_digest

_TMP_PREFIX = ".tmp-"


class LocalBlobStore:
    """Blobs as files at ``root/ab/cd/<digest>``, the content type in ``<digest>.meta`` beside.

    Every file is written to a temporary file in its final directory, fsynced, then
    renamed into place, so a reader sees either no file or the whole file. The data
    file is renamed last: when it exists, its metadata does too.
    """

    def __init__(self, root: Path) -> None:
        self._root = root

    @property
    def root(self) -> Path:
        return self._root

    def _path(self, digest: str) -> Path:
        validate_digest(digest)
        return self._root / digest[:2] / digest[2:4] / digest

    async def put(self, data: bytes, content_type: str) -> BlobRef:
        validate_content_type(content_type)
        return await asyncio.to_thread(self._put, data, content_type)

    def _put(self, data: bytes, content_type: str) -> BlobRef:
        digest = digest_of(data)
        ref = BlobRef(digest=digest, size=len(data), content_type=content_type)
        path = self._path(digest)
        if path.exists():
            return ref
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = json.dumps({"content_type": content_type, "size": len(data)}).encode()
        _write_atomically(_meta_path(path), meta)
        _write_atomically(path, data)
        _fsync_dir(path.parent)
        return ref

    async def get(self, digest: str) -> bytes:
        path = self._path(digest)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise BlobNotFound(digest) from None

    async def exists(self, digest: str) -> bool:
        return await asyncio.to_thread(self._path(digest).is_file)

    async def delete(self, digest: str) -> bool:
        return await asyncio.to_thread(self._delete, self._path(digest))

    @staticmethod
    def _delete(path: Path) -> bool:
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        finally:
            _meta_path(path).unlink(missing_ok=True)
        return True

    async def signed_url(self, digest: str, expires_in_seconds: int) -> str | None:
        validate_digest(digest)
        return None

    async def check(self) -> None:
        await asyncio.to_thread(self._check)

    def _check(self) -> None:
        self._root.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=self._root)
        try:
            os.write(fd, b"probe")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(name)

    async def close(self) -> None:
        return None


def _meta_path(path: Path) -> Path:
    return path.with_name(path.name + ".meta")


def _write_atomically(path: Path, data: bytes) -> None:
    # Same directory as the target so that os.replace is a rename within one
    # file system (atomic). A concurrent writer of the same digest writes the same
    # bytes, so whichever rename lands last changes nothing.
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _fsync_dir(directory: Path) -> None:
    # Makes the renames durable: without it a crash can forget the new directory entry.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
