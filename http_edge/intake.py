"""Intake: a client submits a transcription, tts or summarization job.

Everything is checked before anything is written: a refused request leaves no
event and, where it can be known in advance, no stored file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from aggregates import TaskState
from blobs.port import digest_of
from blobs.sniff import sniff_audio
from events import Priority, TaskType, format_time
from http_edge.auth import authenticate_client
from http_edge.bodies import invalid_input, parse_model, read_json_body, refuse_declared_oversize
from http_edge.errors import ApiError, error_response
from http_edge.forms import read_form, require_form
from http_edge.keys import context_of
from http_edge.schemas import SummarizationRequest, TranscriptionForm, TtsRequest
from processors.intake import QuotaExceeded

# Room for the form's boundaries, part headers and small text fields beside the file.
FORM_OVERHEAD: Final = 64 * 1024
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
REPLAYED_HEADER: Final = "Idempotent-Replayed"
_KEY: Final = re.compile(r"[\x21-\x7e][\x20-\x7e]{0,254}")
FormModel = TypeVar("FormModel", bound=BaseModel)


def task_links(task_id: str) -> dict[str, str]:
    base = f"/api/v1/task/{task_id}"
    return {
        "status": f"{base}/status",
        "events": f"{base}/events",
        "stream": f"{base}/stream",
        "result": f"{base}/result",
    }


def idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    if _KEY.fullmatch(key) is None:
        raise ApiError(
            400, "invalid_idempotency_key", "Idempotency-Key is 1 to 255 printable ASCII characters"
        )
    return key


def _accepted(state: TaskState, *, replayed: bool) -> web.Response:
    body = {
        "task_id": state.task_id,
        "type": state.task_type,
        "status": state.status,
        "created_at": format_time(state.created_at) if state.created_at else None,
        "links": task_links(state.task_id),
    }
    headers = {"Location": task_links(state.task_id)["status"]}
    if replayed:
        headers[REPLAYED_HEADER] = "true"
    return web.json_response(body, status=202, headers=headers)


def _replay(
    state: TaskState, task_type: TaskType, priority: Priority, input: dict[str, Any]
) -> web.Response:
    """The first task again if the repeat asks for the same job; a key reused otherwise is 409."""
    if (state.task_type, state.priority, state.input) != (task_type, priority, input):
        raise ApiError(
            409,
            "idempotency_key_reused",
            "this Idempotency-Key was used for a different request",
        )
    return _accepted(state, replayed=True)


async def _submit(
    request: web.Request,
    client: str,
    key: str | None,
    task_type: TaskType,
    priority: Priority,
    input: dict[str, Any],
    blobs: tuple[str, ...] = (),
) -> web.Response:
    state, created = await context_of(request).intake.submit(
        client=client,
        task_type=task_type,
        priority=priority,
        input=input,
        idempotency_key=key,
        blobs=blobs,
    )
    if not created:
        return _replay(state, task_type, priority, input)
    return _accepted(state, replayed=False)


async def read_audio_form(
    request: web.Request, form: type[FormModel], texts: Mapping[str, int]
) -> tuple[bytes, str, FormModel]:
    """An upload form's audio (field ``file``), its media type and its other fields.

    ``texts`` maps the text fields to their byte limits. A form without audio is a
    400, fields that are not UTF-8 or do not validate as ``form`` a 400, and a file
    that is not audio a 415.
    """
    limit = context_of(request).limits.max_upload_bytes
    require_form(request)
    refuse_declared_oversize(request, limit + FORM_OVERHEAD)
    fields, _ = await read_form(request, files={"file": limit}, texts=texts)
    audio = fields.pop("file", None)
    if audio is None:
        raise ApiError(400, "invalid_request", "the form needs the audio as field 'file'")
    try:
        parsed = form.model_validate(
            {name: value.decode("utf-8") for name, value in fields.items()}
        )
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_request", "form fields must be UTF-8 text") from None
    except ValidationError as error:
        raise invalid_input(error) from None
    media_type = sniff_audio(audio)
    if media_type is None:
        raise ApiError(415, "unsupported_media_type", "the file is not WAV, FLAC, MP3 or OGG audio")
    return audio, media_type, parsed


async def submit_audio(
    request: web.Request,
    client: str,
    key: str | None,
    priority: Priority,
    audio: bytes,
    media_type: str,
    fields: Mapping[str, Any],
) -> web.Response:
    """A transcription task for the audio: its file stored only when a task is created.

    A repeat of an Idempotency-Key answers with its task, and a key past its quota
    is refused, before the file is stored, so a refusal leaves no file behind.
    """
    context = context_of(request)
    digest = digest_of(audio)
    input = {"blob": digest, "content_type": media_type, "size": len(audio), **fields}
    if key is not None:
        existing = await context.commands.load(context.intake.task_id_for(client, key))
        if existing.exists:
            return _replay(existing, "transcription", priority, input)
    if context.client_keys is not None and await context.client_keys.exhausted(client):
        raise QuotaExceeded(client)
    await context.blobs.put(audio, media_type)
    return await _submit(request, client, key, "transcription", priority, input, blobs=(digest,))


async def transcription(request: web.Request) -> web.Response:
    client = authenticate_client(request)
    key = idempotency_key(request)
    texts = {"language": 64, "priority": 32}
    audio, media_type, form = await read_audio_form(request, TranscriptionForm, texts)
    fields = {"language": form.language}
    return await submit_audio(request, client, key, form.priority, audio, media_type, fields)


async def tts(request: web.Request) -> web.Response:
    context = context_of(request)
    client = authenticate_client(request)
    key = idempotency_key(request)
    job = parse_model(TtsRequest, await read_json_body(request, context.limits.max_json_bytes))
    input: dict[str, Any] = {"text": job.text}
    if job.voice is not None:
        input["voice"] = job.voice
    return await _submit(request, client, key, "tts", job.priority, input)


async def summarization(request: web.Request) -> web.Response:
    context = context_of(request)
    client = authenticate_client(request)
    key = idempotency_key(request)
    job = parse_model(
        SummarizationRequest, await read_json_body(request, context.limits.max_json_bytes)
    )
    input: dict[str, Any] = {"text": job.text}
    if job.max_words is not None:
        input["max_words"] = job.max_words
    return await _submit(request, client, key, "summarization", job.priority, input)


async def expect_upload(request: web.Request) -> web.StreamResponse | None:
    """``Expect: 100-continue``: refuse an upload too large by its Content-Length before
    the client sends it; otherwise invite the body."""
    limit = context_of(request).limits.max_upload_bytes + FORM_OVERHEAD
    try:
        refuse_declared_oversize(request, limit)
    except ApiError as refused:
        return refused.response()
    expect = request.headers.get("Expect", "")
    if expect.lower() != "100-continue":
        return error_response(417, "expectation_failed", f"unknown Expect: {expect}")
    if request.version >= (1, 1):
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0
    return None
