"""Held intakes on Kafka: an edge that runs no processor holds ``wait`` requests, and the
status topic (the feed of its SSE streams) wakes them, whichever process decides the task.

One ``taskledger serve --role processors`` and one ``--role edge``, as an operator runs
them, on a real broker; slow miners on loopback so that a first response takes a while.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from miners.client import MinerClient
from miners.identity import Identity
from taskledger.dev import free_port
from tests.support.fast_miners import FakeMiner, slow, tiny_wav
from tests.support.kafka_broker import KafkaBroker
from tests.support.serve_deployment import API_KEY, VALIDATOR, Deployment

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

AUTH = {"Authorization": f"Bearer {API_KEY}"}


async def held(
    session: aiohttp.ClientSession, edge: str, query: str, text: str
) -> tuple[int, dict[str, Any], float]:
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with session.post(
        f"{edge}/api/v1/summarization?{query}", json={"text": text}, headers=AUTH
    ) as response:
        return response.status, await response.json(), loop.time() - started


async def test_an_edge_without_processors_holds_wait_requests_woken_by_the_status_topic(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    prefix = f"answers-{uuid.uuid4().hex[:10]}"
    event_log = f"kafka://{kafka.bootstrap}?prefix={prefix}&partitions=2"
    hotkeys = [Identity.from_seed(bytes([40 + n]) * 32, "miner").ss58 for n in range(2)]
    fleet = [await FakeMiner(hotkey, slow(0.4)).start() for hotkey in hotkeys]
    miners_file = tmp_path / "miners.json"
    miners_file.write_text(
        json.dumps(
            [
                {"hotkey": m.hotkey, "url": m.info.url, "capabilities": sorted(m.capabilities)}
                for m in fleet
            ]
        )
    )
    deployment = Deployment(tmp_path, event_log, miners_file)
    deployment.env["TASKLEDGER_OPENAI_TIMEOUT"] = "20"
    edge = f"http://127.0.0.1:{free_port()}"
    validator = MinerClient(VALIDATOR, timeout_seconds=10, max_connections=4)
    try:
        deployment.start("processors")
        deployment.start("edge", int(edge.rsplit(":", 1)[1]))
        await deployment.healthy(edge)
        async with aiohttp.ClientSession() as session:
            # Several at once, each on its own task: all are held, all are woken.
            answers = await asyncio.wait_for(
                asyncio.gather(
                    *(
                        held(session, edge, "wait=30", f"text number {n} to sum up")
                        for n in range(6)
                    )
                ),
                60,
            )
            for status, document, _ in answers:
                assert status == 200, document
                assert document["first_response"] is not None
                assert document["first_response"]["miner_hotkey"] in hotkeys

            earlier = {document["task_id"] for _, document, _ in answers}
            approving = asyncio.create_task(
                held(session, edge, "wait=45&until=approved", "a text to approve")
            )
            task_id = None
            async with asyncio.timeout(30):
                while task_id is None:
                    async with session.get(f"{edge}/api/v1/tasks", headers=AUTH) as response:
                        tasks = (await response.json())["tasks"]
                    done = [
                        t for t in tasks if t["status"] == "DONE" and t["task_id"] not in earlier
                    ]
                    task_id = done[0]["task_id"] if done else None
                    await asyncio.sleep(0.1)
            assert not approving.done()
            document = next(t for t in tasks if t["task_id"] == task_id)
            reply = await validator.post_signed(
                edge,
                "/api/v1/validator/evaluation",
                {"task_id": task_id, "scores": {m["hotkey"]: 0.7 for m in document["miners"]}},
                receiver_ss58=deployment.proxy.ss58,
            )
            assert reply.status == 200, reply.json
            status, approved, _ = await asyncio.wait_for(approving, 30)
            assert (status, approved["task_id"], approved["status"]) == (200, task_id, "APPROVED")

        # The OpenAI endpoint on the same edge: held the same way, answered by the miners.
        client = openai.AsyncOpenAI(
            base_url=f"{edge}/v1", api_key=API_KEY, max_retries=0, timeout=60
        )
        raw = await client.audio.transcriptions.with_raw_response.create(
            model="whisper-1", file=("a.wav", tiny_wav(), "audio/wav")
        )
        assert raw.parse().text == "hello world"
        assert raw.headers["Taskledger-Provisional"] == "true"
        assert raw.headers["Taskledger-Task-Id"]
    except BaseException:
        print(deployment.logs())
        raise
    finally:
        await validator.close()
        deployment.stop()
        for miner in fleet:
            await miner.stop()
