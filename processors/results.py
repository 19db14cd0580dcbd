"""Checking a miner's result against the shape its task type promises."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from blobs.port import BlobStore

MAX_TEXT_RESULT = 200_000


class InvalidResult(Exception):
    """The miner's result does not have the shape of its task type."""


async def normalise_result(task_type: str, raw: Any, blobs: BlobStore) -> dict[str, Any]:
    """The result as it is recorded: text as given, audio stored and referenced by digest."""
    if not isinstance(raw, dict):
        raise InvalidResult("a result is a JSON object")
    if task_type == "transcription":
        return {"text": _text(raw, "text")}
    if task_type == "summarization":
        return {"summary": _text(raw, "summary")}
    if task_type == "tts":
        encoded = raw.get("audio_wav_base64")
        if not isinstance(encoded, str):
            raise InvalidResult("a tts result carries the WAV as audio_wav_base64")
        try:
            audio = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidResult("audio_wav_base64 is not base64") from None
        return await store_audio(audio, blobs)
    raise InvalidResult(f"unknown task type {task_type}")


async def store_audio(audio: bytes, blobs: BlobStore) -> dict[str, Any]:
    if not is_wav(audio):
        raise InvalidResult("a tts result must be a WAV file")
    ref = await blobs.put(audio, "audio/wav")
    return {"audio": {"digest": ref.digest, "content_type": "audio/wav", "size": ref.size}}


def is_wav(data: bytes) -> bool:
    return len(data) > 44 and data[:4] == b"RIFF" and data[8:12] == b"WAVE"


def _text(raw: dict[str, Any], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str):
        raise InvalidResult(f"the result needs a string field {key!r}")
    if len(value) > MAX_TEXT_RESULT:
        raise InvalidResult(f"{key} is longer than {MAX_TEXT_RESULT} characters")
    return value
