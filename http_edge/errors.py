"""Every error the edge answers with, in the one shape of the contract.

``{"error": {"code": "<snake_case>", "message": "<human text>"}}`` with the
right status. Domain errors are mapped to statuses here and nowhere else;
anything unexpected becomes a logged 500 whose body says nothing about why.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Handler
from aiohttp.web import RequestPayloadError

from aggregates import (
    AlreadyAnswered,
    DomainError,
    IllegalTransition,
    InvalidCommand,
    MinerAlreadyAssigned,
    MinerNotAssigned,
    TaskAlreadyExists,
    TaskNotFound,
)
from blobs.port import BlobNotFound
from events import LogUnavailable, StaleVersion
from miners.btauth import AuthFailed
from processors.intake import QuotaExceeded
from processors.results import InvalidResult

log = logging.getLogger(__name__)

CLIENT_GONE: Final = 499
"""The status recorded (never sent) for a request whose client disconnected."""

DOMAIN_STATUS: Mapping[type[DomainError], int] = {
    TaskNotFound: 404,
    IllegalTransition: 409,
    AlreadyAnswered: 409,
    TaskAlreadyExists: 409,
    MinerNotAssigned: 403,
    InvalidCommand: 400,
    MinerAlreadyAssigned: 400,
}

# Codes for aiohttp's own refusals (unknown route, wrong method, body too large, ...).
_HTTP_CODES: Mapping[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "unavailable",
}


class ApiError(Exception):
    """An error answer the edge chose deliberately: status, stable code, message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        return error_response(self.status, self.code, self.message, self.headers)


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    response = web.json_response(error_body(code, message), status=status, headers=headers)
    if status in (408, 413):
        # The rest of an oversized or trickled body is not worth a kept-alive connection.
        response.force_close()
    return response


def as_api_error(error: Exception) -> ApiError | None:
    """The contract's answer for an exception a handler let through, if it is a known kind."""
    match error:
        case ApiError():
            return error
        case DomainError():
            status = next((s for kind, s in DOMAIN_STATUS.items() if isinstance(error, kind)), 400)
            return ApiError(status, error.code, error.message)
        case QuotaExceeded():
            return ApiError(429, "quota_exceeded", str(error), headers={"Retry-After": "3600"})
        case InvalidResult():
            return ApiError(400, "invalid_result", str(error))
        case AuthFailed():
            return ApiError(401, error.code, error.message)
        case BlobNotFound():
            return ApiError(404, "not_found", "no such file")
        case StaleVersion():
            # Eight concurrent writers beat us to this task in a row: try again shortly.
            return ApiError(
                503, "busy", "the task is changing too fast; retry", headers={"Retry-After": "1"}
            )
        case LogUnavailable():
            # The command may still be decided: a retry with the same Idempotency-Key is safe.
            return ApiError(503, "unavailable", str(error), headers={"Retry-After": "1"})
    return None


def _from_http_exception(error: web.HTTPException) -> web.StreamResponse:
    status = error.status
    code = _HTTP_CODES.get(status, f"http_{status}")
    headers = {"Allow": error.headers["Allow"]} if "Allow" in error.headers else None
    return error_response(status, code, _phrase(status), headers)


def _phrase(status: int) -> str:
    messages = {
        404: "no such endpoint",
        405: "method not allowed on this endpoint",
        413: "the request body is too large",
    }
    if status in messages:
        return messages[status]
    try:
        return HTTPStatus(status).phrase.lower()
    except ValueError:
        return "request refused"


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return _from_http_exception(error)
    except ConnectionResetError:
        # The client went away mid-request (usually mid-body): nobody is left to
        # answer, and it is not our failure. Counted apart, as nginx's 499.
        log.debug("client left during %s %s", request.method, request.path)
        return web.Response(status=CLIENT_GONE)
    except RequestPayloadError:
        # The body's framing is broken (bad chunk sizes, a truncated compressed body).
        return error_response(400, "invalid_body", "the request body is malformed")
    except Exception as error:
        known = as_api_error(error)
        if known is not None:
            return known.response()
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, "internal_error", "internal server error")
