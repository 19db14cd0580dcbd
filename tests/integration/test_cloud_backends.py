"""The whole lifecycle with Firestore read models and Cloud Storage files, on both logs.

Real components: Google's Firestore emulator, fake-gcs-server and a Kafka
broker, selected the way an operator selects them, through
TASKLEDGER_EVENT_LOG, TASKLEDGER_READ_MODELS and TASKLEDGER_BLOBS.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from audit.log_audit import audit_log
from miners.reference_validator import ReferenceValidator
from miners.work.speech import synthesize
from taskledger.dev import free_port, start_reference_miners
from taskledger.serving import start_edge
from taskledger.settings import Settings
from taskledger.system import System, build_system
from tests.support.firestore_emulator import FirestoreEmulator
from tests.support.gcs_emulator import GcsEmulator
from tests.support.kafka_broker import KafkaBroker

pytestmark = [pytest.mark.firestore, pytest.mark.gcs, pytest.mark.kafka, pytest.mark.slow]
PROJECT = "taskledger-cloud-test"
KEY = "cloud-test-key"


@pytest.fixture(params=["sqlite", "kafka"])
async def cloud_system(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    firestore_emulator: FirestoreEmulator,
    gcs_emulator: GcsEmulator,
) -> AsyncIterator[tuple[System, str]]:
    if request.param == "kafka":
        broker: KafkaBroker = request.getfixturevalue("kafka")
        event_log = f"kafka://{broker.bootstrap}?prefix=cloud{uuid.uuid4().hex[:8]}&partitions=3"
    else:
        event_log = "sqlite"
    firestore_emulator.reset(PROJECT)
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", firestore_emulator.host)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.endpoint)
    port = free_port()
    settings = replace(
        Settings(),
        data_dir=tmp_path,
        port=port,
        durability="normal",
        event_log=event_log,
        read_models=f"firestore://{PROJECT}",
        blobs="gs://taskledger-cloud-test/blobs",
        api_keys={"client": KEY},
        miner_timeout_seconds=20.0,
        task_deadline_seconds=60.0,
        allow_private_miners=True,
    )
    from miners.identity import Identity

    proxy = Identity.from_uri("//CloudTestProxy")
    peers = await start_reference_miners(settings, proxy, 3)
    system = build_system(
        settings,
        extra_miners=peers.miners,
        extra_validators=[peers.validator.ss58],
        identity=proxy,
    )
    await system.start()
    edge = await start_edge(system, "127.0.0.1", port)
    validator = ReferenceValidator(peers.validator, peers.client, settings.base_url, proxy.ss58)
    validating = asyncio.create_task(validator.run(interval=0.1))
    try:
        yield system, settings.base_url
    finally:
        validating.cancel()
        await edge.cleanup()
        await system.close()
        for runner in peers.runners:
            await runner.cleanup()
        await peers.client.close()


async def _wait_approved(
    session: aiohttp.ClientSession, base: str, task_id: str, seconds: float = 60
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {KEY}"}
    deadline = time.monotonic() + seconds
    document: dict[str, Any] = {}
    while time.monotonic() < deadline:
        async with session.get(f"{base}/api/v1/task/{task_id}/status", headers=headers) as reply:
            document = await reply.json()
        if document["status"] in ("APPROVED", "FAILED", "CANCELLED"):
            return document
        await asyncio.sleep(0.1)
    raise AssertionError(f"task {task_id} did not finish: {document}")


async def test_every_job_type_runs_on_firestore_and_cloud_storage(
    cloud_system: tuple[System, str],
) -> None:
    system, base = cloud_system
    headers = {"Authorization": f"Bearer {KEY}"}
    speech = synthesize("hello world this is a test")
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{base}/api/v1/tts", json={"text": "Hello from the subnet."}, headers=headers
        ) as reply:
            assert reply.status == 202
            tts = (await reply.json())["task_id"]
        form = aiohttp.FormData()
        form.add_field("file", speech, filename="speech.wav", content_type="audio/wav")
        async with session.post(
            f"{base}/api/v1/transcription", data=form, headers=headers
        ) as reply:
            assert reply.status == 202, await reply.text()
            transcription = (await reply.json())["task_id"]
        async with session.post(
            f"{base}/api/v1/summarization",
            json={"text": "Miners do the work. Validators score it. Rewards follow scores."},
            headers=headers,
        ) as reply:
            assert reply.status == 202
            summary = (await reply.json())["task_id"]

        for task_id in (tts, transcription, summary):
            document = await _wait_approved(session, base, task_id)
            assert document["status"] == "APPROVED", document

        async with session.get(f"{base}/api/v1/task/{tts}/result", headers=headers) as reply:
            assert reply.status == 200
            assert reply.content_type == "audio/wav"
            audio = await reply.read()
        assert audio[:4] == b"RIFF"
        async with session.get(
            f"{base}/api/v1/task/{transcription}/result", headers=headers
        ) as reply:
            text = (await reply.json())["result"]["text"]
        assert {"this", "is", "test"} & set(text.split())

    # The read models are Firestore's, the files Cloud Storage's, the log the one chosen.
    stored = await system.store.get_task(tts)
    assert stored is not None and stored.status == "APPROVED"
    assert type(system.store).__name__ == "FirestoreReadModelStore"
    assert type(system.blobs).__name__ == "GcsBlobStore"
    digest = stored.result["audio"]["digest"]  # type: ignore[index]
    assert await system.blobs.get(digest) == audio
    upload = await system.store.get_task(transcription)
    assert upload is not None and await system.blobs.exists(upload.blobs[0])
    assert (await audit_log(system.log)).clean
