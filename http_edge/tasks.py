"""Following a task: its status, its history, its result; cancelling it; listing them."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from aggregates import CancelTask
from events import Envelope, TaskCreated, payload_of
from http_edge.auth import authenticate_client
from http_edge.bodies import path_task_id, query_int
from http_edge.errors import ApiError
from http_edge.keys import context_of
from http_edge.lookup import client_task, not_found
from http_edge.provisional import provisional_result, wants_provisional
from projections import status_document


async def status(request: web.Request) -> web.Response:
    client = authenticate_client(request)
    state = await client_task(context_of(request), client, path_task_id(request))
    return web.json_response(status_document(state))


def event_document(envelope: Envelope) -> dict[str, Any]:
    return {
        "sequence": envelope.sequence,
        "type": envelope.type,
        "version": envelope.version,
        "occurred_at": envelope.occurred_at,
        "data": envelope.data,
        "hash": envelope.hash,
        "prev_hash": envelope.prev_hash,
        "actor": envelope.actor,
        "event_id": envelope.event_id,
        "causation_id": envelope.causation_id,
        "correlation_id": envelope.correlation_id,
    }


async def events(request: web.Request) -> web.Response:
    client = authenticate_client(request)
    task_id = path_task_id(request)
    stream = await context_of(request).log.read_stream(task_id)
    created = payload_of(stream[0]) if stream else None
    if not isinstance(created, TaskCreated) or created.client != client:
        raise not_found(task_id)
    return web.json_response(
        {"task_id": task_id, "events": [event_document(envelope) for envelope in stream]}
    )


async def result(request: web.Request) -> web.StreamResponse:
    if wants_provisional(request):
        return await provisional_result(request)
    context = context_of(request)
    client = authenticate_client(request)
    state = await client_task(context, client, path_task_id(request))
    if state.status != "APPROVED" or state.result is None:
        raise ApiError(
            409, "result_unavailable", f"the task is {state.status}; a result comes with APPROVED"
        )
    if state.task_type != "tts":
        return web.json_response(
            {"task_id": state.task_id, "type": state.task_type, "result": state.result}
        )
    audio = state.result.get("audio")
    digest = audio.get("digest") if isinstance(audio, dict) else None
    if not isinstance(digest, str) or not await context.blobs.exists(digest):
        raise ApiError(404, "result_deleted", "the audio of this task is no longer kept")
    return web.Response(
        body=await context.blobs.get(digest),
        content_type="audio/wav",
        headers={"Content-Disposition": f'attachment; filename="{state.task_id}.wav"'},
    )


async def cancel(request: web.Request) -> web.Response:
    context = context_of(request)
    client = authenticate_client(request)
    state = await client_task(context, client, path_task_id(request))
    outcome = await context.commands.execute(
        state.task_id, CancelTask("cancelled by the client", context.clock()), actor=client
    )
    return web.json_response(status_document(outcome.state))


async def task_list(request: web.Request) -> web.Response:
    client = authenticate_client(request)
    limit = query_int(request, "limit", default=50, low=1, high=500)
    states = await context_of(request).store.tasks_for_client(client, limit)
    return web.json_response({"tasks": [status_document(state) for state in states]})
