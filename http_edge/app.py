"""The aiohttp application: routes and middlewares over an :class:`EdgeContext`."""

from __future__ import annotations

from aiohttp import web

from http_edge import admin, health, inputs, intake, metrics, miners, openapi, tasks, validators
from http_edge.auth import CLIENT_AUTH, ClientAuth
from http_edge.checkpoints import checkpoints
from http_edge.context import EdgeContext
from http_edge.errors import error_middleware
from http_edge.key_limits import key_rate_middleware
from http_edge.keys import CONTEXT
from http_edge.metrics import METRICS, HttpMetrics, metrics_middleware
from http_edge.openai_audio import add_openai_routes
from http_edge.peers import PEER_GATE, PeerGate
from http_edge.stream import STREAMS, StreamSettings, close_streams, stream
from http_edge.waiting import install_holds


def create_app(
    context: EdgeContext,
    *,
    stream_poll_seconds: float = 0.5,
    stream_heartbeat_seconds: float = 15.0,
) -> web.Application:
    """JSON bodies are bounded by ``client_max_size``; uploads are streamed and bounded
    by the handlers themselves, field by field."""
    app = web.Application(
        client_max_size=context.limits.max_json_bytes,
        # Outermost first: metrics see the status the error middleware settled on.
        middlewares=[metrics_middleware, error_middleware, key_rate_middleware],
    )
    app[CONTEXT] = context
    app[CLIENT_AUTH] = ClientAuth.from_context(context)
    app[METRICS] = HttpMetrics()
    app[PEER_GATE] = PeerGate.from_context(context)
    app[STREAMS] = StreamSettings(
        poll_seconds=stream_poll_seconds, heartbeat_seconds=stream_heartbeat_seconds
    )
    app.on_shutdown.append(close_streams)

    add = app.router
    add.add_post("/api/v1/transcription", intake.transcription, expect_handler=intake.expect_upload)
    add.add_post("/api/v1/tts", intake.tts)
    add.add_post("/api/v1/summarization", intake.summarization)

    add.add_get("/api/v1/tasks", tasks.task_list)
    add.add_get("/api/v1/task/{task_id}/status", tasks.status)
    add.add_get("/api/v1/task/{task_id}/events", tasks.events)
    add.add_get("/api/v1/task/{task_id}/stream", stream)
    add.add_get("/api/v1/task/{task_id}/result", tasks.result)
    add.add_post("/api/v1/task/{task_id}/cancel", tasks.cancel)

    add.add_post("/api/v1/miner/response", miners.miner_response)
    add.add_get("/api/v1/blobs/{digest}", inputs.input_file)

    add.add_get("/api/v1/validator/tasks", validators.waiting_tasks)
    add.add_post("/api/v1/validator/evaluation", validators.evaluation)
    add.add_get("/api/v1/validator/weights", validators.weights)

    add.add_get("/api/v1/checkpoints", checkpoints)
    add.add_get("/api/v1/health", health.health)
    add.add_get("/metrics", metrics.metrics)
    add.add_get("/api/v1/openapi.json", openapi.openapi)
    add_openai_routes(app)
    install_holds(app)
    admin.add_routes(app)  # operators: keys, stats, miners, /dashboard
    return app
