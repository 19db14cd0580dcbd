"""``GET /api/v1/task/{id}/result?provisional=true``: the first answer, before it is scored.

The first response is a fact of the task's state (the first ``MinerResponded``), so this
answer is as reproducible as the approved one. Once the task is APPROVED the same request
answers the approved result in the same shape, marked ``"provisional": false`` and naming
the best-scored miner; the header ``Taskledger-Provisional`` says which of the two it is.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from aggregates import TaskState
from http_edge.auth import authenticate_client
from http_edge.bodies import path_task_id
from http_edge.context import EdgeContext
from http_edge.errors import ApiError
from http_edge.keys import context_of
from http_edge.lookup import client_task

PROVISIONAL_HEADER: Final = "Taskledger-Provisional"
_TRUE: Final = frozenset({"true", "1"})
_FALSE: Final = frozenset({"false", "0"})


def wants_provisional(request: web.Request) -> bool:
    """Whether ``?provisional=`` asks for the first response; 400 for a value that is not a bool."""
    raw = request.query.get("provisional")
    if raw is None or raw.lower() in _FALSE:
        return False
    if raw.lower() in _TRUE:
        return True
    raise ApiError(400, "invalid_query", "provisional must be true or false")


def answer_of(state: TaskState) -> tuple[dict[str, Any], str, bool] | None:
    """The best answer the task has: (result, miner hotkey, provisional), or None yet.

    The approved result once APPROVED, else the first response if any miner responded."""
    if state.status == "APPROVED" and state.result is not None and state.winner is not None:
        return state.result, state.winner, False
    first = state.first_response
    if first is not None:
        return first.result, first.hotkey, True
    return None


async def audio_of(context: EdgeContext, result: dict[str, Any]) -> bytes:
    """The WAV a tts result names; 404 when the blob is no longer kept."""
    audio = result.get("audio")
    digest = audio.get("digest") if isinstance(audio, dict) else None
    if not isinstance(digest, str) or not await context.blobs.exists(digest):
        raise ApiError(404, "result_deleted", "the audio of this task is no longer kept")
    return await context.blobs.get(digest)


async def provisional_result(request: web.Request) -> web.StreamResponse:
    context = context_of(request)
    client = authenticate_client(request)
    state = await client_task(context, client, path_task_id(request))
    answer = answer_of(state)
    if answer is None:
        raise ApiError(
            409,
            "result_unavailable",
            f"the task is {state.status}; no miner has responded yet",
        )
    result, hotkey, provisional = answer
    headers = {PROVISIONAL_HEADER: "true" if provisional else "false"}
    if state.task_type == "tts":
        headers["Content-Disposition"] = f'attachment; filename="{state.task_id}.wav"'
        return web.Response(
            body=await audio_of(context, result), content_type="audio/wav", headers=headers
        )
    body = {
        "task_id": state.task_id,
        "type": state.task_type,
        "result": result,
        "provisional": provisional,
        "miner_hotkey": hotkey,
    }
    return web.json_response(body, headers=headers)
