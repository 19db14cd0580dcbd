"""``GET /api/v1/openapi.json``: the contract as an OpenAPI 3.1 document.

Schemas come from the pydantic models the handlers validate with and answer
in, so the document cannot drift from the code's shapes.
"""

from __future__ import annotations

import functools
from typing import Any, Final

from aiohttp import web
from bittensor import http_auth
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from http_edge.admin_openapi import ADMIN_SCHEME, admin_paths
from http_edge.openapi_answers import add_answers_paths
from http_edge.schemas import (
    Checkpoints,
    ErrorBody,
    Evaluation,
    EventsPage,
    Health,
    MinerAccepted,
    MinerAudioResponse,
    MinerResponse,
    StatusDocument,
    SummarizationRequest,
    TaskAccepted,
    TaskList,
    TextResult,
    TranscriptionUpload,
    TtsRequest,
    ValidatorTasks,
    Weights,
)

_REQUESTS: Final[tuple[type[BaseModel], ...]] = (
    TtsRequest,
    SummarizationRequest,
    TranscriptionUpload,
    MinerResponse,
    MinerAudioResponse,
    Evaluation,
)
_RESPONSES: Final[tuple[type[BaseModel], ...]] = (
    ErrorBody,
    TaskAccepted,
    StatusDocument,
    TaskList,
    EventsPage,
    TextResult,
    MinerAccepted,
    ValidatorTasks,
    Weights,
    Health,
    Checkpoints,
)

_ERRORS: Final = {
    400: "Malformed or invalid input.",
    401: "Missing or bad credentials (API key, or btauth/1 signature: bad, stale, replayed, "
    "or signed for another receiver).",
    403: "Authenticated, but not allowed.",
    404: "Unknown, or not yours.",
    408: "The body arrived too slowly (below TASKLEDGER_BODY_MIN_RATE after its grace).",
    409: "Not allowed in the task's current state.",
    413: "Too large.",
    415: "Unsupported media type.",
    429: (
        "Rate limited (per API key, or per miner or validator hotkey), or past the key's "
        "daily quota (quota_exceeded); see Retry-After."
    ),
    503: "Not ready.",
}

_SSE_EVENT: Final = {
    "type": "object",
    "properties": {
        "event": {"type": "string"},
        "data": {"type": "string"},
        "id": {"type": "string"},
        "retry": {"type": "integer"},
    },
}

_CLIENT: Final[list[dict[str, list[str]]]] = [{"bearer": []}]
_PEER: Final[list[dict[str, list[str]]]] = [{"btauth": []}]


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(status): _json(ErrorBody, _ERRORS[status]) for status in statuses}


def _task_id() -> dict[str, Any]:
    return {
        "name": "task_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "format": "uuid"},
    }


def _limit(default: int, high: int) -> dict[str, Any]:
    return {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": high, "default": default},
    }


_IDEMPOTENCY: Final = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "The same key from the same client returns the first task again (202, "
    "with Idempotent-Replayed: true) instead of creating another; a key reused for a "
    "different request is 409 idempotency_key_reused.",
    "schema": {"type": "string", "pattern": "^[\\x21-\\x7e][\\x20-\\x7e]{0,254}$"},
}


def _intake(summary: str, content_type: str, model: type[BaseModel]) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "security": _CLIENT,
            "parameters": [_IDEMPOTENCY],
            "requestBody": {"required": True, "content": {content_type: {"schema": _ref(model)}}},
            "responses": {
                "202": {
                    **_json(TaskAccepted, "Accepted; Location points at the status."),
                    "headers": {
                        "Location": {"schema": {"type": "string"}},
                        "Idempotent-Replayed": {
                            "description": "true when this answers a repeated Idempotency-Key",
                            "schema": {"type": "string", "enum": ["true"]},
                        },
                    },
                },
                **_errors(400, 401, 408, 409, 413, 415, 429),
            },
        }
    }


def _task_get(summary: str, ok: dict[str, Any], *extra: int) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "security": _CLIENT,
            "parameters": [_task_id()],
            "responses": {"200": ok, **_errors(400, 401, 404, 429, *extra)},
        }
    }


def _paths() -> dict[str, Any]:
    task = "/api/v1/task/{task_id}"
    return {
        "/api/v1/transcription": _intake(
            "Submit audio to transcribe (WAV, FLAC, MP3 or OGG, recognised by its bytes).",
            "multipart/form-data",
            TranscriptionUpload,
        ),
        "/api/v1/tts": _intake("Submit text to speak.", "application/json", TtsRequest),
        "/api/v1/summarization": _intake(
            "Submit text to summarise.", "application/json", SummarizationRequest
        ),
        f"{task}/status": _task_get("The task's status.", _json(StatusDocument, "The status.")),
        f"{task}/events": _task_get(
            "The task's full history, oldest first.", _json(EventsPage, "The events.")
        ),
        f"{task}/stream": _task_get(
            "Server-Sent Events: one `event: status` with the status document after each "
            "change, starting with the current one; ends after a terminal status.",
            {
                "description": "The event stream.",
                # Each event, as an SSE parser hands it over: data is the status document.
                "content": {"text/event-stream": {"schema": _SSE_EVENT}},
            },
        ),
        f"{task}/result": _task_get(
            "The approved result: JSON for text, the WAV itself for tts.",
            {
                "description": "The result.",
                "content": {
                    "application/json": {"schema": _ref(TextResult)},
                    "audio/wav": {"schema": {"type": "string", "format": "binary"}},
                },
            },
            409,
        ),
        f"{task}/cancel": {
            "post": {
                "summary": "Cancel a PENDING or DISTRIBUTED task.",
                "security": _CLIENT,
                "parameters": [_task_id()],
                "responses": {
                    "200": _json(StatusDocument, "Cancelled; the status."),
                    **_errors(400, 401, 404, 409, 429),
                },
            }
        },
        "/api/v1/tasks": {
            "get": {
                "summary": "The caller's tasks, newest first.",
                "security": _CLIENT,
                "parameters": [_limit(50, 500)],
                "responses": {"200": _json(TaskList, "The tasks."), **_errors(400, 401, 429)},
            }
        },
        "/api/v1/miner/response": {
            "post": {
                "summary": "A miner's answer (btauth/1 by the miner's hotkey).",
                "security": _PEER,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": _ref(MinerResponse)},
                        "multipart/form-data": {"schema": _ref(MinerAudioResponse)},
                    },
                },
                "responses": {
                    "200": _json(MinerAccepted, "Recorded."),
                    **_errors(400, 401, 403, 408, 409, 413, 415, 429),
                },
            }
        },
        "/api/v1/blobs/{digest}": {
            "get": {
                "summary": "An input link: the file, for the hotkey the link was made for.",
                "security": _PEER,
                "parameters": [
                    {
                        "name": "digest",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                    },
                    {
                        "name": "task",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string", "format": "uuid"},
                    },
                    {
                        "name": "expires",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "integer"},
                    },
                    {"name": "sig", "in": "query", "required": True, "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": {
                        "description": "The file.",
                        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
                    },
                    "307": {"description": "Fetch it from the blob store's own signed URL."},
                    **_errors(400, 401, 403, 404, 429),
                },
            }
        },
        "/api/v1/validator/tasks": {
            "get": {
                "summary": "DONE tasks waiting for evaluation (allowed validators).",
                "security": _PEER,
                "parameters": [_limit(20, 500)],
                "responses": {
                    "200": _json(ValidatorTasks, "The tasks."),
                    **_errors(400, 401, 403, 429),
                },
            }
        },
        "/api/v1/validator/evaluation": {
            "post": {
                "summary": "Score a DONE task's responses (allowed validators).",
                "security": _PEER,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(Evaluation)}},
                },
                "responses": {
                    "200": _json(StatusDocument, "Evaluated; now APPROVED or FAILED."),
                    **_errors(400, 401, 403, 404, 408, 409, 413, 415, 429),
                },
            }
        },
        "/api/v1/validator/weights": {
            "get": {
                "summary": "Moving-average rewards normalised to sum 1 (allowed validators).",
                "security": _PEER,
                "responses": {"200": _json(Weights, "The weights."), **_errors(401, 403, 429)},
            }
        },
        "/api/v1/checkpoints": {
            "get": {
                "summary": "Signed checkpoints of the log chain, oldest first (at most 1000).",
                "security": [],
                "parameters": [
                    {
                        "name": "after",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
                    }
                ],
                "responses": {
                    "200": _json(Checkpoints, "The checkpoints after the position."),
                    **_errors(400),
                },
            }
        },
        "/api/v1/health": {
            "get": {
                "summary": "Whether this process can serve.",
                "security": [],
                "responses": {
                    "200": _json(Health, "Serving (ok or degraded)."),
                    "503": _json(Health, "Cannot serve: the event log or read models are down."),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus text exposition.",
                "security": [],
                "responses": {
                    "200": {
                        "description": "Metrics.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/api/v1/openapi.json": {
            "get": {
                "summary": "This document.",
                "security": [],
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    }


@functools.cache
def openapi_document() -> dict[str, Any]:
    pairs: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        *((model, "validation") for model in _REQUESTS),
        *((model, "serialization") for model in _RESPONSES),
    ]
    _, schemas = models_json_schema(pairs, ref_template="#/components/schemas/{model}")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "taskledger",
            "version": "1",
            "description": "The job-routing proxy of a Bittensor subnet.",
        },
        "paths": add_answers_paths({**_paths(), **admin_paths()}),
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "Client API key."},
                "admin": ADMIN_SCHEME,
                "btauth": {
                    "type": "apiKey",
                    "in": "header",
                    "name": http_auth.HEADER_SIGNATURE,
                    "description": "btauth/1 (bittensor.http_auth): hotkey-signed headers "
                    f"{http_auth.HEADER_VERSION}, {http_auth.HEADER_HOTKEY}, "
                    f"{http_auth.HEADER_NONCE}, {http_auth.HEADER_RECEIVER} and "
                    f"{http_auth.HEADER_SIGNATURE}; the receiver is the proxy's hotkey.",
                },
            },
        },
    }


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())
