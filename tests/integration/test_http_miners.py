"""The miners' side over real HTTP: late answers and input links, all btauth/1 signed."""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

import aiohttp
import orjson
import pytest
from yarl import URL

from tests.support.edge_system import (
    STRANGER,
    VALIDATOR,
    Edge,
    TestMiner,
    result_for,
    wav_bytes,
)
from tests.support.error_body import assert_error
from tests.support.signing import signed_request, stale_nonce

pytestmark = pytest.mark.slow

RESPONSE = "/api/v1/miner/response"


async def distributed(edge: Edge, task_type: str = "summarization", **submit: Any) -> str:
    task_id = str((await edge.submit(task_type, **submit))["task_id"])
    work = await edge.miners[0].next_work()
    assert work["task_id"] == task_id
    await edge.wait_for(task_id, "DISTRIBUTED")
    return task_id


def answer_body(task_id: str, result: Any) -> bytes:
    return orjson.dumps({"task_id": task_id, "result": result})


def form_bytes(task_id: str, audio: bytes) -> tuple[bytes, str]:
    """The multipart body and its Content-Type, as bytes to sign."""
    boundary = "answer-" + uuid.uuid4().hex
    body = (
        (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="task_id"\r\n\r\n'
            f"{task_id}\r\n"
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="file"; filename="answer.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n"
        ).encode()
        + audio
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


# -- answers ---------------------------------------------------------------------------


async def test_a_late_answer_is_accepted(edge: Edge) -> None:
    task_id = await distributed(edge)
    reply = await edge.answer(edge.miners[0], task_id, {"summary": "in short"})
    assert reply.status == 200
    receipt = reply.json.pop("receipt")
    assert reply.json == {"accepted": True, "status": "DONE"}
    assert (receipt["task_id"], receipt["proxy_hotkey"]) == (task_id, edge.hotkey)
    document = await edge.wait_for(task_id, "DONE")
    assert document["miners"][0]["state"] == "responded"
    assert document["miners"][0]["latency_ms"] > 0


async def test_an_answer_from_a_miner_not_assigned_is_403(edge: Edge) -> None:
    task_id = await distributed(edge)
    stranger = edge.peer(STRANGER)
    reply = await stranger.post_signed(
        edge.url,
        RESPONSE,
        {"task_id": task_id, "result": {"summary": "x"}},
        receiver_ss58=edge.hotkey,
    )
    assert reply.status == 403
    assert_error(reply.json, "not_assigned")


@pytest.mark.edge(miners=("manual", "manual"), miners_per_task=2)
async def test_answering_twice_is_409(edge: Edge) -> None:
    task_id = str((await edge.submit())["task_id"])
    for miner in edge.miners:
        await miner.next_work()
    first = edge.miners[0]
    assert (await edge.answer(first, task_id)).status == 200
    again = await edge.answer(first, task_id)
    assert again.status == 409
    assert_error(again.json, "already_answered")
    last = await edge.answer(edge.miners[1], task_id)
    assert last.json.pop("receipt")["task_id"] == task_id
    assert last.json == {"accepted": True, "status": "DONE"}
    # The task takes no answers any more.
    late = await edge.answer(first, task_id)
    assert late.status == 409
    assert_error(late.json, "invalid_state")


@pytest.mark.parametrize(
    "result",
    [{"text": "a transcription's field"}, {"summary": 5}, {"summary": "x" * 200_001}, {}],
)
async def test_a_result_of_the_wrong_shape_is_400(edge: Edge, result: dict[str, Any]) -> None:
    task_id = await distributed(edge)
    reply = await edge.answer(edge.miners[0], task_id, result)
    assert reply.status == 400
    assert_error(reply.json, "invalid_result")
    # The miner may still answer properly.
    assert (await edge.answer(edge.miners[0], task_id)).status == 200


@pytest.mark.parametrize(
    "document",
    [
        {"task_id": "not-a-uuid", "result": {}},
        {"task_id": str(uuid.uuid4())},
        {"task_id": str(uuid.uuid4()), "result": "text"},
        {"task_id": str(uuid.uuid4()), "result": {}, "extra": 1},
        [],
    ],
)
async def test_a_malformed_answer_is_400(edge: Edge, document: Any) -> None:
    reply = await edge.miners[0].client.post_signed(
        edge.url, RESPONSE, orjson.dumps(document), receiver_ss58=edge.hotkey
    )
    assert reply.status == 400
    assert_error(reply.json)


async def test_an_answer_for_an_unknown_task_is_403_like_one_not_assigned(edge: Edge) -> None:
    # A miner must not learn from the answer whether a task it does not hold exists.
    task_id = await distributed(edge)
    unknown = await edge.answer(edge.miners[0], str(uuid.uuid4()), {"summary": "x"})
    not_assigned = await edge.peer(STRANGER).post_signed(
        edge.url, RESPONSE, {"task_id": task_id, "result": {"summary": "x"}},
        receiver_ss58=edge.hotkey,
    )  # fmt: skip
    assert unknown.status == not_assigned.status == 403
    assert unknown.json == not_assigned.json
    assert_error(unknown.json, "not_assigned")


async def test_an_answer_in_another_media_type_is_415(edge: Edge) -> None:
    reply = await edge.miners[0].client.post_signed(
        edge.url, RESPONSE, b"summary", receiver_ss58=edge.hotkey, content_type="text/plain"
    )
    assert reply.status == 415
    assert_error(reply.json, "unsupported_media_type")


async def test_tts_answer_as_multipart_wav(edge: Edge) -> None:
    task_id = await distributed(edge, "tts", body={"text": "speak"})
    audio = wav_bytes(frames=4000)
    body, content_type = form_bytes(task_id, audio)
    reply = await edge.miners[0].client.post_signed(
        edge.url, RESPONSE, body, receiver_ss58=edge.hotkey, content_type=content_type
    )
    assert reply.status == 200, reply.json
    state = await edge.system.commands.load(task_id)
    stored = state.miners[0].result
    assert stored is not None
    assert await edge.system.blobs.get(stored["audio"]["digest"]) == audio


async def test_tts_answer_as_json_base64(edge: Edge) -> None:
    task_id = await distributed(edge, "tts", body={"text": "speak"})
    reply = await edge.answer(edge.miners[0], task_id, result_for("tts"))
    assert reply.status == 200


@pytest.mark.parametrize("audio", [b"not a wav at all" * 10, b""])
async def test_tts_answer_that_is_not_wav_is_400_and_stores_nothing(
    edge: Edge, audio: bytes
) -> None:
    task_id = await distributed(edge, "tts", body={"text": "speak"})
    body, content_type = form_bytes(task_id, audio)
    reply = await edge.miners[0].client.post_signed(
        edge.url, RESPONSE, body, receiver_ss58=edge.hotkey, content_type=content_type
    )
    assert reply.status == 400
    assert_error(reply.json, "invalid_result")
    assert not (edge.data_dir / "blobs").exists() or not any(
        path.is_file() for path in (edge.data_dir / "blobs").rglob("*")
    )


async def test_audio_for_a_text_task_is_400(edge: Edge) -> None:
    task_id = await distributed(edge)
    body, content_type = form_bytes(task_id, wav_bytes())
    reply = await edge.miners[0].client.post_signed(
        edge.url, RESPONSE, body, receiver_ss58=edge.hotkey, content_type=content_type
    )
    assert reply.status == 400
    assert_error(reply.json, "invalid_result")


async def test_an_audio_answer_from_a_stranger_stores_nothing(edge: Edge) -> None:
    task_id = await distributed(edge, "tts", body={"text": "speak"})
    body, content_type = form_bytes(task_id, wav_bytes(frames=999))
    reply = await edge.peer(STRANGER).post_signed(
        edge.url, RESPONSE, body, receiver_ss58=edge.hotkey, content_type=content_type
    )
    assert reply.status == 403
    blobs = edge.data_dir / "blobs"
    assert not blobs.exists() or not any(path.is_file() for path in blobs.rglob("*"))


async def test_an_oversized_answer_is_413(edge: Edge) -> None:
    task_id = await distributed(edge)
    limit = edge.system.edge_context().limits.max_json_bytes
    reply = await edge.answer(edge.miners[0], task_id, {"summary": "x" * limit})
    assert reply.status == 413
    assert_error(reply.json, "too_large")


# -- btauth/1 failures -------------------------------------------------------------------


async def test_signature_failures_are_401(edge: Edge) -> None:
    task_id = await distributed(edge)
    miner: TestMiner = edge.miners[0]
    url = edge.url + RESPONSE
    body = answer_body(task_id, {"summary": "x"})
    session = edge.session

    status, answer, _ = await signed_request(
        session, "POST", url, miner.identity, body, receiver=edge.hotkey, content_type=None
    )
    assert status == 415  # signed, but not JSON: the media type is judged first

    cases: dict[str, tuple[int, Any]] = {}
    status, answer, _ = await signed_request(
        session, "POST", url, STRANGER, body, receiver=edge.hotkey,
        claimed_hotkey=miner.identity.ss58,
    )  # fmt: skip
    cases["wrong key"] = (status, answer)
    status, answer, _ = await signed_request(
        session, "POST", url, miner.identity, body, receiver=STRANGER.ss58
    )
    cases["another receiver"] = (status, answer)
    status, answer, _ = await signed_request(
        session, "POST", url, miner.identity, body, receiver=edge.hotkey, nonce_ns=stale_nonce()
    )
    cases["stale"] = (status, answer)
    status, answer, _ = await signed_request(
        session, "POST", url, miner.identity, body, receiver=edge.hotkey,
        send_body=answer_body(task_id, {"summary": "forged"}),
    )  # fmt: skip
    cases["tampered body"] = (status, answer)
    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
        cases["unsigned"] = (r.status, await r.json())
    for case, (status, answer) in cases.items():
        assert status == 401, case
        assert_error(answer)
    assert cases["another receiver"][1]["error"]["code"] == "wrong_receiver"
    assert cases["stale"][1]["error"]["code"] == "stale_signature"
    assert cases["unsigned"][1]["error"]["code"] == "missing_signature"
    assert (await edge.status(task_id))["status"] == "DISTRIBUTED"

    status, answer, sent = await signed_request(
        session, "POST", url, miner.identity, body, receiver=edge.hotkey
    )
    assert status == 200, answer
    status, answer, _ = await signed_request(
        session, "POST", url, miner.identity, body, receiver=edge.hotkey, headers=sent
    )
    assert status == 401
    assert_error(answer, "replayed_signature")


# -- input links -------------------------------------------------------------------------


async def transcription_work(edge: Edge) -> tuple[str, dict[str, Any], bytes]:
    audio = wav_bytes(frames=1234)
    form = aiohttp.FormData()
    form.add_field("file", audio, filename="in.wav")
    async with edge.session.post(
        f"{edge.url}/api/v1/transcription", data=form, headers=edge.auth()
    ) as response:
        assert response.status == 202
        task_id = (await response.json())["task_id"]
    work = await edge.miners[0].next_work()
    assert work["task_id"] == task_id
    return task_id, work, audio


def split(url: str) -> tuple[str, str]:
    parsed = URL(url)
    return str(parsed.origin()), parsed.raw_path_qs


async def test_the_assigned_miner_fetches_the_input(edge: Edge) -> None:
    _, work, audio = await transcription_work(edge)
    assert work["input_url"] is not None
    base, path = split(work["input_url"])
    reply = await edge.miners[0].client.get_signed(base, path, receiver_ss58=edge.hotkey)
    assert reply.status == 200
    assert reply.body == audio


async def test_input_links_refuse_everyone_else(edge: Edge) -> None:
    task_id, work, _ = await transcription_work(edge)
    base, path = split(work["input_url"])
    digest = URL(work["input_url"]).path.rsplit("/", 1)[1]
    stranger = edge.peer(STRANGER)

    # A hotkey that is no miner or validator, before its signature is checked.
    reply = await stranger.get_signed(base, path, receiver_ss58=edge.hotkey)
    assert reply.status == 403
    assert_error(reply.json, "forbidden")
    # Another peer signing with the miner's link.
    reply = await edge.peer(VALIDATOR).get_signed(base, path, receiver_ss58=edge.hotkey)
    assert reply.status == 403
    assert_error(reply.json, "invalid_link")
    # A valid link made for someone not assigned to the task.
    expires = int(time.time()) + 60
    query = edge.system.links.query(digest, task_id, STRANGER.ss58, expires)
    reply = await stranger.get_signed(
        base, f"/api/v1/blobs/{digest}?{query}", receiver_ss58=edge.hotkey
    )
    assert reply.status == 403
    assert_error(reply.json, "forbidden")
    # An expired link, and a tampered one, for the assigned miner.
    miner = edge.miners[0]
    expired = edge.system.links.query(digest, task_id, miner.identity.ss58, int(time.time()) - 1)
    reply = await miner.client.get_signed(
        base, f"/api/v1/blobs/{digest}?{expired}", receiver_ss58=edge.hotkey
    )
    assert reply.status == 403
    reply = await miner.client.get_signed(base, path[:-4] + "0000", receiver_ss58=edge.hotkey)
    assert reply.status == 403
    # No signature at all.
    async with edge.session.get(work["input_url"]) as response:
        assert response.status == 401
        assert_error(await response.json(), "missing_signature")
    # Malformed links.
    for bad in (
        f"/api/v1/blobs/{'z' * 64}?{query}",
        f"/api/v1/blobs/{digest}?task=nope&expires=1&sig=x",
        f"/api/v1/blobs/{digest}?task={task_id}&expires=soon&sig=x",
    ):
        reply = await miner.client.get_signed(base, bad, receiver_ss58=edge.hotkey)
        assert reply.status == 400, bad
        assert_error(reply.json)


async def test_a_validator_fetches_inputs_and_audio_results(edge: Edge) -> None:
    task_id, _, audio = await transcription_work(edge)
    assert (await edge.answer(edge.miners[0], task_id)).status == 200
    await edge.wait_for(task_id, "DONE")
    validator = edge.peer(VALIDATOR)
    listing = await validator.get_signed(
        edge.url, "/api/v1/validator/tasks", receiver_ss58=edge.hotkey
    )
    assert listing.status == 200
    (task,) = listing.json["tasks"]
    base, path = split(task["input_url"])
    reply = await validator.get_signed(base, path, receiver_ss58=edge.hotkey)
    assert reply.status == 200
    assert reply.body == audio
    # The miner's link does not work for the validator, nor the validator's for the miner.
    reply = await edge.miners[0].client.get_signed(base, path, receiver_ss58=edge.hotkey)
    assert reply.status == 403


async def test_base64_audio_results_are_listed_with_a_link(edge: Edge) -> None:
    task_id = await distributed(edge, "tts", body={"text": "speak"})
    assert (await edge.answer(edge.miners[0], task_id)).status == 200
    await edge.wait_for(task_id, "DONE")
    validator = edge.peer(VALIDATOR)
    listing = await validator.get_signed(
        edge.url, "/api/v1/validator/tasks", receiver_ss58=edge.hotkey
    )
    (task,) = listing.json["tasks"]
    (response,) = task["responses"]
    assert task["input_url"] is None
    base, path = split(response["result_url"])
    reply = await validator.get_signed(base, path, receiver_ss58=edge.hotkey)
    assert reply.status == 200
    assert reply.body == base64.b64decode(result_for("tts")["audio_wav_base64"])
