"""Choosing each port's backend from settings."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from bittensor.http_auth import NonceStore

from blobs.local import LocalBlobStore
from blobs.port import BlobStore
from events import EventLog
from events.sqlite_log import Durability, SqliteEventLog
from http_edge.key_store import KeyStore
from http_edge.key_store.sqlite import SqliteKeyStore
from miners.sqlite_nonces import SqliteNonceStore
from projections.sqlite_store import SqliteReadModelStore
from projections.store import ReadModelStore
from taskledger.settings import Settings, SettingsError

if TYPE_CHECKING:
    from events.kafka import KafkaEventLog


def event_log_kind(settings: Settings) -> Literal["sqlite", "kafka"]:
    """Which backend ``TASKLEDGER_EVENT_LOG`` names."""
    if settings.event_log == "sqlite":
        return "sqlite"
    if settings.event_log.startswith("kafka://"):
        return "kafka"
    raise SettingsError(
        f"TASKLEDGER_EVENT_LOG: unsupported value {settings.event_log!r} "
        "(use sqlite or kafka://HOST:PORT[?prefix=…&partitions=…&writer=…])"
    )


def open_event_log(settings: Settings) -> EventLog:
    if event_log_kind(settings) == "kafka":
        return open_kafka_log(settings)
    return open_sqlite_log(settings)


def open_sqlite_log(settings: Settings) -> SqliteEventLog:
    durability: Durability = "full" if settings.durability == "full" else "normal"
    return SqliteEventLog(settings.data_dir / "events.db", durability=durability)


def open_kafka_log(settings: Settings) -> KafkaEventLog:
    from events.kafka import KafkaEventLog

    try:
        return KafkaEventLog.from_url(settings.event_log)
    except ValueError as error:
        raise SettingsError(f"TASKLEDGER_EVENT_LOG: {error}") from error


def sqlite_read_models_path(settings: Settings) -> Path | None:
    """Where the read models are, when they are a SQLite file."""
    return settings.data_dir / "readmodels.db" if settings.read_models == "sqlite" else None


def open_read_models(settings: Settings) -> ReadModelStore:
    path = sqlite_read_models_path(settings)
    if path is not None:
        return SqliteReadModelStore(path)
    if settings.read_models.startswith("firestore://"):
        return _firestore_read_models(settings.read_models)
    raise SettingsError(
        f"TASKLEDGER_READ_MODELS: unsupported value {settings.read_models!r} "
        "(use sqlite or firestore://PROJECT[/DATABASE])"
    )


def _firestore_read_models(url: str) -> ReadModelStore:
    """``firestore://project[/database]``; credentials from the environment (ADC).

    With ``FIRESTORE_EMULATOR_HOST`` set, the client talks to the emulator instead.
    """
    from google.cloud import firestore

    from projections.firestore_store import FirestoreReadModelStore

    project, _, database = url.removeprefix("firestore://").partition("/")
    if not project:
        raise SettingsError("TASKLEDGER_READ_MODELS: firestore:// needs a project id")
    client = firestore.AsyncClient(project=project, database=database or "(default)")
    return FirestoreReadModelStore(client)


class ClosingNonceStore(NonceStore, Protocol):
    def close(self) -> None: ...


def open_nonce_store(settings: Settings) -> ClosingNonceStore:
    """Where btauth/1 nonces are kept: beside the read models, so that with Firestore
    every edge of a deployment shares them (a replay to another edge is refused)."""
    if settings.read_models.startswith("firestore://"):
        from google.cloud import firestore

        from miners.firestore_nonces import FirestoreNonceStore

        project, _, database = settings.read_models.removeprefix("firestore://").partition("/")
        client = firestore.Client(project=project, database=database or "(default)")
        return FirestoreNonceStore(client)
    return SqliteNonceStore(settings.data_dir / "nonces.db")


def open_blobs(settings: Settings) -> BlobStore:
    if settings.blobs == "local":
        return LocalBlobStore(Path(settings.data_dir) / "blobs")
    if settings.blobs.startswith("gs://"):
        return _gcs_blobs(settings.blobs)
    raise SettingsError(
        f"TASKLEDGER_BLOBS: unsupported value {settings.blobs!r} (use local or gs://BUCKET)"
    )


def _gcs_blobs(url: str) -> BlobStore:
    """``gs://bucket[/prefix]``; credentials from the environment (ADC), or none for an emulator."""
    import os

    import google.cloud.storage as storage
    from google.auth.credentials import AnonymousCredentials, Signing

    from blobs.gcs import GcsBlobStore

    bucket, _, prefix = url.removeprefix("gs://").partition("/")
    if not bucket:
        raise SettingsError("TASKLEDGER_BLOBS: gs:// needs a bucket name")
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    if emulator:
        client = storage.Client(
            project="taskledger",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": emulator},
        )
    else:
        client = storage.Client()
    signing = client._credentials if isinstance(client._credentials, Signing) else None
    store = GcsBlobStore(
        bucket,
        client,
        prefix=(prefix.rstrip("/") + "/") if prefix else "blobs/",
        signing_credentials=signing,
    )
    if emulator and client.lookup_bucket(bucket) is None:
        client.create_bucket(bucket)  # emulators start empty; real buckets are made by operators
    return store


def open_key_store(settings: Settings) -> KeyStore:
    """Client keys live beside the read models: SQLite in the data dir, or Firestore."""
    if settings.read_models.startswith("firestore://"):
        from google.cloud import firestore

        from http_edge.key_store.firestore import FirestoreKeyStore

        project, _, database = settings.read_models.removeprefix("firestore://").partition("/")
        client = firestore.AsyncClient(project=project, database=database or "(default)")
        return FirestoreKeyStore(client)
    return SqliteKeyStore(settings.data_dir / "keys.db")
