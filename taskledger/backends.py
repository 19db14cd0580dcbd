"""Choosing each port's backend from settings."""

from __future__ import annotations

from pathlib import Path

from blobs.local import LocalBlobStore
from blobs.port import BlobStore
from events import EventLog
from events.sqlite_log import Durability, SqliteEventLog
from projections.sqlite_store import SqliteReadModelStore
from projections.store import ReadModelStore
from taskledger.settings import Settings, SettingsError


def open_event_log(settings: Settings) -> EventLog:
    if settings.event_log == "sqlite":
        durability: Durability = "full" if settings.durability == "full" else "normal"
        return SqliteEventLog(settings.data_dir / "events.db", durability=durability)
    raise SettingsError(
        f"TASKLEDGER_EVENT_LOG: unsupported value {settings.event_log!r} (use sqlite)"
    )


def open_read_models(settings: Settings) -> ReadModelStore:
    if settings.read_models == "sqlite":
        return SqliteReadModelStore(settings.data_dir / "readmodels.db")
    raise SettingsError(
        f"TASKLEDGER_READ_MODELS: unsupported value {settings.read_models!r} (use sqlite)"
    )


def open_blobs(settings: Settings) -> BlobStore:
    if settings.blobs == "local":
        return LocalBlobStore(Path(settings.data_dir) / "blobs")
    raise SettingsError(f"TASKLEDGER_BLOBS: unsupported value {settings.blobs!r} (use local)")
