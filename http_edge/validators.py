"""The validators' side: DONE tasks to score, their scores, and the resulting weights."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from aggregates import TaskState
from http_edge.auth import authenticate_validator, require_signed
from http_edge.bodies import parse_model, parse_task_id, query_int, read_json_body
from http_edge.context import EdgeContext
from http_edge.errors import ApiError
from http_edge.inputs import link_for
from http_edge.keys import context_of
from http_edge.peers import admit_peer, is_validator
from http_edge.schemas import Evaluation
from projections import status_document
from projections.task_blobs import result_blobs


def _waiting_task(context: EdgeContext, state: TaskState, validator: str) -> dict[str, Any]:
    def link(digest: str) -> str:
        return link_for(context, digest, state.task_id, validator)

    responses = []
    for slot in state.responded():
        audio = result_blobs(slot.result)
        responses.append(
            {
                "miner_hotkey": slot.hotkey,
                "result": slot.result,
                "latency_ms": slot.latency_ms,
                "result_url": link(audio[0]) if audio else None,
            }
        )
    return {
        "task_id": state.task_id,
        "type": state.task_type,
        "input": state.input,
        "input_url": link(state.blobs[0]) if state.blobs else None,
        "responses": responses,
    }


def _not_a_validator() -> ApiError:
    return ApiError(403, "not_a_validator", "this hotkey is not an allowed validator")


async def _admit(request: web.Request, context: EdgeContext) -> None:
    """Headers, membership and rate before the body; the signature is verified after it."""
    require_signed(request)
    await admit_peer(request, context, is_validator, _not_a_validator)


async def waiting_tasks(request: web.Request) -> web.Response:
    context = context_of(request)
    await _admit(request, context)
    validator = await authenticate_validator(request, context, b"")
    limit = query_int(request, "limit", default=20, low=1, high=500)
    states = await context.evaluations.waiting(limit)
    return web.json_response(
        {"tasks": [_waiting_task(context, state, validator) for state in states]}
    )


async def evaluation(request: web.Request) -> web.Response:
    context = context_of(request)
    await _admit(request, context)
    body = await read_json_body(request, context.limits.max_json_bytes)
    validator = await authenticate_validator(request, context, body)
    scored = parse_model(Evaluation, body)
    state = await context.evaluations.evaluate(
        validator, parse_task_id(scored.task_id), dict(scored.scores)
    )
    return web.json_response(status_document(state))


async def weights(request: web.Request) -> web.Response:
    context = context_of(request)
    await _admit(request, context)
    await authenticate_validator(request, context, b"")
    return web.json_response({"weights": await context.evaluations.weights()})
