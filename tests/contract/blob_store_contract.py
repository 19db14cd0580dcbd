"""The blob store contract, written once and run against every backend.

A backend's test module subclasses ``BlobStoreContract`` as ``Test<Backend>`` and
implements ``make_store``; a backend is correct when the whole suite passes.
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
import os
from collections.abc import AsyncIterator

import pytest

from blobs import BlobNotFound, BlobRef, BlobStore

SAMPLE = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(256)) * 4
VALID = hashlib.sha256(b"nothing stored under this").hexdigest()
INVALID_DIGESTS = [
    "../etc/passwd",
    "../" + VALID[3:],
    VALID.upper(),
    VALID[:-1],
    VALID + "0",
    VALID + "\n",
    "g" * 64,
    VALID[:32] + "/" + VALID[33:],
    "",
    "abc",
]


class BlobStoreContract(abc.ABC):
    @abc.abstractmethod
    async def make_store(self, request: pytest.FixtureRequest) -> BlobStore:
        """A fresh, empty store; ``request`` gives access to the backend's fixtures."""

    @pytest.fixture
    async def store(self, request: pytest.FixtureRequest) -> AsyncIterator[BlobStore]:
        store = await self.make_store(request)
        try:
            yield store
        finally:
            await store.close()

    async def test_put_then_get_returns_the_bytes(self, store: BlobStore) -> None:
        ref = await store.put(SAMPLE, "audio/wav")
        assert await store.get(ref.digest) == SAMPLE

    async def test_blobs_are_addressed_by_sha256(self, store: BlobStore) -> None:
        ref = await store.put(SAMPLE, "audio/wav")
        assert ref == BlobRef(
            digest=hashlib.sha256(SAMPLE).hexdigest(), size=len(SAMPLE), content_type="audio/wav"
        )

    async def test_empty_blob_round_trips(self, store: BlobStore) -> None:
        ref = await store.put(b"", "application/octet-stream")
        assert ref.digest == hashlib.sha256(b"").hexdigest()
        assert ref.size == 0
        assert await store.get(ref.digest) == b""

    async def test_putting_the_same_bytes_again_is_a_no_op(self, store: BlobStore) -> None:
        first = await store.put(SAMPLE, "audio/wav")
        second = await store.put(SAMPLE, "audio/wav")
        assert second == first
        assert await store.get(first.digest) == SAMPLE

    async def test_different_bytes_get_different_digests(self, store: BlobStore) -> None:
        a = await store.put(b"first", "text/plain")
        b = await store.put(b"second", "text/plain")
        assert a.digest != b.digest
        assert await store.get(a.digest) == b"first"
        assert await store.get(b.digest) == b"second"

    async def test_exists(self, store: BlobStore) -> None:
        assert not await store.exists(hashlib.sha256(SAMPLE).hexdigest())
        ref = await store.put(SAMPLE, "audio/wav")
        assert await store.exists(ref.digest)

    async def test_get_of_a_missing_blob_raises_blob_not_found(self, store: BlobStore) -> None:
        with pytest.raises(BlobNotFound) as caught:
            await store.get(VALID)
        assert caught.value.digest == VALID

    async def test_delete_removes_the_blob(self, store: BlobStore) -> None:
        ref = await store.put(SAMPLE, "audio/wav")
        assert await store.delete(ref.digest) is True
        assert not await store.exists(ref.digest)
        with pytest.raises(BlobNotFound):
            await store.get(ref.digest)
        assert await store.delete(ref.digest) is False

    async def test_delete_of_a_missing_blob_returns_false(self, store: BlobStore) -> None:
        assert await store.delete(VALID) is False

    async def test_delete_leaves_other_blobs_alone(self, store: BlobStore) -> None:
        keep = await store.put(b"keep", "text/plain")
        drop = await store.put(b"drop", "text/plain")
        await store.delete(drop.digest)
        assert await store.get(keep.digest) == b"keep"

    async def test_a_deleted_blob_can_be_stored_again(self, store: BlobStore) -> None:
        ref = await store.put(SAMPLE, "audio/wav")
        await store.delete(ref.digest)
        assert await store.put(SAMPLE, "audio/wav") == ref
        assert await store.get(ref.digest) == SAMPLE

    @pytest.mark.parametrize("digest", INVALID_DIGESTS)
    async def test_invalid_digests_are_rejected_everywhere(
        self, store: BlobStore, digest: str
    ) -> None:
        with pytest.raises(ValueError):
            await store.get(digest)
        with pytest.raises(ValueError):
            await store.exists(digest)
        with pytest.raises(ValueError):
            await store.delete(digest)
        with pytest.raises(ValueError):
            await store.signed_url(digest, 60)

    @pytest.mark.parametrize("content_type", ["", " audio/wav", "audio/wav\r\nX-Evil: 1", "ä/ö"])
    async def test_invalid_content_types_are_rejected(
        self, store: BlobStore, content_type: str
    ) -> None:
        with pytest.raises(ValueError):
            await store.put(SAMPLE, content_type)

    async def test_a_large_blob_round_trips(self, store: BlobStore) -> None:
        data = os.urandom(20 * 1024 * 1024)
        ref = await store.put(data, "audio/wav")
        assert ref.digest == hashlib.sha256(data).hexdigest()
        assert ref.size == len(data)
        assert await store.get(ref.digest) == data
        assert await store.put(data, "audio/wav") == ref

    async def test_concurrent_puts_of_the_same_bytes_agree(self, store: BlobStore) -> None:
        refs = await asyncio.gather(*(store.put(SAMPLE, "audio/wav") for _ in range(8)))
        assert len(set(refs)) == 1
        assert await store.get(refs[0].digest) == SAMPLE

    async def test_concurrent_puts_of_different_bytes_all_land(self, store: BlobStore) -> None:
        payloads = [os.urandom(1000 + i) for i in range(8)]
        refs = await asyncio.gather(*(store.put(p, "audio/ogg") for p in payloads))
        for ref, payload in zip(refs, payloads, strict=True):
            assert await store.get(ref.digest) == payload

    async def test_signed_url_is_a_link_or_none(self, store: BlobStore) -> None:
        ref = await store.put(SAMPLE, "audio/wav")
        url = await store.signed_url(ref.digest, 60)
        assert url is None or url.startswith(("http://", "https://"))

    async def test_check_passes_on_a_usable_store(self, store: BlobStore) -> None:
        await store.check()
