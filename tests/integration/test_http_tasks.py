"""Following a task over real HTTP: status, events, the SSE stream, result, cancel, listing."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
import pytest

from events import GENESIS_HASH
from tests.support.edge_system import VALIDATOR, Edge, wav_bytes
from tests.support.error_body import assert_error

pytestmark = pytest.mark.slow

ENDPOINTS = ("status", "events", "stream", "result")


async def get(edge: Edge, path: str, client: str | None = "alice") -> tuple[int, Any]:
    headers = edge.auth(client) if client else {}
    async with edge.session.get(f"{edge.url}{path}", headers=headers) as response:
        return response.status, await response.json(content_type=None)


async def cancel(edge: Edge, task_id: str, client: str = "alice") -> tuple[int, Any]:
    async with edge.session.post(
        f"{edge.url}/api/v1/task/{task_id}/cancel", headers=edge.auth(client)
    ) as response:
        return response.status, await response.json()


async def approved_task(edge: Edge, task_type: str = "summarization", **submit: Any) -> str:
    task_id = await edge.done_task(task_type, **submit)
    reply = await edge.evaluate(task_id, {edge.miners[0].identity.ss58: 0.9})
    assert reply.status == 200, reply.json
    await edge.wait_for(task_id, "APPROVED")
    return task_id


# -- status -----------------------------------------------------------------------------


async def test_status_document_has_the_contract_shape(edge: Edge) -> None:
    task_id = (await edge.submit("tts", {"text": "hello", "priority": "high"}))["task_id"]
    await edge.miners[0].next_work()
    document = await edge.wait_for(task_id, "DISTRIBUTED")
    assert {
        "task_id",
        "type",
        "status",
        "priority",
        "created_at",
        "updated_at",
        "version",
        "progress",
        "miners",
        "result",
        "error",
    } <= set(document)
    assert document["type"] == "tts"
    assert document["priority"] == "high"
    assert document["version"] == 2
    assert document["progress"] == {"assigned": 1, "responded": 0, "failed": 0}
    assert document["miners"] == [
        {"hotkey": edge.miners[0].identity.ss58, "state": "assigned", "latency_ms": None}
    ]
    assert document["result"] is None and document["error"] is None


async def test_someone_elses_task_is_404_everywhere(edge: Edge) -> None:
    task_id = (await edge.submit())["task_id"]
    for endpoint in ENDPOINTS:
        status, body = await get(edge, f"/api/v1/task/{task_id}/{endpoint}", client="bob")
        assert status == 404, endpoint
        assert_error(body, "not_found")
    status, body = await cancel(edge, task_id, client="bob")
    assert status == 404
    status, body = await get(edge, "/api/v1/tasks", client="bob")
    assert body == {"tasks": []}
    assert (await edge.status(task_id))["status"] in ("PENDING", "DISTRIBUTED")


async def test_unknown_task_is_404_and_a_bad_id_is_400(edge: Edge) -> None:
    for endpoint in ENDPOINTS:
        status, body = await get(edge, f"/api/v1/task/{uuid.uuid4()}/{endpoint}")
        assert status == 404
        assert_error(body, "not_found")
        status, body = await get(edge, f"/api/v1/task/not-a-uuid/{endpoint}")
        assert status == 400
        assert_error(body, "invalid_task_id")
    status, body = await cancel(edge, "12345")
    assert status == 400


async def test_following_a_task_needs_a_key(edge: Edge) -> None:
    task_id = (await edge.submit())["task_id"]
    for endpoint in ENDPOINTS:
        status, body = await get(edge, f"/api/v1/task/{task_id}/{endpoint}", client=None)
        assert status == 401
        assert_error(body)


async def test_uppercase_task_id_finds_the_task(edge: Edge) -> None:
    task_id = (await edge.submit())["task_id"]
    status, body = await get(edge, f"/api/v1/task/{task_id.upper()}/status")
    assert status == 200
    assert body["task_id"] == task_id


# -- events -----------------------------------------------------------------------------


async def test_events_are_the_full_linked_history(edge: Edge) -> None:
    task_id = await approved_task(edge)
    status, body = await get(edge, f"/api/v1/task/{task_id}/events")
    assert status == 200
    assert body["task_id"] == task_id
    events = body["events"]
    assert [event["type"] for event in events] == [
        "TaskCreated",
        "TaskDistributed",
        "MinerResponded",
        "TaskCompleted",
        "TaskEvaluated",
        "TaskApproved",
    ]
    assert [event["sequence"] for event in events] == list(range(1, 7))
    previous = GENESIS_HASH
    for event in events:
        assert {
            "sequence",
            "type",
            "occurred_at",
            "data",
            "hash",
            "prev_hash",
            "actor",
            "event_id",
        } <= set(event)
        assert event["prev_hash"] == previous
        previous = event["hash"]
    assert events[0]["actor"] == "alice"
    assert events[2]["actor"] == edge.miners[0].identity.ss58
    assert events[4]["actor"] == VALIDATOR.ss58


# -- result -----------------------------------------------------------------------------


async def test_result_is_409_until_approved_then_json(edge: Edge) -> None:
    task_id = (await edge.submit())["task_id"]
    status, body = await get(edge, f"/api/v1/task/{task_id}/result")
    assert status == 409
    assert_error(body, "result_unavailable")
    await edge.miners[0].next_work()
    await edge.answer(edge.miners[0], task_id, {"summary": "the gist"})
    await edge.wait_for(task_id, "DONE")
    status, body = await get(edge, f"/api/v1/task/{task_id}/result")
    assert status == 409
    reply = await edge.evaluate(task_id, {edge.miners[0].identity.ss58: 1.0})
    assert reply.status == 200
    await edge.wait_for(task_id, "APPROVED")
    status, body = await get(edge, f"/api/v1/task/{task_id}/result")
    assert status == 200
    assert body == {"task_id": task_id, "type": "summarization", "result": {"summary": "the gist"}}
    document = await edge.status(task_id)
    assert document["result"] == {"summary": "the gist"}


async def test_tts_result_is_the_wav_itself(edge: Edge) -> None:
    task_id = await approved_task(edge, "tts", body={"text": "speak"})
    async with edge.session.get(
        f"{edge.url}/api/v1/task/{task_id}/result", headers=edge.auth()
    ) as response:
        assert response.status == 200
        assert response.content_type == "audio/wav"
        assert await response.read() == wav_bytes()


async def test_result_of_a_failed_task_is_409(edge: Edge) -> None:
    task_id = await edge.done_task()
    reply = await edge.evaluate(task_id, {edge.miners[0].identity.ss58: 0.0})
    assert reply.status == 200
    assert reply.json["status"] == "FAILED"
    await edge.wait_for(task_id, "FAILED")
    status, body = await get(edge, f"/api/v1/task/{task_id}/result")
    assert status == 409
    assert_error(body, "result_unavailable")


# -- cancel -----------------------------------------------------------------------------


async def test_cancel_from_distributed_then_409(edge: Edge) -> None:
    task_id = (await edge.submit())["task_id"]
    await edge.miners[0].next_work()
    await edge.wait_for(task_id, "DISTRIBUTED")
    status, body = await cancel(edge, task_id)
    assert status == 200
    assert body["status"] == "CANCELLED"
    assert body["error"]["code"] == "cancelled"
    status, body = await cancel(edge, task_id)
    assert status == 409
    assert_error(body, "invalid_state")
    # The miner's late answer no longer counts.
    reply = await edge.answer(edge.miners[0], task_id)
    assert reply.status == 409


@pytest.mark.edge(miners=())
async def test_cancel_from_pending(edge: Edge) -> None:
    task_id = (await edge.submit())["task_id"]
    status, body = await cancel(edge, task_id)
    assert status == 200
    assert body["status"] == "CANCELLED"
    assert body["version"] == 2


async def test_cancel_after_approval_is_409(edge: Edge) -> None:
    task_id = await approved_task(edge)
    status, body = await cancel(edge, task_id)
    assert status == 409
    assert_error(body, "invalid_state")


# -- listing ----------------------------------------------------------------------------


async def test_tasks_lists_only_the_callers_own(edge: Edge) -> None:
    mine = {(await edge.submit())["task_id"] for _ in range(3)}
    theirs = (await edge.submit(client="bob"))["task_id"]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while True:
        status, body = await get(edge, "/api/v1/tasks?limit=10")
        assert status == 200
        listed = {task["task_id"] for task in body["tasks"]}
        if listed == mine or loop.time() > deadline:
            break
        await asyncio.sleep(0.05)
    assert listed == mine
    assert theirs not in listed
    status, body = await get(edge, "/api/v1/tasks?limit=2")
    assert len(body["tasks"]) == 2
    for bad in ("0", "501", "ten"):
        status, body = await get(edge, f"/api/v1/tasks?limit={bad}")
        assert status == 400
        assert_error(body, "invalid_query")


# -- the status stream -------------------------------------------------------------------


async def read_stream(edge: Edge, task_id: str, timeout: float = 15.0) -> list[dict[str, Any]]:
    """Every status event until the server ends the stream."""
    documents: list[dict[str, Any]] = []
    async with edge.session.get(
        f"{edge.url}/api/v1/task/{task_id}/stream", headers=edge.auth()
    ) as response:
        assert response.status == 200
        assert response.content_type == "text/event-stream"
        async with asyncio.timeout(timeout):
            event: dict[str, str] = {}
            async for raw in response.content:
                line = raw.decode().rstrip("\n")
                if not line:
                    if event.get("event") == "status":
                        documents.append(orjson.loads(event["data"]))
                    event = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(": ")
                    event[name] = value
    return documents


async def test_stream_delivers_each_status_up_to_the_terminal_one(edge: Edge) -> None:
    task_id = (await edge.submit())["task_id"]
    reader = asyncio.create_task(read_stream(edge, task_id))
    work = await edge.miners[0].next_work()
    await asyncio.sleep(0.3)
    assert (await edge.answer(edge.miners[0], work["task_id"])).status == 200
    await edge.wait_for(task_id, "DONE")
    await asyncio.sleep(0.3)
    assert (await edge.evaluate(task_id, {edge.miners[0].identity.ss58: 1.0})).status == 200
    documents = await reader
    statuses = [document["status"] for document in documents]
    assert statuses[-1] == "APPROVED"
    assert "DONE" in statuses
    assert statuses == sorted(statuses, key=["PENDING", "DISTRIBUTED", "DONE", "APPROVED"].index)
    versions = [document["version"] for document in documents]
    assert versions == sorted(set(versions))
    assert documents[-1]["result"] is not None


async def test_stream_of_a_finished_task_sends_it_once_and_ends(edge: Edge) -> None:
    task_id = (await edge.submit())["task_id"]
    await cancel(edge, task_id)
    await edge.wait_for(task_id, "CANCELLED")
    documents = await read_stream(edge, task_id, timeout=5)
    assert [document["status"] for document in documents] == ["CANCELLED"]


@pytest.mark.edge(miners=(), stream_heartbeat_seconds=0.2)
async def test_stream_sends_heartbeats(edge: Edge) -> None:
    task_id = (await edge.submit())["task_id"]
    async with edge.session.get(
        f"{edge.url}/api/v1/task/{task_id}/stream", headers=edge.auth()
    ) as response:
        lines = []
        async with asyncio.timeout(5):
            async for raw in response.content:
                lines.append(raw.decode())
                if raw.startswith(b":"):
                    break
        assert any(line.startswith(": keep-alive") for line in lines)
        assert any(line.startswith("event: status") for line in lines)
