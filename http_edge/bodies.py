"""Reading what a request carries: bounded bodies, JSON into models, path and query values.

Every way input can be malformed ends in a 400, 413 or 415 here, never in a 500.
"""

from __future__ import annotations

import uuid
from typing import Final, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from http_edge.errors import ApiError
from http_edge.pace import Pace

_CHUNK: Final = 64 * 1024

Model = TypeVar("Model", bound=BaseModel)


def is_json(content_type: str) -> bool:
    return content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


def require_json(request: web.Request) -> None:
    if not is_json(request.content_type):
        raise ApiError(
            415, "unsupported_media_type", "send the body as Content-Type: application/json"
        )


def too_large(limit: int) -> ApiError:
    return ApiError(413, "too_large", f"the request body is larger than {limit} bytes")


def refuse_declared_oversize(request: web.Request, limit: int) -> None:
    """Answer 413 from Content-Length alone, before reading a byte of the body."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise too_large(limit)


async def read_bounded(request: web.Request, limit: int) -> bytes:
    """The whole body, refusing with 413 as soon as more than ``limit`` bytes arrive,
    and with 408 if they arrive too slowly."""
    refuse_declared_oversize(request, limit)
    chunks: list[bytes] = []
    size = 0
    pace = Pace.of(request)
    content = request.content
    while chunk := await pace.take(content.read(_CHUNK)):
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json_body(request: web.Request, limit: int) -> bytes:
    """A JSON body's raw bytes (kept raw: btauth/1 signs them), 415 for another type."""
    require_json(request)
    return await read_bounded(request, limit)


def parse_model(model: type[Model], body: bytes | str) -> Model:
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        raise invalid_input(error) from None


def invalid_input(error: ValidationError) -> ApiError:
    problems = error.errors(include_url=False, include_input=False)
    if any(problem["type"] == "json_invalid" for problem in problems):
        return ApiError(400, "invalid_json", "the body is not valid JSON")
    described = []
    for problem in problems[:5]:
        where = ".".join(str(part) for part in problem["loc"]) or "body"
        described.append(f"{where}: {_message(problem)}")
    return ApiError(400, "invalid_request", "; ".join(described))


def _message(problem: ErrorDetails) -> str:
    if problem.get("ctx", {}).get("pattern") == r"\S":  # the schemas' "not blank"
        return "must contain a character that is not whitespace"
    return str(problem["msg"])


def path_task_id(request: web.Request) -> str:
    """The ``{task_id}`` of the path, as the canonical lowercase UUID; 400 if it is none."""
    return parse_task_id(request.match_info["task_id"])


def parse_task_id(raw: str) -> str:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise ApiError(400, "invalid_task_id", "a task id is a UUID") from None


def query_int(request: web.Request, name: str, *, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "invalid_query", f"{name} must be an integer") from None
    if not low <= value <= high:
        raise ApiError(400, "invalid_query", f"{name} must be between {low} and {high}")
    return value
