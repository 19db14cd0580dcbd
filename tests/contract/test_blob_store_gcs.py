from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.oauth2 import service_account

import blobs
from blobs import BlobStore
from blobs.gcs import LIFECYCLE_RULES, GcsBlobStore
from tests.contract.blob_store_contract import SAMPLE, BlobStoreContract

if TYPE_CHECKING:
    from tests.support.gcs_emulator import GcsEmulator

# Registered as a plugin, not imported, so pytest can rewrite its asserts.
PROJECT = "taskledger-test"
pytestmark = pytest.mark.gcs


def _bucket_name() -> str:
    return f"taskledger-{uuid.uuid4().hex[:16]}"


class TestGcsBlobStore(BlobStoreContract):
    async def make_store(self, request: pytest.FixtureRequest) -> BlobStore:
        emulator: GcsEmulator = request.getfixturevalue("gcs_emulator")
        store = GcsBlobStore(_bucket_name(), emulator.client())
        await store.create_bucket_if_missing()
        return store


@pytest.fixture(scope="module")
def signing_credentials() -> service_account.Credentials:
    # A throwaway service account: a fresh RSA key nobody else knows. Signing is
    # local, so no token endpoint is ever called.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    credentials: service_account.Credentials = (
        service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
            {
                "type": "service_account",
                "project_id": PROJECT,
                "private_key_id": "throwaway",
                "private_key": pem,
                "client_email": f"blobs@{PROJECT}.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": "https://oauth2.googleapis.com/token",
            }
        )
    )
    return credentials


class StoreFactory(Protocol):
    async def __call__(self, *, create_bucket: bool = True, **kwargs: Any) -> GcsBlobStore: ...


@pytest.fixture
async def new_store(gcs_emulator: GcsEmulator) -> AsyncIterator[StoreFactory]:
    """GcsBlobStores on fresh buckets of the emulator, closed after the test."""
    made: list[GcsBlobStore] = []

    async def make(*, create_bucket: bool = True, **kwargs: Any) -> GcsBlobStore:
        store = GcsBlobStore(_bucket_name(), gcs_emulator.client(), **kwargs)
        made.append(store)
        if create_bucket:
            await store.create_bucket_if_missing()
        return store

    yield make
    for store in made:
        await store.close()


@pytest.fixture
async def gcs_store(new_store: StoreFactory) -> GcsBlobStore:
    return await new_store()


async def test_objects_are_named_prefix_and_digest_with_their_content_type(
    gcs_emulator: GcsEmulator, gcs_store: GcsBlobStore
) -> None:
    ref = await gcs_store.put(SAMPLE, "audio/wav")
    blob = gcs_emulator.client().bucket(gcs_store.bucket_name).get_blob(f"blobs/{ref.digest}")
    assert blob is not None
    assert blob.content_type == "audio/wav"
    assert blob.size == len(SAMPLE)


async def test_a_custom_prefix_is_used(gcs_emulator: GcsEmulator, new_store: StoreFactory) -> None:
    store = await new_store(prefix="tenant-a/in/")
    ref = await store.put(SAMPLE, "audio/wav")
    names = [b.name for b in gcs_emulator.client().list_blobs(store.bucket_name)]
    assert names == [f"tenant-a/in/{ref.digest}"]


@pytest.mark.parametrize("size", [len(SAMPLE), 9 * 1024 * 1024], ids=["simple", "resumable"])
async def test_putting_existing_bytes_does_not_overwrite_the_object(
    gcs_emulator: GcsEmulator, gcs_store: GcsBlobStore, size: int
) -> None:
    data = (SAMPLE * (size // len(SAMPLE) + 1))[:size]
    ref = await gcs_store.put(data, "audio/wav")
    bucket = gcs_emulator.client().bucket(gcs_store.bucket_name)
    before = bucket.get_blob(f"blobs/{ref.digest}")
    await gcs_store.put(data, "application/octet-stream")
    after = bucket.get_blob(f"blobs/{ref.digest}")
    assert (after.generation, after.content_type) == (before.generation, "audio/wav")


async def test_the_emulator_enforces_create_only_on_simple_uploads(
    gcs_emulator: GcsEmulator, gcs_store: GcsBlobStore
) -> None:
    # What put relies on: a second conditional write is refused, not applied.
    ref = await gcs_store.put(SAMPLE, "audio/wav")
    blob = gcs_emulator.client().bucket(gcs_store.bucket_name).blob(f"blobs/{ref.digest}")
    with pytest.raises(gexc.PreconditionFailed):
        blob.upload_from_string(b"other bytes", if_generation_match=0)
    assert await gcs_store.get(ref.digest) == SAMPLE


async def test_signed_url_is_none_without_signing_credentials(gcs_store: GcsBlobStore) -> None:
    ref = await gcs_store.put(SAMPLE, "audio/wav")
    assert await gcs_store.signed_url(ref.digest, 60) is None


async def test_signed_url_is_a_v4_get_link_that_serves_the_bytes(
    new_store: StoreFactory, signing_credentials: service_account.Credentials
) -> None:
    store = await new_store(signing_credentials=signing_credentials)
    ref = await store.put(SAMPLE, "audio/wav")

    url = await store.signed_url(ref.digest, 120)

    assert url is not None
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert parts.path == f"/{store.bucket_name}/blobs/{ref.digest}"
    assert query["X-Goog-Algorithm"] == "GOOG4-RSA-SHA256"
    assert query["X-Goog-Credential"].startswith(signing_credentials.service_account_email)
    assert len(query["X-Goog-Signature"]) == 512  # hex of a 2048-bit RSA signature
    assert query["X-Goog-Expires"] == "120"
    signed_at = datetime.strptime(query["X-Goog-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - signed_at).total_seconds()) < 60

    def fetch() -> tuple[bytes, str | None]:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.read(), response.headers.get("Content-Type")

    body, content_type = await asyncio.to_thread(fetch)
    assert body == SAMPLE
    assert content_type == "audio/wav"


@pytest.mark.parametrize("seconds", [0, -1, 7 * 24 * 3600 + 1])
async def test_signed_url_expiry_must_be_within_v4_limits(
    new_store: StoreFactory, signing_credentials: service_account.Credentials, seconds: int
) -> None:
    store = await new_store(signing_credentials=signing_credentials)
    with pytest.raises(ValueError):
        await store.signed_url(hashlib.sha256(SAMPLE).hexdigest(), seconds)


async def test_check_fails_when_the_bucket_is_missing(new_store: StoreFactory) -> None:
    store = await new_store(create_bucket=False)
    with pytest.raises(gexc.NotFound):
        await store.check()


async def test_create_bucket_if_missing_is_idempotent(new_store: StoreFactory) -> None:
    store = await new_store(create_bucket=False)
    assert await store.create_bucket_if_missing() is True
    assert await store.create_bucket_if_missing() is False
    await store.check()


async def test_check_fails_fast_when_the_service_is_unreachable() -> None:
    # Bound but not listening: connections are refused, and no one else gets the port.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        client = storage.Client(
            project=PROJECT,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": f"http://127.0.0.1:{closed.getsockname()[1]}"},
        )
        store = GcsBlobStore(_bucket_name(), client, timeout=2.0)
        started = time.monotonic()
        with pytest.raises(requests.ConnectionError):
            await store.check()
        await store.close()
    assert time.monotonic() - started < 10


def test_the_operators_lifecycle_file_matches_the_documented_rule() -> None:
    shipped = Path(blobs.__file__).with_name("gcs-lifecycle.json")
    assert json.loads(shipped.read_text()) == LIFECYCLE_RULES
    (rule,) = LIFECYCLE_RULES["rule"]
    assert rule["action"] == {"type": "Delete"}
    assert rule["condition"]["matchesPrefix"] == ["blobs/"]
    assert rule["condition"]["age"] >= 1


def test_no_emulator_environment_leaks_into_other_tests() -> None:
    assert "STORAGE_EMULATOR_HOST" not in os.environ
