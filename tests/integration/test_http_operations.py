"""Operators' endpoints and the edge's error handling, over real HTTP."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from http_edge.app import create_app
from http_edge.errors import error_middleware
from tests.support.edge_system import API_KEYS, PROXY, Edge
from tests.support.error_body import assert_error

pytestmark = pytest.mark.slow


# -- health ------------------------------------------------------------------------------


async def test_health_is_public_and_names_the_hotkey(edge: Edge) -> None:
    async with edge.session.get(f"{edge.url}/api/v1/health") as response:
        assert response.status == 200
        body = await response.json()
    assert body["status"] == "ok"
    assert body["hotkey"] == PROXY.ss58
    components = body["components"]
    assert components["event_log"] == {"status": "ok"}
    assert components["read_models"] == {"status": "ok"}
    assert components["blobs"] == {"status": "ok"}
    assert components["miners"] == {"known": 1, "healthy": 1, "status": "ok"}
    assert "restarts" in components["processors"]


@pytest.mark.edge(miners=())
async def test_health_without_miners_is_degraded(edge: Edge) -> None:
    async with edge.session.get(f"{edge.url}/api/v1/health") as response:
        assert response.status == 200
        body = await response.json()
    assert body["status"] == "degraded"
    assert body["components"]["miners"]["known"] == 0


async def test_health_is_503_when_the_read_models_cannot_serve(edge: Edge) -> None:
    await edge.system.runtime.stop()
    await edge.system.store.close()
    async with edge.session.get(f"{edge.url}/api/v1/health") as response:
        assert response.status == 503
        body = await response.json()
    assert body["status"] == "unavailable"
    assert body["components"]["read_models"]["status"] == "unavailable"
    assert body["error"]["code"] == "unavailable"


# -- metrics -----------------------------------------------------------------------------

_SAMPLE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_]+="([^"\\]|\\.)*",?)*\})? \S+$')


async def test_metrics_are_prometheus_text(edge: Edge) -> None:
    task_id = (await edge.submit())["task_id"]
    await edge.status(task_id)
    async with edge.session.get(f"{edge.url}/api/v1/task/{task_id}/status") as response:
        assert response.status == 401
    async with edge.session.get(f"{edge.url}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await response.text()
    lines = text.splitlines()
    for line in lines:
        if line.startswith("#"):
            assert line.startswith(("# HELP ", "# TYPE ")), line
        else:
            assert _SAMPLE.match(line), line
    route = 'route="/api/v1/task/{task_id}/status"'
    assert f'taskledger_http_requests_total{{method="GET",{route},status="200"}} 1' in lines
    assert f'taskledger_http_requests_total{{method="GET",{route},status="401"}} 1' in lines
    assert any(
        line.startswith("taskledger_http_request_duration_seconds_bucket") and 'le="+Inf"' in line
        for line in lines
    )
    assert any(line.startswith('taskledger_tasks{status="PENDING"}') for line in lines) or any(
        line.startswith('taskledger_tasks{status="DISTRIBUTED"}') for line in lines
    )
    assert "taskledger_miners_known 1" in lines
    assert "taskledger_miners_healthy 1" in lines
    assert any(line.startswith("taskledger_processor_restarts{") for line in lines)
    # Task ids never become labels.
    assert task_id not in text


# -- openapi -----------------------------------------------------------------------------


async def test_openapi_covers_every_route(edge: Edge) -> None:
    async with edge.session.get(f"{edge.url}/api/v1/openapi.json") as response:
        assert response.status == 200
        document = await response.json()
    assert document["openapi"].startswith("3.1")
    app = create_app(edge.system.edge_context())
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        assert route.resource is not None
        path = route.resource.canonical
        assert path in document["paths"], path
        assert route.method.lower() in document["paths"][path], (path, route.method)
    schemas = document["components"]["schemas"]
    assert {"StatusDocument", "TaskAccepted", "ErrorBody", "TtsRequest"} <= set(schemas)
    tts = schemas["TtsRequest"]["properties"]["text"]
    assert (tts["minLength"], tts["maxLength"]) == (1, 5000)


# -- errors everywhere -------------------------------------------------------------------


async def test_unknown_route_and_wrong_method_have_the_error_shape(edge: Edge) -> None:
    async with edge.session.get(f"{edge.url}/api/v1/nothing-here") as response:
        assert response.status == 404
        assert_error(await response.json(), "not_found")
    async with edge.session.delete(f"{edge.url}/api/v1/tts") as response:
        assert response.status == 405
        assert "POST" in response.headers["Allow"]
        assert_error(await response.json(), "method_not_allowed")
    async with edge.session.get(f"{edge.url}/metrics") as response:
        assert response.status == 200
    async with edge.session.get(f"{edge.url}/metrics") as response:
        text = await response.text()
    assert 'route="unmatched",status="404"' in text


async def test_an_unexpected_error_is_a_generic_500(caplog: pytest.LogCaptureFixture) -> None:
    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("database password is hunter2")

    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/broken", broken)
    async with TestClient(TestServer(app)) as client:
        with caplog.at_level(logging.ERROR):
            response = await client.get("/broken")
            assert response.status == 500
            body = await response.json()
    assert body == {"error": {"code": "internal_error", "message": "internal server error"}}
    assert "hunter2" in caplog.text  # logged for the operator, not shown to the caller


async def test_no_stack_trace_for_garbage(edge: Edge) -> None:
    """Odd requests in every endpoint come back as contract errors, never a 500."""
    odd: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/api/v1/tts", {"data": b"\x00" * 10}),
        ("POST", "/api/v1/tts", {"data": b"[]", "headers": {"Content-Type": "application/json"}}),
        ("POST", "/api/v1/transcription", {"data": b"--", "headers": {
            "Content-Type": "multipart/form-data"}}),
        ("POST", "/api/v1/miner/response", {"data": b"{}"}),
        ("POST", "/api/v1/validator/evaluation", {"data": b"{}"}),
        ("GET", "/api/v1/blobs/abc", {}),
        ("GET", "/api/v1/validator/tasks?limit=-1", {}),
        ("POST", "/api/v1/task/%00/cancel", {}),
        ("GET", "/api/v1/tasks?limit=%FF", {}),
    ]  # fmt: skip
    for method, path, kwargs in odd:
        headers = {**edge.auth(), **kwargs.pop("headers", {})}
        async with edge.session.request(
            method, f"{edge.url}{path}", headers=headers, **kwargs
        ) as response:
            assert 400 <= response.status < 500, (method, path, response.status)
            assert_error(await response.json(content_type=None))


async def test_errors_are_json(edge: Edge) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{edge.url}/api/v1/tasks") as response,
    ):
        assert response.status == 401
        assert response.content_type == "application/json"


async def _raw(edge: Edge, request: bytes) -> bytes:
    host, port = edge.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    finally:
        writer.close()


@pytest.mark.parametrize(
    "header",
    [
        b"Authorization: Bearer \xff\xfe\x80",
        b"X-Bittensor-Version: btauth/1\r\nX-Bittensor-Hotkey: \xff\r\n"
        b"X-Bittensor-Nonce: \xfe\r\nX-Bittensor-Signature: 0x\xff",
        b"Authorization: Bearer " + API_KEYS["alice"].encode() + b"\r\nIdempotency-Key: \xff\xfe",
    ],
)
async def test_undecodable_header_bytes_are_refused_not_crashed(edge: Edge, header: bytes) -> None:
    for path in (b"/api/v1/tts", b"/api/v1/miner/response", b"/api/v1/validator/evaluation"):
        body = b'{"text": "hi"}'
        head = await _raw(
            edge,
            b"POST "
            + path
            + b" HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            + header
            + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body,
        )
        status = int(head.split(b" ", 2)[1])
        assert 400 <= status < 500, (path, header, head)
