from __future__ import annotations

import json
from pathlib import Path

import pytest

from blobs import BlobStore, LocalBlobStore
from tests.contract.blob_store_contract import SAMPLE, BlobStoreContract


class TestLocalBlobStore(BlobStoreContract):
    async def make_store(self, request: pytest.FixtureRequest) -> BlobStore:
        tmp_path: Path = request.getfixturevalue("tmp_path")
        return LocalBlobStore(tmp_path / "blobs")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "blobs"


async def test_layout_is_two_levels_of_fan_out_with_metadata_beside(root: Path) -> None:
    ref = await LocalBlobStore(root).put(SAMPLE, "audio/wav")
    path = root / ref.digest[:2] / ref.digest[2:4] / ref.digest
    assert path.read_bytes() == SAMPLE
    meta = json.loads(path.with_name(ref.digest + ".meta").read_text())
    assert meta == {"content_type": "audio/wav", "size": len(SAMPLE)}


async def test_putting_existing_bytes_does_not_rewrite_the_file(root: Path) -> None:
    store = LocalBlobStore(root)
    ref = await store.put(SAMPLE, "audio/wav")
    path = root / ref.digest[:2] / ref.digest[2:4] / ref.digest
    before = path.stat()
    await store.put(SAMPLE, "application/octet-stream")
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    meta = json.loads(path.with_name(ref.digest + ".meta").read_text())
    assert meta["content_type"] == "audio/wav"


async def test_no_temporary_files_are_left_behind(root: Path) -> None:
    store = LocalBlobStore(root)
    for i in range(5):
        await store.put(f"blob {i}".encode(), "text/plain")
    await store.check()
    assert not [p for p in root.rglob("*") if p.name.startswith(".tmp-")]


async def test_delete_removes_the_metadata_too(root: Path) -> None:
    store = LocalBlobStore(root)
    ref = await store.put(SAMPLE, "audio/wav")
    await store.delete(ref.digest)
    assert not [p for p in root.rglob("*") if p.is_file()]


async def test_blobs_outlive_the_store_object(root: Path) -> None:
    ref = await LocalBlobStore(root).put(SAMPLE, "audio/wav")
    assert await LocalBlobStore(root).get(ref.digest) == SAMPLE


async def test_signed_url_is_none(root: Path) -> None:
    store = LocalBlobStore(root)
    ref = await store.put(SAMPLE, "audio/wav")
    assert await store.signed_url(ref.digest, 60) is None


async def test_check_creates_a_missing_root(root: Path) -> None:
    await LocalBlobStore(root / "deeper").check()
    assert (root / "deeper").is_dir()


async def test_check_fails_when_the_root_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "blobs"
    blocker.write_bytes(b"not a directory")
    with pytest.raises(OSError):
        await LocalBlobStore(blocker).check()
