"""Anchors in GCS (fake-gcs-server): one create-only object per checkpoint, read by the audit."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from events.sqlite_log import SqliteEventLog
from processors.anchors import GcsAnchors, object_name
from processors.checkpointer import Checkpointer
from taskledger.accountability import audit_against_anchors, load_anchors
from taskledger.anchoring import resume_for
from taskledger.deployments.embedded import log_features
from tests.support.anchor_signer import EVERY, PROXY
from tests.support.gcs_emulator import GcsEmulator
from tests.support.lifecycle_log import write_lifecycles
from tests.support.rewrites import rewrite_task

pytestmark = pytest.mark.gcs


async def test_gcs_anchors_are_create_only_and_hold_the_log_to_account(
    gcs_emulator: GcsEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = f"anchors-{uuid.uuid4().hex[:12]}"
    client = gcs_emulator.client()
    client.create_bucket(bucket)
    sink = GcsAnchors(bucket, "proxy-a/", client)
    ids = await write_lifecycles(tmp_path, 5)
    log = SqliteEventLog(tmp_path / "events.db")
    checkpointer = Checkpointer(
        log,
        log,
        PROXY.signer,
        log_name=log.log_name,
        partition_of=lambda task_id: 0,
        resume=resume_for(log_features(log)),
        hashes=log,
        every_events=EVERY,
        every_seconds=3600.0,
        sinks=[sink],
        clock=lambda: datetime.now(UTC),
    )
    running = asyncio.create_task(checkpointer.run())
    async with asyncio.timeout(20):
        while checkpointer.latest is None or checkpointer.latest.position < 32:
            await asyncio.sleep(0.01)
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    first = (await log.log_checkpoints())[0]

    # Create-only: publishing another document at a published position changes nothing.
    forged = type(first)(**{**first.to_document(), "log_hash": "0" * 64})
    await sink.publish(forged)
    stored = client.bucket(bucket).blob(object_name("proxy-a/", first)).download_as_bytes()
    assert b'"log_hash":"' + first.log_hash.encode() in stored

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.endpoint)
    anchors = await load_anchors(f"gs://{bucket}/proxy-a")
    assert [c.position for c in anchors] == [16, 32]
    clean = await audit_against_anchors(log, log_features(log), anchors, PROXY.ss58)
    assert clean.clean and clean.reproduced == 2 and clean.unanchored_events == 8

    await log.close()
    rewrite_task(tmp_path / "events.db", ids[2])
    log = SqliteEventLog(tmp_path / "events.db")
    report = await audit_against_anchors(log, log_features(log), anchors, PROXY.ss58)
    assert [(f.kind, f.position) for f in report.findings] == [("log_rewritten", 17)]
    await log.close()
    client.close()
