"""Intake over real HTTP: the three job endpoints, their refusals, idempotency, limits."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.edge_system import API_KEYS, Edge, wav_bytes
from tests.support.error_body import assert_error

UPLOAD_LIMIT = 64 * 1024

pytestmark = [pytest.mark.slow, pytest.mark.edge(max_upload_bytes=UPLOAD_LIMIT)]


def audio_form(audio: bytes, **fields: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("file", audio, filename="speech.bin", content_type="application/octet-stream")
    for name, value in fields.items():
        form.add_field(name, value)
    return form


async def post(
    edge: Edge, path: str, *, client: str | None = "alice", **kwargs: Any
) -> tuple[int, dict[str, Any], Any]:
    headers = {**(edge.auth(client) if client else {}), **kwargs.pop("headers", {})}
    async with edge.session.post(f"{edge.url}{path}", headers=headers, **kwargs) as response:
        body = await response.json(content_type=None)
        return response.status, dict(response.headers), body


def blob_files(edge: Edge) -> list[Path]:
    root = edge.data_dir / "blobs"
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []


# -- accepted ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task_type", "body"),
    [
        ("tts", {"text": "say this", "voice": "en-us", "priority": "high"}),
        ("tts", {"text": "x"}),
        ("summarization", {"text": "long text " * 10, "max_words": 10}),
        ("summarization", {"text": "t" * 100_000, "priority": "critical"}),
    ],
)
async def test_json_intake_answers_202_with_location_and_links(
    edge: Edge, task_type: str, body: dict[str, Any]
) -> None:
    status, headers, accepted = await post(edge, f"/api/v1/{task_type}", json=body)
    assert status == 202
    task_id = accepted["task_id"]
    uuid.UUID(task_id)
    assert headers["Location"] == f"/api/v1/task/{task_id}/status"
    assert accepted["type"] == task_type
    assert accepted["status"] == "PENDING"
    assert accepted["created_at"].endswith("Z") or "+00:00" in accepted["created_at"]
    base = f"/api/v1/task/{task_id}"
    assert accepted["links"] == {
        "status": f"{base}/status",
        "events": f"{base}/events",
        "stream": f"{base}/stream",
        "result": f"{base}/result",
    }
    # Accepted means known: the status answers at once, read model caught up or not.
    document = await edge.status(task_id)
    assert document["priority"] == body.get("priority", "normal")
    state = await edge.system.commands.load(task_id)
    expected_input = {key: value for key, value in body.items() if key != "priority"}
    assert state.input == expected_input


async def test_transcription_upload_is_stored_by_content(edge: Edge) -> None:
    audio = wav_bytes()
    status, _, accepted = await post(
        edge, "/api/v1/transcription", data=audio_form(audio, language="de", priority="low")
    )
    assert status == 202, accepted
    assert accepted["type"] == "transcription"
    state = await edge.system.commands.load(accepted["task_id"])
    assert state.input is not None
    digest = state.input["blob"]
    assert state.input == {
        "blob": digest,
        "content_type": "audio/wav",
        "size": len(audio),
        "language": "de",
    }
    assert state.blobs == (digest,)
    assert state.priority == "low"
    assert await edge.system.blobs.get(digest) == audio


async def test_transcription_defaults_language_and_priority(edge: Edge) -> None:
    status, _, accepted = await post(edge, "/api/v1/transcription", data=audio_form(wav_bytes()))
    assert status == 202
    state = await edge.system.commands.load(accepted["task_id"])
    assert state.input is not None
    assert state.input["language"] == "en"
    assert state.priority == "normal"


# -- credentials -------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key"},
        {"Authorization": f"Basic {API_KEYS['alice']}"},
        {"Authorization": "Bearer "},
    ],
)
async def test_intake_without_a_valid_key_is_401(edge: Edge, headers: dict[str, str]) -> None:
    for path, kwargs in (
        ("/api/v1/tts", {"json": {"text": "hi"}}),
        ("/api/v1/summarization", {"json": {"text": "hi"}}),
        ("/api/v1/transcription", {"data": audio_form(wav_bytes())}),
    ):
        status, response_headers, body = await post(
            edge, path, client=None, headers=headers, **kwargs
        )
        assert status == 401
        assert response_headers["WWW-Authenticate"].startswith("Bearer")
        assert_error(body, message_text=True)
    assert await edge.event_count() == 0
    assert blob_files(edge) == []


# -- invalid input -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/tts", {"text": ""}),
        ("/api/v1/tts", {"text": "x" * 5001}),
        ("/api/v1/tts", {"text": " \r\n\t"}),
        ("/api/v1/tts", {}),
        ("/api/v1/tts", {"text": 5}),
        ("/api/v1/tts", {"text": "hi", "voice": 3}),
        ("/api/v1/tts", {"text": "hi", "voice": "../../etc"}),
        ("/api/v1/tts", {"text": "hi", "priority": "urgent"}),
        ("/api/v1/tts", {"text": "hi", "colour": "blue"}),
        ("/api/v1/tts", ["text"]),
        ("/api/v1/tts", "text"),
        ("/api/v1/summarization", {"text": ""}),
        ("/api/v1/summarization", {"text": "x" * 100_001}),
        ("/api/v1/summarization", {"text": "   "}),
        ("/api/v1/summarization", {"text": "hi", "max_words": 9}),
        ("/api/v1/summarization", {"text": "hi", "max_words": 1001}),
        ("/api/v1/summarization", {"text": "hi", "max_words": "20"}),
        ("/api/v1/summarization", {"text": "hi", "max_words": 20.5}),
        ("/api/v1/summarization", {"text": "hi", "extra": None}),
    ],
)
async def test_invalid_json_input_is_400_and_writes_nothing(
    edge: Edge, path: str, body: Any
) -> None:
    status, _, answer = await post(edge, path, json=body)
    assert status == 400, answer
    assert_error(answer, "invalid_request", message_text=True)
    assert await edge.event_count() == 0


async def test_blank_text_is_refused_in_words_a_client_understands(edge: Edge) -> None:
    status, _, answer = await post(edge, "/api/v1/summarization", json={"text": " \n\t"})
    assert status == 400
    assert answer["error"]["message"] == "text: must contain a character that is not whitespace"


@pytest.mark.parametrize("raw", [b"{", b"not json", b'{"text": "hi",}', b"\xff\xfe", b""])
async def test_malformed_json_is_400(edge: Edge, raw: bytes) -> None:
    status, _, answer = await post(
        edge, "/api/v1/tts", data=raw, headers={"Content-Type": "application/json"}
    )
    assert status == 400
    assert_error(answer, "invalid_json", message_text=True)


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
async def test_json_endpoints_refuse_other_media_types_with_415(
    edge: Edge, content_type: str
) -> None:
    for path in ("/api/v1/tts", "/api/v1/summarization"):
        status, _, answer = await post(
            edge, path, data=b'{"text": "hi"}', headers={"Content-Type": content_type}
        )
        assert status == 415
        assert_error(answer, "unsupported_media_type", message_text=True)


async def test_oversized_json_is_413(edge: Edge) -> None:
    limit = edge.system.edge_context().limits.max_json_bytes
    status, _, answer = await post(edge, "/api/v1/summarization", json={"text": "x" * limit})
    assert status == 413
    assert_error(answer, "too_large", message_text=True)
    assert await edge.event_count() == 0


@pytest.mark.parametrize(
    "audio",
    [b"plain text, not audio" * 10, b"RIFF\x00\x00\x00\x00AVI LIST", b"", b"\x89PNG\r\n\x1a\n"],
)
async def test_upload_that_is_not_audio_is_415_whatever_it_claims(edge: Edge, audio: bytes) -> None:
    form = aiohttp.FormData()
    form.add_field("file", audio, filename="speech.wav", content_type="audio/wav")
    status, _, answer = await post(edge, "/api/v1/transcription", data=form)
    assert status == 415
    assert_error(answer, "unsupported_media_type", message_text=True)
    assert await edge.event_count() == 0
    assert blob_files(edge) == []


async def test_transcription_needs_a_multipart_form(edge: Edge) -> None:
    status, _, answer = await post(edge, "/api/v1/transcription", json={"file": "AAAA"})
    assert status == 415
    assert_error(answer, "unsupported_media_type", message_text=True)


@pytest.mark.parametrize(
    "fields",
    [
        {"language": "en"},
        {"language": "english!"},
        {"priority": "asap"},
        {"colour": "blue"},
    ],
)
async def test_transcription_form_errors_are_400(edge: Edge, fields: dict[str, str]) -> None:
    form = aiohttp.FormData(default_to_multipart=True)
    if "language" not in fields or fields["language"] != "en":
        form.add_field("file", wav_bytes(), filename="a.wav")
    for name, value in fields.items():
        form.add_field(name, value)
    status, _, answer = await post(edge, "/api/v1/transcription", data=form)
    assert status == 400, answer
    assert_error(answer, message_text=True)
    assert await edge.event_count() == 0
    assert blob_files(edge) == []


async def test_transcription_with_the_file_twice_is_400(edge: Edge) -> None:
    form = audio_form(wav_bytes())
    form.add_field("file", wav_bytes(), filename="again.wav")
    status, _, answer = await post(edge, "/api/v1/transcription", data=form)
    assert status == 400
    assert_error(answer, "invalid_request", message_text=True)


async def test_garbled_multipart_is_400(edge: Edge) -> None:
    status, _, answer = await post(
        edge,
        "/api/v1/transcription",
        data=b"--xyz\r\nno headers here",
        headers={"Content-Type": "multipart/form-data; boundary=abc"},
    )
    assert status == 400
    assert_error(answer, message_text=True)


# -- size limits on uploads ------------------------------------------------------------


async def _raw_exchange(edge: Edge, head: bytes, body_chunks: Any) -> tuple[bytes, int]:
    """Send ``head`` then chunks while reading; returns the response head and bytes sent
    by the time it arrived."""
    host, port = edge.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    sent = 0
    answered = asyncio.Event()

    async def send() -> None:
        nonlocal sent
        writer.write(head)
        await writer.drain()
        for chunk in body_chunks:
            if answered.is_set():
                return
            writer.write(chunk)
            await writer.drain()
            sent += len(chunk)

    sender = asyncio.create_task(send())
    try:
        status_line = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        answered.set()
        sent_when_answered = sent
    finally:
        sender.cancel()
        writer.close()
    return status_line, sent_when_answered


async def test_declared_oversize_upload_is_refused_before_the_body(edge: Edge) -> None:
    head = (
        b"POST /api/v1/transcription HTTP/1.1\r\n"
        b"Host: test\r\n"
        b"Authorization: Bearer " + API_KEYS["alice"].encode() + b"\r\n"
        b"Content-Type: multipart/form-data; boundary=b0undary\r\n"
        b"Content-Length: 2147483648\r\n\r\n"
    )
    response, sent = await _raw_exchange(edge, head, iter(()))
    assert response.startswith(b"HTTP/1.1 413"), response
    assert sent == 0
    assert await edge.event_count() == 0


async def test_expect_continue_upload_is_refused_before_the_body(edge: Edge) -> None:
    head = (
        b"POST /api/v1/transcription HTTP/1.1\r\n"
        b"Host: test\r\n"
        b"Authorization: Bearer " + API_KEYS["alice"].encode() + b"\r\n"
        b"Content-Type: multipart/form-data; boundary=b0undary\r\n"
        b"Expect: 100-continue\r\n"
        b"Content-Length: 2147483648\r\n\r\n"
    )
    response, _ = await _raw_exchange(edge, head, iter(()))
    assert response.startswith(b"HTTP/1.1 413"), response


async def test_streamed_oversize_upload_is_refused_while_it_arrives(edge: Edge) -> None:
    total = 2 * 1024 * 1024 * 1024
    chunk = wav_bytes(16 * 1024)[: 32 * 1024]

    def chunked() -> Any:
        prefix = (
            b"--b0undary\r\n"
            b'Content-Disposition: form-data; name="file"; filename="big.wav"\r\n'
            b"Content-Type: audio/wav\r\n\r\n"
        )
        yield b"%x\r\n%s\r\n" % (len(prefix), prefix)
        for _ in range(total // len(chunk)):
            yield b"%x\r\n%s\r\n" % (len(chunk), chunk)

    head = (
        b"POST /api/v1/transcription HTTP/1.1\r\n"
        b"Host: test\r\n"
        b"Authorization: Bearer " + API_KEYS["alice"].encode() + b"\r\n"
        b"Content-Type: multipart/form-data; boundary=b0undary\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    response, sent = await _raw_exchange(edge, head, chunked())
    assert response.startswith(b"HTTP/1.1 413"), response
    # Answered long before the 2 GiB were sent: the limit is checked while reading.
    assert sent < 64 * 1024 * 1024
    assert await edge.event_count() == 0
    assert blob_files(edge) == []


async def test_upload_just_under_the_limit_is_accepted(edge: Edge) -> None:
    audio = wav_bytes()
    audio += bytes(UPLOAD_LIMIT - len(audio))
    status, _, answer = await post(edge, "/api/v1/transcription", data=audio_form(audio))
    assert status == 202, answer
    status, _, answer = await post(edge, "/api/v1/transcription", data=audio_form(audio + b"\0"))
    assert status == 413
    assert_error(answer, "too_large", message_text=True)


# -- idempotency -----------------------------------------------------------------------


async def test_same_idempotency_key_returns_the_first_task(edge: Edge) -> None:
    headers = {"Idempotency-Key": "order-17"}
    first = await post(edge, "/api/v1/tts", json={"text": "hello"}, headers=headers)
    again = await post(edge, "/api/v1/tts", json={"text": "hello"}, headers=headers)
    assert first[0] == again[0] == 202
    assert first[2]["task_id"] == again[2]["task_id"]
    assert again[1]["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first[1]
    assert again[1]["Location"] == first[1]["Location"]
    assert await edge.event_count() >= 1
    heads = await edge.system.log.stream_heads()
    assert len(heads) == 1


async def test_idempotency_keys_are_per_client(edge: Edge) -> None:
    headers = {"Idempotency-Key": "shared-key"}
    alice = await post(edge, "/api/v1/tts", json={"text": "hello"}, headers=headers)
    bob = await post(edge, "/api/v1/tts", client="bob", json={"text": "hello"}, headers=headers)
    assert alice[2]["task_id"] != bob[2]["task_id"]


async def test_idempotency_key_reused_for_another_job_is_409(edge: Edge) -> None:
    headers = {"Idempotency-Key": "k1"}
    await post(edge, "/api/v1/tts", json={"text": "hello"}, headers=headers)
    status, _, answer = await post(edge, "/api/v1/tts", json={"text": "other"}, headers=headers)
    assert status == 409
    assert_error(answer, "idempotency_key_reused", message_text=True)
    status, _, answer = await post(
        edge, "/api/v1/summarization", json={"text": "hello"}, headers=headers
    )
    assert status == 409


async def test_transcription_repeat_with_the_same_key(edge: Edge) -> None:
    headers = {"Idempotency-Key": "upload-1"}
    audio = wav_bytes()
    first = await post(edge, "/api/v1/transcription", data=audio_form(audio), headers=headers)
    again = await post(edge, "/api/v1/transcription", data=audio_form(audio), headers=headers)
    assert first[0] == again[0] == 202
    assert first[2]["task_id"] == again[2]["task_id"]
    files_before = blob_files(edge)
    other = wav_bytes(frames=800)
    status, _, _ = await post(
        edge, "/api/v1/transcription", data=audio_form(other), headers=headers
    )
    assert status == 409
    # The refused upload left no file behind.
    assert blob_files(edge) == files_before


async def test_concurrent_repeats_create_one_task(edge: Edge) -> None:
    headers = {"Idempotency-Key": "burst"}
    answers = await asyncio.gather(
        *(post(edge, "/api/v1/tts", json={"text": "hi"}, headers=headers) for _ in range(10))
    )
    assert {answer[0] for answer in answers} == {202}
    assert len({answer[2]["task_id"] for answer in answers}) == 1
    assert len(await edge.system.log.stream_heads()) == 1


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there"])
async def test_invalid_idempotency_key_is_400(edge: Edge, key: str) -> None:
    status, _, answer = await post(
        edge, "/api/v1/tts", json={"text": "hi"}, headers={"Idempotency-Key": key}
    )
    assert status == 400
    assert_error(answer, "invalid_idempotency_key", message_text=True)


# -- rate limit --------------------------------------------------------------------------


@pytest.mark.edge(miners=(), rate_per_second=0.5, rate_burst=3)
async def test_rate_limit_is_429_with_retry_after(edge: Edge) -> None:
    answers = [await post(edge, "/api/v1/tts", json={"text": "hi"}) for _ in range(4)]
    assert [answer[0] for answer in answers] == [202, 202, 202, 429]
    status, headers, body = answers[3]
    assert_error(body, "rate_limited", message_text=True)
    assert int(headers["Retry-After"]) >= 1
    # Another client has its own bucket.
    status, _, _ = await post(edge, "/api/v1/tts", client="bob", json={"text": "hi"})
    assert status == 202
    # A rate-limited request wrote nothing.
    assert len(await edge.system.log.stream_heads()) == 4
