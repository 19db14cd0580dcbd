"""The OpenAI-compatible audio endpoints, driven by the official ``openai`` client against a
running server: answers, the task behind each, and the client's own exceptions."""

from __future__ import annotations

import asyncio

import openai
import pytest

from tests.support.edge_system import API_KEYS, Edge, wav_bytes

pytestmark = [pytest.mark.slow, pytest.mark.edge(miners=("instant",))]


def client_for(edge: Edge, key: str = API_KEYS["alice"], timeout: float = 20) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=f"{edge.url}/v1", api_key=key, max_retries=0, timeout=timeout
    )


async def test_transcription_answers_the_first_response_of_an_ordinary_task(edge: Edge) -> None:
    client = client_for(edge)
    raw = await client.audio.transcriptions.with_raw_response.create(
        model="whisper-1", file=("hello.wav", wav_bytes(), "audio/wav"), language="en"
    )
    transcription = raw.parse()
    assert transcription.text == "hello world"
    task_id = raw.headers["Taskledger-Task-Id"]
    assert raw.headers["Taskledger-Provisional"] == "true"
    document = await edge.status(task_id)  # a task like any other, the client's own
    assert document["type"] == "transcription"
    assert document["first_response"]["result"] == {"text": "hello world"}
    task = await edge.system.commands.load(task_id)
    assert task.client == "alice" and task.input["model"] == "whisper-1"

    text = await client.audio.transcriptions.create(
        model="whisper-1", file=("hello.wav", wav_bytes(), "audio/wav"), response_format="text"
    )
    assert str(text).strip() == "hello world"


async def test_speech_answers_wav_bytes(edge: Edge) -> None:
    client = client_for(edge)
    raw = await client.audio.speech.with_raw_response.create(
        model="tts-1", input="Hello there.", voice="alloy", response_format="wav"
    )
    audio = raw.content
    assert audio[:4] == b"RIFF" and audio[8:12] == b"WAVE"
    assert raw.headers["content-type"] == "audio/wav"
    task = await edge.system.commands.load(raw.headers["Taskledger-Task-Id"])
    assert task.task_type == "tts"
    assert task.input == {"text": "Hello there.", "model": "tts-1", "openai_voice": "alloy"}


async def test_the_same_idempotency_key_answers_from_the_same_task(edge: Edge) -> None:
    client = client_for(edge)
    options = {"extra_headers": {"Idempotency-Key": "openai-repeat-1"}}
    first = await client.audio.speech.with_raw_response.create(
        model="tts-1", input="Once.", voice="alloy", **options
    )
    again = await client.audio.speech.with_raw_response.create(
        model="tts-1", input="Once.", voice="alloy", **options
    )
    assert first.headers["Taskledger-Task-Id"] == again.headers["Taskledger-Task-Id"]
    assert len(await edge.system.log.stream_heads()) == 1


async def test_the_clients_exceptions_for_a_bad_key_and_bad_input(edge: Edge) -> None:
    stranger = client_for(edge, key="not-a-key")
    with pytest.raises(openai.AuthenticationError) as refused:
        await stranger.audio.speech.create(model="tts-1", input="hi", voice="alloy")
    assert refused.value.status_code == 401
    assert refused.value.type == "authentication_error"

    client = client_for(edge)
    with pytest.raises(openai.BadRequestError) as empty:
        await client.audio.speech.create(model="tts-1", input="", voice="alloy")
    assert empty.value.type == "invalid_request_error"
    with pytest.raises(openai.BadRequestError):  # blank text no miner can speak
        await client.audio.speech.create(model="tts-1", input="\r", voice="alloy")
    with pytest.raises(openai.BadRequestError):
        await client.audio.speech.create(
            model="tts-1", input="hi", voice="alloy", response_format="mp3"
        )
    with pytest.raises(openai.BadRequestError):
        await client.audio.transcriptions.create(
            model="whisper-1", file=("a.wav", wav_bytes(), "audio/wav"), response_format="srt"
        )
    with pytest.raises(openai.APIStatusError) as not_audio:  # 415, as on /api/v1/transcription
        await client.audio.transcriptions.create(
            model="whisper-1", file=("a.wav", b"plain text, not audio", "audio/wav")
        )
    assert not_audio.value.status_code == 415
    assert await edge.event_count() == 0  # nothing refused left a task behind


@pytest.mark.edge(miners=("instant",), rate_per_second=0.01, rate_burst=1)
async def test_a_client_past_its_rate_gets_rate_limit_error(edge: Edge) -> None:
    client = client_for(edge)
    await client.audio.speech.create(model="tts-1", input="one", voice="alloy")
    with pytest.raises(openai.RateLimitError) as limited:
        await client.audio.speech.create(model="tts-1", input="two", voice="alloy")
    assert limited.value.status_code == 429
    assert limited.value.type == "rate_limit_error"


@pytest.mark.edge(miners=("manual",), openai_timeout_seconds=0.5)
async def test_no_answer_in_time_is_504_naming_the_task(edge: Edge) -> None:
    client = client_for(edge)
    with pytest.raises(openai.InternalServerError) as late:
        await client.audio.speech.create(model="tts-1", input="too slow", voice="alloy")
    assert late.value.status_code == 504
    task_id = (await edge.miners[0].next_work())["task_id"]
    assert task_id in late.value.message
    assert late.value.response.headers["Taskledger-Task-Id"] == task_id


@pytest.mark.edge(miners=("instant",), openai_answer="approved")
async def test_approved_mode_waits_for_the_validator(edge: Edge) -> None:
    client = client_for(edge, timeout=30)
    call = asyncio.create_task(
        client.audio.transcriptions.with_raw_response.create(
            model="whisper-1", file=("a.wav", wav_bytes(), "audio/wav")
        )
    )
    task_id = (await edge.miners[0].next_work())["task_id"]
    await edge.wait_for(task_id, "DONE")
    await asyncio.sleep(0.2)
    assert not call.done()
    assert (await edge.evaluate(task_id, {edge.miners[0].identity.ss58: 0.8})).status == 200
    raw = await asyncio.wait_for(call, 10)
    assert raw.headers["Taskledger-Provisional"] == "false"
    assert raw.headers["Taskledger-Task-Id"] == task_id
    assert raw.parse().text == "hello world"
