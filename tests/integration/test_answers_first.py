"""Answers first over real HTTP: the first response in the SSE stream, the provisional
result, and intakes held with ``wait``/``until`` until the task has its answer."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest

from tests.support.edge_system import Edge

# Two manual miners per task: one answer gives a first response but not DONE.
pytestmark = [pytest.mark.slow, pytest.mark.edge(miners=("manual", "manual"), miners_per_task=2)]


async def provisional(edge: Edge, task_id: str) -> aiohttp.ClientResponse:
    response = await edge.session.get(
        f"{edge.url}/api/v1/task/{task_id}/result?provisional=true", headers=edge.auth()
    )
    await response.read()
    return response


async def until_first_response(
    edge: Edge, task_id: str, opened: asyncio.Event
) -> list[dict[str, Any]]:
    """The status documents the SSE stream sends, up to the first with a first response."""
    documents: list[dict[str, Any]] = []
    async with edge.session.get(
        f"{edge.url}/api/v1/task/{task_id}/stream", headers=edge.auth()
    ) as response:
        async for raw in response.content:
            if raw.startswith(b"data: "):
                documents.append(orjson.loads(raw[6:]))
                opened.set()
                if documents[-1]["first_response"] is not None:
                    break
    return documents


async def test_first_response_streams_and_is_the_provisional_result_until_approval(
    edge: Edge,
) -> None:
    first, second = edge.miners
    task_id = (await edge.submit())["task_id"]
    await first.next_work()
    await second.next_work()
    early = await provisional(edge, task_id)
    assert early.status == 409
    assert (await early.json())["error"]["code"] == "result_unavailable"

    opened = asyncio.Event()
    reader = asyncio.create_task(until_first_response(edge, task_id, opened))
    await asyncio.wait_for(opened.wait(), 10)
    assert (await edge.answer(second, task_id, {"summary": "fast and first"})).status == 200
    documents = await asyncio.wait_for(reader, 10)
    assert len(documents) >= 2 and documents[0]["first_response"] is None
    streamed = documents[-1]["first_response"]
    assert documents[-1]["status"] == "DISTRIBUTED"  # the other miner has not answered
    assert streamed["miner_hotkey"] == second.identity.ss58
    assert streamed["result"] == {"summary": "fast and first"}
    assert isinstance(streamed["latency_ms"], float) and streamed["received_at"]

    answer = await provisional(edge, task_id)
    assert answer.status == 200
    assert answer.headers["Taskledger-Provisional"] == "true"
    assert await answer.json() == {
        "task_id": task_id,
        "type": "summarization",
        "result": {"summary": "fast and first"},
        "provisional": True,
        "miner_hotkey": second.identity.ss58,
    }
    plain = await edge.session.get(f"{edge.url}/api/v1/task/{task_id}/result", headers=edge.auth())
    assert plain.status == 409  # the approved result is never the provisional one

    assert (await edge.answer(first, task_id, {"summary": "slow but better"})).status == 200
    await edge.wait_for(task_id, "DONE")
    scores = {first.identity.ss58: 0.9, second.identity.ss58: 0.2}
    assert (await edge.evaluate(task_id, scores)).status == 200
    status = await edge.wait_for(task_id, "APPROVED")
    assert status["first_response"]["miner_hotkey"] == second.identity.ss58  # it stays
    approved = await provisional(edge, task_id)
    assert approved.status == 200
    assert approved.headers["Taskledger-Provisional"] == "false"
    body = await approved.json()
    assert body["provisional"] is False
    assert body["miner_hotkey"] == first.identity.ss58
    assert body["result"] == {"summary": "slow but better"}


async def test_provisional_tts_is_the_wav_itself(edge: Edge) -> None:
    task_id = (await edge.submit("tts", {"text": "say it"}))["task_id"]
    await edge.miners[0].next_work()
    assert (await edge.answer(edge.miners[0], task_id)).status == 200
    async with asyncio.timeout(10):
        while (await edge.status(task_id))["first_response"] is None:
            await asyncio.sleep(0.05)
    document = await edge.status(task_id)
    assert document["first_response"]["result"] == {
        "audio": f"/api/v1/task/{task_id}/result?provisional=true",
        "content_type": "audio/wav",
    }
    response = await provisional(edge, task_id)
    assert response.status == 200
    assert response.content_type == "audio/wav"
    assert response.headers["Taskledger-Provisional"] == "true"
    assert (await response.read())[:4] == b"RIFF"


async def test_a_bad_provisional_value_is_400(edge: Edge) -> None:
    task_id = (await edge.submit())["task_id"]
    response = await edge.session.get(
        f"{edge.url}/api/v1/task/{task_id}/result?provisional=maybe", headers=edge.auth()
    )
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "invalid_query"


# -- waiting intakes ---------------------------------------------------------------------


async def post_waiting(
    edge: Edge, query: str, body: dict[str, Any] | None = None, **headers: str
) -> tuple[int, dict[str, Any], aiohttp.typedefs.LooseHeaders]:
    async with edge.session.post(
        f"{edge.url}/api/v1/summarization?{query}",
        json=body or {"text": "a text worth summarising"},
        headers={**edge.auth(), **headers},
    ) as response:
        return response.status, await response.json(), response.headers


async def test_wait_holds_the_intake_until_the_first_response(edge: Edge) -> None:
    held = asyncio.create_task(post_waiting(edge, "wait=20"))
    work = await edge.miners[0].next_work()
    await edge.miners[1].next_work()
    await asyncio.sleep(0.3)
    assert not held.done()
    assert (await edge.answer(edge.miners[0], work["task_id"])).status == 200
    status, document, headers = await asyncio.wait_for(held, 10)
    assert status == 200
    assert document["task_id"] == work["task_id"]
    assert document["first_response"]["miner_hotkey"] == edge.miners[0].identity.ss58
    assert headers["Location"] == f"/api/v1/task/{work['task_id']}/status"


async def test_wait_until_approved_holds_past_the_first_response(edge: Edge) -> None:
    held = asyncio.create_task(post_waiting(edge, "wait=30&until=approved"))
    task_id = (await edge.miners[0].next_work())["task_id"]
    await edge.miners[1].next_work()
    for miner in edge.miners:
        assert (await edge.answer(miner, task_id)).status == 200
    await edge.wait_for(task_id, "DONE")
    await asyncio.sleep(0.3)
    assert not held.done()
    scores = {miner.identity.ss58: 0.5 for miner in edge.miners}
    assert (await edge.evaluate(task_id, scores)).status == 200
    status, document, _ = await asyncio.wait_for(held, 10)
    assert (status, document["status"]) == (200, "APPROVED")
    assert document["result"] is not None


async def test_wait_times_out_to_the_202_and_a_terminal_status_releases(edge: Edge) -> None:
    status, body, _ = await post_waiting(edge, "wait=0.5")
    assert status == 202 and body["status"] == "PENDING"
    for miner in edge.miners:
        assert (await miner.next_work())["task_id"] == body["task_id"]
    held = asyncio.create_task(post_waiting(edge, "wait=30&until=approved"))
    task_id = (await edge.miners[0].next_work())["task_id"]
    await asyncio.sleep(0.2)
    assert not held.done()
    cancelled = await edge.session.post(
        f"{edge.url}/api/v1/task/{task_id}/cancel", headers=edge.auth()
    )
    assert cancelled.status == 200
    status, document, _ = await asyncio.wait_for(held, 10)
    assert (status, document["task_id"], document["status"]) == (200, task_id, "CANCELLED")


async def test_a_repeat_with_the_same_key_waits_for_the_same_task(edge: Edge) -> None:
    key = {"Idempotency-Key": "wait-repeat-1"}
    status, first, _ = await post_waiting(edge, "wait=0", **key)
    assert status == 202
    work = await edge.miners[0].next_work()
    assert (await edge.answer(edge.miners[0], work["task_id"])).status == 200
    status, again, headers = await post_waiting(edge, "wait=10", **key)
    assert status == 200
    assert again["task_id"] == first["task_id"]
    assert again["first_response"] is not None
    assert headers["Idempotent-Replayed"] == "true"


@pytest.mark.parametrize(
    "query", ["wait=61", "wait=-1", "wait=soon", "wait=nan", "wait=inf", "until=done"]
)
async def test_bad_wait_or_until_is_400_and_creates_nothing(edge: Edge, query: str) -> None:
    before = await edge.event_count()
    status, body, _ = await post_waiting(edge, query)
    assert status == 400
    assert body["error"]["code"] == "invalid_query"
    assert await edge.event_count() == before
