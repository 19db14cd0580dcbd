"""File storage for uploaded and produced audio, addressed by content hash.

The Cloud Storage backend is ``blobs.gcs``, imported where it is chosen: Google's
client takes a good part of a second to import, on every command.
"""

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
    "SNIFF_BYTES",
    "BlobNotFound",
    "BlobRef",
    "BlobStore",
    "LocalBlobStore",
    "digest_of",
    "sniff_audio",
    "validate_content_type",
    "validate_digest",
]
