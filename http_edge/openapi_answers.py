"""The OpenAPI paths of "Answers first": held intakes, the provisional result, /v1/audio/*."""

from __future__ import annotations

from typing import Any, Final

from http_edge.openai_audio import SpeechRequest, TranscriptionFields
from http_edge.provisional import PROVISIONAL_HEADER
from http_edge.waiting import INTAKE_PATHS, MAX_WAIT_SECONDS, UNTIL

_BINARY: Final = {"type": "string", "format": "binary"}
_STATUS: Final = {"$ref": "#/components/schemas/StatusDocument"}
_ERROR: Final = {"$ref": "#/components/schemas/ErrorBody"}
_PROVISIONAL: Final = {
    "description": "true for the first response (not yet scored), false for the approved result",
    "schema": {"type": "string", "enum": ["true", "false"]},
}
_WAIT: Final = [
    {
        "name": "wait",
        "in": "query",
        "required": False,
        "description": "Hold the request up to this many seconds until the task has what "
        "`until` names (or is terminal), then answer 200 with the status document.",
        "schema": {"type": "number", "minimum": 0, "maximum": MAX_WAIT_SECONDS, "default": 0},
    },
    {
        "name": "until",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "enum": list(UNTIL), "default": UNTIL[0]},
    },
]


def _openai_errors(*statuses: int) -> dict[str, Any]:
    body = {
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                },
                "required": ["code", "message", "type"],
            }
        },
        "required": ["error"],
    }
    return {
        str(status): {
            "description": "An error, with OpenAI's `type`.",
            "content": {"application/json": {"schema": body}},
        }
        for status in statuses
    }


def _openai_headers() -> dict[str, Any]:
    return {
        "Taskledger-Task-Id": {"schema": {"type": "string", "format": "uuid"}},
        PROVISIONAL_HEADER: _PROVISIONAL,
    }


def _audio_paths() -> dict[str, Any]:
    transcription = TranscriptionFields.model_json_schema()
    transcription["properties"]["file"] = {"type": "string", "format": "binary"}
    transcription["required"] = ["file", "model"]
    return {
        "/v1/audio/transcriptions": {
            "post": {
                "summary": "OpenAI-compatible transcription: a task, answered with its first "
                "response (or approved result, TASKLEDGER_OPENAI_ANSWER).",
                "security": [{"bearer": []}],
                "requestBody": {
                    "required": True,
                    "content": {"multipart/form-data": {"schema": transcription}},
                },
                "responses": {
                    "200": {
                        "description": "The text.",
                        "headers": _openai_headers(),
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {"text": {"type": "string"}},
                                }
                            },
                            "text/plain": {"schema": {"type": "string"}},
                        },
                    },
                    **_openai_errors(400, 401, 409, 413, 415, 429, 502, 504),
                },
            }
        },
        "/v1/audio/speech": {
            "post": {
                "summary": "OpenAI-compatible speech: a tts task, answered with its audio.",
                "security": [{"bearer": []}],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": SpeechRequest.model_json_schema()}},
                },
                "responses": {
                    "200": {
                        "description": "The WAV.",
                        "headers": _openai_headers(),
                        "content": {"audio/wav": {"schema": _BINARY}},
                    },
                    **_openai_errors(400, 401, 409, 413, 415, 429, 502, 504),
                },
            }
        },
    }


def add_answers_paths(paths: dict[str, Any]) -> dict[str, Any]:
    """``paths`` with the held intakes, the provisional result and the OpenAI paths added."""
    for path in INTAKE_PATHS:
        post = paths[path]["post"]
        post["parameters"] = [*post.get("parameters", []), *_WAIT]
        post["responses"]["200"] = {
            "description": "With `wait`: the task reached `until` (or a terminal status).",
            "headers": {"Location": {"schema": {"type": "string"}}},
            "content": {"application/json": {"schema": _STATUS}},
        }
    result = paths["/api/v1/task/{task_id}/result"]["get"]
    result["parameters"] = [
        *result["parameters"],
        {
            "name": "provisional",
            "in": "query",
            "required": False,
            "description": "true: the first response once any miner responded (409 before), "
            "the approved result after APPROVED; JSON `{task_id, type, result, provisional, "
            "miner_hotkey}` or the WAV for tts.",
            "schema": {"type": "boolean", "default": False},
        },
    ]
    result["responses"]["200"]["headers"] = {PROVISIONAL_HEADER: _PROVISIONAL}
    result["responses"].setdefault(
        "409", {"description": "Not yet.", "content": {"application/json": {"schema": _ERROR}}}
    )
    return {**paths, **_audio_paths()}
