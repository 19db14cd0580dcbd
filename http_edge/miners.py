"""A miner's late answer: ``POST /api/v1/miner/response``, btauth/1 signed by the miner."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from aggregates import MinerNotAssigned, RecordResponse, decide
from http_edge.auth import authenticate_peer, require_signed
from http_edge.bodies import is_json, parse_model, parse_task_id, read_bounded
from http_edge.errors import ApiError
from http_edge.forms import FORM, read_form
from http_edge.keys import context_of
from http_edge.peers import admit_peer, is_miner
from http_edge.schemas import MinerResponse
from miners.receipts import issue_receipt, response_event
from processors.results import InvalidResult, normalise_result, store_audio


# One answer for a stranger, an unknown task and a task this miner does not hold:
# none of them may learn whether a task exists.
def _not_assigned() -> ApiError:
    return ApiError(403, "not_assigned", "this hotkey is not assigned to the task")


async def miner_response(request: web.Request) -> web.Response:
    context = context_of(request)
    limits = context.limits
    require_signed(request)
    as_form = request.content_type == FORM
    if not as_form and not is_json(request.content_type):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send the answer as application/json, or as {FORM} for audio",
        )
    # Everything the headers show first; btauth/1 signs the body, so the signature
    # is verified once the body (bounded) is read.
    await admit_peer(request, context, is_miner, _not_assigned)
    audio: bytes | None = None
    raw: Any = None
    if as_form:
        # Parsed as it arrives, bounded as a whole, the first bad part ending it.
        fields, body = await read_form(
            request, files={"file": limits.max_upload_bytes}, texts={"task_id": 64}, keep_raw=True
        )
        hotkey = await authenticate_peer(request, context, body)
        if "file" not in fields or "task_id" not in fields:
            raise ApiError(400, "invalid_request", "the form needs fields 'task_id' and 'file'")
        task_id = parse_task_id(fields["task_id"].decode("ascii", errors="replace"))
        audio = fields["file"]
    else:
        body = await read_bounded(request, limits.max_json_bytes)
        hotkey = await authenticate_peer(request, context, body)
        answer = parse_model(MinerResponse, body)
        task_id, raw = parse_task_id(answer.task_id), answer.result
    state = await context.commands.load(task_id)
    if not state.exists:
        raise _not_assigned()
    now = context.clock()
    # Ask the decider first whether this miner may answer at all (403/409), so a
    # refused answer stores no audio and a wrongly shaped one is judged only if
    # it could have been accepted.
    try:
        decide(state, RecordResponse(hotkey, {}, 0.0, now))
    except MinerNotAssigned:
        raise _not_assigned() from None
    if audio is not None:
        if state.task_type != "tts":
            raise InvalidResult(f"a {state.task_type} result is JSON, not a file")
        result = await store_audio(audio, context.blobs)
    else:
        result = await normalise_result(state.task_type, raw, context.blobs)
    slot = state.slot(hotkey)
    assigned_at = slot.assigned_at if slot is not None else now
    latency_ms = max(0.0, (now - assigned_at).total_seconds() * 1000.0)
    outcome = await context.commands.execute(
        task_id, RecordResponse(hotkey, result, latency_ms, now), actor=hotkey
    )
    answer_body: dict[str, Any] = {"accepted": True, "status": outcome.state.status}
    logged = response_event(outcome.events, hotkey)
    if logged is not None:
        answer_body["receipt"] = issue_receipt(context.identity.signer, logged).to_document()
    return web.json_response(answer_body)
