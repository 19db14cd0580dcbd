"""The operator endpoints' part of the OpenAPI document (``/api/v1/admin/*``, ``/dashboard``)."""

from __future__ import annotations

from typing import Any, Final

_ADMIN: Final[list[dict[str, list[str]]]] = [{"admin": []}]
_NAME: Final = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_HTML: Final = {"text/html": {"schema": {"type": "string"}}}
_ERROR: Final = {"$ref": "#/components/schemas/ErrorBody"}


def _object(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema or {"type": "object"}}},
    }


def _errors(*statuses: int) -> dict[str, Any]:
    reasons = {
        400: "Invalid request.",
        401: "No admin key, or not a valid one.",
        403: "A client key: operators only.",
        404: "No such key.",
        409: "A key with this name exists.",
        408: "The body came too slowly.",
        413: "Too large.",
        415: "Not a JSON body (Content-Type: application/json).",
    }
    return {str(s): _object(reasons[s], _ERROR) for s in statuses}


_KEY_LIMITS: Final = {
    # As http_edge.key_store.manage.check_limits enforces them.
    "quota_per_day": {"type": ["integer", "null"], "minimum": 0, "maximum": 10**12},
    "rate_per_second": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 10**6},
}
_KEY_ENTRY: Final = {
    "type": "object",
    "required": ["name", "quota_per_day", "rate_per_second", "created_at", "revoked", "used_today"],
    "properties": {
        "name": {"type": "string"},
        **_KEY_LIMITS,
        "created_at": {"type": "string", "format": "date-time"},
        "revoked": {"type": "boolean"},
        "used_today": {"type": "integer"},
    },
}


def admin_paths() -> dict[str, Any]:
    return {
        "/api/v1/admin/keys": {
            "post": {
                "summary": "Create a client key (shown once; only its hash is kept).",
                "security": _ADMIN,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["name"],
                                "additionalProperties": False,
                                "properties": {
                                    "name": {
                                        "type": "string",
                                        "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
                                    },
                                    **_KEY_LIMITS,
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "201": _object("The new key."),
                    **_errors(400, 401, 403, 408, 409, 413, 415),
                },
            },
            "get": {
                "summary": "Every client key, never the key itself.",
                "security": _ADMIN,
                "responses": {
                    "200": _object(
                        "The keys.",
                        {
                            "type": "object",
                            "required": ["keys"],
                            "properties": {"keys": {"type": "array", "items": _KEY_ENTRY}},
                        },
                    ),
                    **_errors(401, 403),
                },
            },
        },
        "/api/v1/admin/keys/{name}": {
            "delete": {
                "summary": "Revoke a client key: refused on every edge within 5 seconds.",
                "security": _ADMIN,
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": _object("The revoked key.", _KEY_ENTRY),
                    **_errors(401, 403, 404),
                },
            }
        },
        "/api/v1/admin/miners": {
            "get": {
                "summary": "Every known miner with its statistics and weight.",
                "security": _ADMIN,
                "responses": {"200": _object("The miners."), **_errors(401, 403)},
            }
        },
        "/api/v1/admin/stats": {
            "get": {
                "summary": "The dashboard's figures.",
                "security": _ADMIN,
                "responses": {"200": _object("The figures."), **_errors(401, 403)},
            }
        },
        "/dashboard": {
            "get": {
                "summary": "The operators' live page (asks for the admin key).",
                "security": [],
                "responses": {
                    "200": {
                        "description": "HTML.",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/dashboard/static/{name}": {
            "get": {
                "summary": "The page's script and style sheet.",
                "security": [],
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {"description": "The file."},
                    "404": _object("No such file.", _ERROR),
                },
            }
        },
    }


ADMIN_SCHEME: Final = {
    "type": "http",
    "scheme": "bearer",
    "description": "Operator's admin key (TASKLEDGER_ADMIN_KEYS).",
}
