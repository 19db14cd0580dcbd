"""The validators' side over real HTTP: DONE tasks, evaluations, weights."""

from __future__ import annotations

import uuid

import orjson
import pytest
from bittensor import http_auth

from tests.support.edge_system import STRANGER, VALIDATOR, Edge
from tests.support.error_body import assert_error
from tests.support.signing import signed_request, stale_nonce

pytestmark = pytest.mark.slow


async def test_done_tasks_are_listed_with_their_responses(edge: Edge) -> None:
    task_id = await edge.done_task(body={"text": "summarise me", "max_words": 20})
    reply = await edge.peer(VALIDATOR).get_signed(
        edge.url, "/api/v1/validator/tasks?limit=5", receiver_ss58=edge.hotkey
    )
    assert reply.status == 200
    (task,) = reply.json["tasks"]
    assert task["task_id"] == task_id
    assert task["type"] == "summarization"
    assert task["input"] == {"text": "summarise me", "max_words": 20}
    assert task["input_url"] is None
    (response,) = task["responses"]
    assert response["miner_hotkey"] == edge.miners[0].identity.ss58
    assert response["result"] == {"summary": "short"}
    assert response["latency_ms"] > 0


async def test_an_evaluation_approves_the_task(edge: Edge) -> None:
    task_id = await edge.done_task()
    miner = edge.miners[0].identity.ss58
    reply = await edge.evaluate(task_id, {miner: 0.75})
    assert reply.status == 200
    assert reply.json["task_id"] == task_id
    assert reply.json["status"] == "APPROVED"
    assert reply.json["result"] == {"summary": "short"}
    await edge.wait_for(task_id, "APPROVED")
    weights = await edge.peer(VALIDATOR).get_signed(
        edge.url, "/api/v1/validator/weights", receiver_ss58=edge.hotkey
    )
    assert weights.status == 200
    assert weights.json == {"weights": {miner: pytest.approx(1.0)}}
    # Integer scores are numbers too.
    second = await edge.done_task()
    assert (await edge.evaluate(second, {miner: 1})).status == 200


async def test_all_zero_scores_fail_the_task(edge: Edge) -> None:
    task_id = await edge.done_task()
    reply = await edge.evaluate(task_id, {edge.miners[0].identity.ss58: 0.0})
    assert reply.status == 200
    assert reply.json["status"] == "FAILED"
    assert reply.json["error"]["code"] == "rejected"


@pytest.mark.parametrize("score", [1.5, -0.1])
async def test_a_score_out_of_range_is_400(edge: Edge, score: float) -> None:
    task_id = await edge.done_task()
    reply = await edge.evaluate(task_id, {edge.miners[0].identity.ss58: score})
    assert reply.status == 400
    assert_error(reply.json, "invalid_request")
    assert (await edge.status(task_id))["status"] == "DONE"


async def test_scoring_a_miner_that_did_not_respond_is_400(edge: Edge) -> None:
    task_id = await edge.done_task()
    reply = await edge.evaluate(task_id, {STRANGER.ss58: 0.5})
    assert reply.status == 400
    assert_error(reply.json, "invalid_command")


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        orjson.dumps({"task_id": "x", "scores": {"a": 0.5}}),
        orjson.dumps({"task_id": str(uuid.uuid4())}),
        orjson.dumps({"task_id": str(uuid.uuid4()), "scores": {}}),
        orjson.dumps({"task_id": str(uuid.uuid4()), "scores": {"a": "high"}}),
        b'{"task_id": "00000000-0000-0000-0000-000000000000", "scores": {"a": NaN}}',
    ],
)
async def test_a_malformed_evaluation_is_400(edge: Edge, body: bytes) -> None:
    reply = await edge.peer(VALIDATOR).post_signed(
        edge.url, "/api/v1/validator/evaluation", body, receiver_ss58=edge.hotkey
    )
    assert reply.status == 400
    assert_error(reply.json)


async def test_an_oversized_evaluation_is_413(edge: Edge) -> None:
    limit = edge.system.edge_context().limits.max_json_bytes
    scores = {f"miner-{n:07d}": 0.5 for n in range(limit // 20)}
    reply = await edge.peer(VALIDATOR).post_signed(
        edge.url,
        "/api/v1/validator/evaluation",
        {"task_id": str(uuid.uuid4()), "scores": scores},
        receiver_ss58=edge.hotkey,
    )
    assert reply.status == 413
    assert_error(reply.json, "too_large")


async def test_evaluating_a_task_that_is_not_done_is_409(edge: Edge) -> None:
    task_id = str((await edge.submit())["task_id"])
    await edge.miners[0].next_work()
    reply = await edge.evaluate(task_id, {edge.miners[0].identity.ss58: 0.5})
    assert reply.status == 409
    assert_error(reply.json, "invalid_state")
    approved = await edge.done_task()
    assert (await edge.evaluate(approved, {edge.miners[0].identity.ss58: 0.5})).status == 200
    again = await edge.evaluate(approved, {edge.miners[0].identity.ss58: 0.5})
    assert again.status == 409


async def test_evaluating_an_unknown_task_is_404(edge: Edge) -> None:
    reply = await edge.evaluate(str(uuid.uuid4()), {"5F": 0.5})
    assert reply.status == 404
    assert_error(reply.json, "not_found")


async def test_a_hotkey_that_is_not_a_validator_is_403(edge: Edge) -> None:
    task_id = await edge.done_task()
    for identity in (STRANGER, edge.miners[0].identity):
        peer = edge.peer(identity)
        reply = await peer.get_signed(
            edge.url, "/api/v1/validator/tasks", receiver_ss58=edge.hotkey
        )
        assert reply.status == 403
        assert_error(reply.json, "not_a_validator")
        reply = await edge.evaluate(task_id, {edge.miners[0].identity.ss58: 1.0}, identity)
        assert reply.status == 403
        reply = await peer.get_signed(
            edge.url, "/api/v1/validator/weights", receiver_ss58=edge.hotkey
        )
        assert reply.status == 403
    assert (await edge.status(task_id))["status"] == "DONE"


async def test_validator_signature_failures_are_401(edge: Edge) -> None:
    task_id = await edge.done_task()
    body = orjson.dumps({"task_id": task_id, "scores": {edge.miners[0].identity.ss58: 1.0}})
    url = edge.url + "/api/v1/validator/evaluation"
    session = edge.session
    for kwargs in (
        {"receiver": STRANGER.ss58},
        {"receiver": edge.hotkey, "nonce_ns": stale_nonce()},
    ):
        status, answer, _ = await signed_request(session, "POST", url, VALIDATOR, body, **kwargs)
        assert status == 401, kwargs
        assert_error(answer)
    # Someone else's key under the validator's name: a bad signature.
    status, answer, _ = await signed_request(
        session, "POST", url, STRANGER, body, receiver=edge.hotkey, claimed_hotkey=VALIDATOR.ss58
    )
    assert status == 401
    assert_error(answer, "bad_signature")
    for path in ("/api/v1/validator/tasks", "/api/v1/validator/weights"):
        async with session.get(edge.url + path) as response:
            assert response.status == 401
            assert_error(await response.json(), "missing_signature")
        status, answer, sent = await signed_request(
            session, "GET", edge.url + path, VALIDATOR, receiver=edge.hotkey, content_type=None
        )
        assert status == 200
        status, answer, _ = await signed_request(
            session,
            "GET",
            edge.url + path,
            VALIDATOR,
            receiver=edge.hotkey,
            content_type=None,
            headers=sent,
        )
        assert status == 401
        assert_error(answer, "replayed_signature")
    # The query is signed too: a signature for one listing does not fit another.
    signed_for_one = http_auth.sign(
        VALIDATOR.signer,
        method="GET",
        path="/api/v1/validator/tasks?limit=1",
        receiver_ss58=edge.hotkey,
    )
    status, answer, _ = await signed_request(
        session,
        "GET",
        edge.url + "/api/v1/validator/tasks?limit=2",
        VALIDATOR,
        receiver=edge.hotkey,
        content_type=None,
        headers=signed_for_one,
    )
    assert status == 401
    assert_error(answer, "bad_signature")
    assert (await edge.status(task_id))["status"] == "DONE"


async def test_listing_limit_is_checked(edge: Edge) -> None:
    for bad in ("0", "x", "100000"):
        reply = await edge.peer(VALIDATOR).get_signed(
            edge.url, f"/api/v1/validator/tasks?limit={bad}", receiver_ss58=edge.hotkey
        )
        assert reply.status == 400
        assert_error(reply.json, "invalid_query")
