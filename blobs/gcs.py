"""Blob store on Google Cloud Storage: the production backend.

Objects are named ``<prefix><digest>`` and written create-only
(``ifGenerationMatch=0``), so an object, once written, is never overwritten.

The retention processor deletes blobs when their tasks expire. Behind it, as a safety
net for anything it misses (a crash, a bug, a blob whose task was never recorded),
the bucket should carry this lifecycle rule, also shipped as ``blobs/gcs-lifecycle.json``::

    gsutil lifecycle set blobs/gcs-lifecycle.json gs://BUCKET
    # or: gcloud storage buckets update gs://BUCKET --lifecycle-file=blobs/gcs-lifecycle.json

It deletes objects under ``blobs/`` 30 days after their creation; keep ``age`` above the
longest retention the processor is configured with, and ``matchesPrefix`` equal to the
store's prefix.

Signed URLs need credentials that can sign: a service-account key
(``google.oauth2.service_account.Credentials``) or, without a key file on GCE, Cloud
Run or GKE, ``google.auth.impersonated_credentials.Credentials`` for the runtime
service account (which signs through the IAM API and needs
``roles/iam.serviceAccountTokenCreator`` on itself).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any, Final

import google.cloud.storage as storage
from google.api_core import exceptions as gexc
from google.auth.credentials import Signing

from blobs.port import BlobNotFound, BlobRef, digest_of, validate_content_type, validate_digest

LIFECYCLE_RULES: Final[dict[str, Any]] = {
    "rule": [
        {
            "action": {"type": "Delete"},
            "condition": {"age": 30, "matchesPrefix": ["blobs/"]},
        }
    ]
}

# Above this size the client switches from one multipart request to a resumable
# upload (google.cloud.storage.blob._MAX_MULTIPART_SIZE).
_RESUMABLE_ABOVE: Final = 8 * 1024 * 1024
# The longest expiry a V4 signature allows.
_MAX_SIGNED_URL_SECONDS: Final = 7 * 24 * 3600


class GcsBlobStore:
    """Blobs as objects ``<prefix><digest>`` in one bucket.

    The store owns ``client``: ``close()`` closes it. Every blocking client call runs
    in a worker thread.
    """

    def __init__(
        self,
        bucket: str,
        client: storage.Client,
        prefix: str = "blobs/",
        signing_credentials: Signing | None = None,
        timeout: float = 60.0,
    ) -> None:
        self._client = client
        self._bucket = client.bucket(bucket)
        self._prefix = prefix
        self._signing_credentials = signing_credentials
        self._timeout = timeout

    @property
    def bucket_name(self) -> str:
        name: str = self._bucket.name
        return name

    def _blob(self, digest: str) -> storage.Blob:
        validate_digest(digest)
        return self._bucket.blob(self._prefix + digest)

    async def put(self, data: bytes, content_type: str) -> BlobRef:
        validate_content_type(content_type)
        digest = await asyncio.to_thread(digest_of, data)
        await asyncio.to_thread(self._upload, self._blob(digest), data, content_type)
        return BlobRef(digest=digest, size=len(data), content_type=content_type)

    def _upload(self, blob: storage.Blob, data: bytes, content_type: str) -> None:
        # A client re-sending the same large file should not cost a second upload.
        # Small ones go straight to the conditional write: one request either way.
        if len(data) > _RESUMABLE_ABOVE and blob.exists(timeout=self._timeout):
            return
        # PreconditionFailed: already stored, by a concurrent put or by our own retried
        # request whose first attempt succeeded. Same digest, same bytes.
        with contextlib.suppress(gexc.PreconditionFailed):
            blob.upload_from_string(
                data,
                content_type=content_type,
                if_generation_match=0,
                timeout=self._timeout,
            )

    async def get(self, digest: str) -> bytes:
        blob = self._blob(digest)
        try:
            data: bytes = await asyncio.to_thread(blob.download_as_bytes, timeout=self._timeout)
        except gexc.NotFound:
            raise BlobNotFound(digest) from None
        return data

    async def exists(self, digest: str) -> bool:
        blob = self._blob(digest)
        found: bool = await asyncio.to_thread(blob.exists, timeout=self._timeout)
        return found

    async def delete(self, digest: str) -> bool:
        blob = self._blob(digest)
        try:
            await asyncio.to_thread(blob.delete, timeout=self._timeout)
        except gexc.NotFound:
            return False
        return True

    async def signed_url(self, digest: str, expires_in_seconds: int) -> str | None:
        blob = self._blob(digest)
        if not 0 < expires_in_seconds <= _MAX_SIGNED_URL_SECONDS:
            raise ValueError(
                f"expires_in_seconds must be in 1..{_MAX_SIGNED_URL_SECONDS}, "
                f"got {expires_in_seconds}"
            )
        if self._signing_credentials is None:
            return None
        # Impersonated credentials sign through the IAM API: a network call.
        url: str = await asyncio.to_thread(
            blob.generate_signed_url,
            version="v4",
            expiration=timedelta(seconds=expires_in_seconds),
            method="GET",
            credentials=self._signing_credentials,
        )
        return url

    async def check(self) -> None:
        # Listing needs only storage.objects.list, which a runtime service account
        # with object roles has; reading the bucket's metadata needs more.
        await asyncio.to_thread(self._list_one)

    def _list_one(self) -> None:
        # No retries: a probe reports an outage, it does not wait it out (the
        # client's default retry would keep trying for two minutes).
        blobs = self._client.list_blobs(
            self._bucket, prefix=self._prefix, max_results=1, timeout=self._timeout, retry=None
        )
        for _ in blobs:
            break

    async def create_bucket_if_missing(self, location: str | None = None) -> bool:
        """Create the bucket unless it exists (for dev and the emulator); True if created."""
        return await asyncio.to_thread(self._create_bucket_if_missing, location)

    def _create_bucket_if_missing(self, location: str | None) -> bool:
        if self._client.lookup_bucket(self._bucket.name, timeout=self._timeout) is not None:
            return False
        try:
            self._client.create_bucket(self._bucket.name, location=location, timeout=self._timeout)
        except gexc.Conflict:
            return False
        return True

    async def close(self) -> None:
        await asyncio.to_thread(self._client.close)
