"""Client keys as data: the key-store port, its backends, and the edge's cached view of it."""

from http_edge.key_store.port import (
    KeyNameTaken,
    KeyRecord,
    KeyStore,
    hash_key,
    new_key,
    usage_day,
    valid_key_name,
)

__all__ = [
    "KeyNameTaken",
    "KeyRecord",
    "KeyStore",
    "hash_key",
    "new_key",
    "usage_day",
    "valid_key_name",
]
