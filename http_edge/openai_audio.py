"""OpenAI-compatible audio: ``POST /v1/audio/transcriptions`` and ``POST /v1/audio/speech``.

For clients written against the OpenAI SDKs. Each request is an ordinary task, created
through the same intake as ``/api/v1/transcription`` and ``/api/v1/tts`` (same keys, rate
limits, Idempotency-Key, billing), its id in ``Taskledger-Task-Id``; the request is then
held like an intake with ``wait`` until the task has its first response (or, with
``TASKLEDGER_OPENAI_ANSWER=approved``, its approved result), at most
``TASKLEDGER_OPENAI_TIMEOUT`` seconds, past which it is 504 naming the task.

Errors carry the contract's ``code`` and ``message`` and OpenAI's ``type``, so OpenAI's
clients raise their usual exceptions (AuthenticationError, RateLimitError, ...).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from http_edge import intake
from http_edge.auth import authenticate_client
from http_edge.bodies import parse_model, read_json_body
from http_edge.errors import ApiError, as_api_error
from http_edge.keys import context_of
from http_edge.provisional import PROVISIONAL_HEADER, answer_of, audio_of
from http_edge.waiting import HOLDS, watch

log = logging.getLogger(__name__)

TASK_ID_HEADER: Final = "Taskledger-Task-Id"
# OpenAI's own voice names mean nothing to a subnet's miners: recorded, the miner's default used.
OpenAIVoice = Literal[
    "alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse"
]
_TYPES: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
}


class _OpenAIRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class SpeechRequest(_OpenAIRequest):
    model: str = Field(min_length=1, max_length=200)
    input: str = Field(min_length=1, max_length=5000, pattern=r"\S")  # not blank
    # OpenAI's own voice names, as its API takes them; the miners' voices are for /api/v1/tts.
    voice: OpenAIVoice | None = None
    response_format: Literal["wav"] | None = None
    speed: float | None = Field(default=None, ge=0.25, le=4.0)  # accepted, not used
    instructions: str | None = Field(default=None, max_length=4096)  # accepted, not used


class TranscriptionFields(_OpenAIRequest):
    """The form's text fields (their byte limits: ``_TEXTS``)."""

    model: str = Field(min_length=1, max_length=200)
    language: str = Field(
        default="en", min_length=2, max_length=35, pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*$"
    )
    response_format: Literal["json", "text"] = "json"
    prompt: str | None = Field(default=None, max_length=4096)  # accepted, not used
    temperature: str | None = Field(default=None, max_length=32)  # accepted, not used


# Bytes each text field of the transcription form may take: 4 a character of its
# TranscriptionFields length, as UTF-8 may need.
_TEXTS: Final = {
    "model": 4 * 200,
    "language": 4 * 35,
    "response_format": 64,
    "prompt": 4 * 4096,
    "temperature": 4 * 32,
}


def openai_error(status: int, code: str, message: str, headers: Any = None) -> web.Response:
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    body = {"error": {"code": code, "message": message, "type": kind}}
    return web.json_response(body, status=status, headers=headers)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _openai_errors(handler: Handler) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as error:
            if error.status < 400:
                raise
            return openai_error(error.status, "bad_request", error.reason)
        except Exception as error:
            known = as_api_error(error)
            if known is None:
                log.exception("unhandled error in %s %s", request.method, request.path)
                return openai_error(500, "internal_error", "internal server error")
            response = openai_error(known.status, known.code, known.message, known.headers)
            if known.status == 413:
                response.force_close()
            return response

    return handle


def _task_id(response: web.StreamResponse) -> str:
    return response.headers["Location"].split("/")[4]


async def _answer(request: web.Request, task_id: str) -> tuple[dict[str, Any], bool]:
    """Hold the request until the task has the answer the server is set to give."""
    context = context_of(request)
    until = context.openai_answer
    document = await watch(
        context, request.app[HOLDS], task_id, until, context.openai_timeout_seconds
    )
    if document is None:
        raise ApiError(
            504,
            "timeout",
            f"task {task_id} has no answer yet; follow it at /api/v1/task/{task_id}/status",
            headers={TASK_ID_HEADER: task_id},
        )
    state = await context.commands.load(task_id)  # the log: exact, whatever the read model says
    answer = answer_of(state)
    if answer is None or (until == "approved" and answer[2]):
        reason = (state.error or {}).get("message", f"the task is {state.status}")
        raise ApiError(
            502,
            "task_failed",
            f"task {task_id} gave no answer: {reason}",
            headers={TASK_ID_HEADER: task_id},
        )
    result, _, provisional = answer
    return result, provisional


def _headers(task_id: str, provisional: bool) -> dict[str, str]:
    return {TASK_ID_HEADER: task_id, PROVISIONAL_HEADER: "true" if provisional else "false"}


async def _transcriptions(request: web.Request) -> web.StreamResponse:
    client = authenticate_client(request)
    key = intake.idempotency_key(request)
    audio, media_type, form = await intake.read_audio_form(request, TranscriptionFields, _TEXTS)
    fields = {"language": form.language, "model": form.model}
    accepted = await intake.submit_audio(request, client, key, "normal", audio, media_type, fields)
    task_id = _task_id(accepted)
    result, provisional = await _answer(request, task_id)
    headers = _headers(task_id, provisional)
    text = str(result.get("text", ""))
    if form.response_format == "text":
        return web.Response(text=text, content_type="text/plain", headers=headers)
    return web.json_response({"text": text}, headers=headers)


async def _speech(request: web.Request) -> web.StreamResponse:
    context = context_of(request)
    client = authenticate_client(request)
    key = intake.idempotency_key(request)
    job = parse_model(SpeechRequest, await read_json_body(request, context.limits.max_json_bytes))
    input: dict[str, Any] = {"text": job.input, "model": job.model}
    if job.voice is not None:
        input["openai_voice"] = job.voice  # recorded; the miner speaks in its default voice
    accepted = await intake._submit(request, client, key, "tts", "normal", input)
    task_id = _task_id(accepted)
    result, provisional = await _answer(request, task_id)
    return web.Response(
        body=await audio_of(context, result),
        content_type="audio/wav",
        headers=_headers(task_id, provisional),
    )


transcriptions = _openai_errors(_transcriptions)
speech = _openai_errors(_speech)


def add_openai_routes(app: web.Application) -> None:
    app.router.add_post("/v1/audio/transcriptions", transcriptions)
    app.router.add_post("/v1/audio/speech", speech)
