"""File storage for uploaded and produced audio, addressed by content hash."""

from blobs.gcs import LIFECYCLE_RULES, GcsBlobStore
from blobs.local import LocalBlobStore
from blobs.port import (
    BlobNotFound,
    BlobRef,
    BlobStore,
    digest_of,
    validate_content_type,
    validate_digest,
)
from blobs.sniff import SNIFF_BYTES, sniff_audio

__all__ = [
    "LIFECYCLE_RULES",
    "SNIFF_BYTES",
    "BlobNotFound",
    "BlobRef",
    "BlobStore",
    "GcsBlobStore",
    "LocalBlobStore",
    "digest_of",
    "sniff_audio",
    "validate_content_type",
    "validate_digest",
]
