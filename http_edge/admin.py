"""Operator endpoints: who is an operator, and client keys as data (``/api/v1/admin/keys``)."""

from __future__ import annotations

from typing import Annotated, Any, Final

from aiohttp import web
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictFloat, StrictInt

from http_edge.anchor_figures import LogAnchors
from http_edge.auth import ClientKeys
from http_edge.bodies import parse_model, read_json_body
from http_edge.errors import ApiError
from http_edge.key_store import KeyNameTaken, usage_day
from http_edge.key_store.manage import InvalidKeyRequest, create_key, list_keys
from http_edge.key_store.registry import KeyRegistry, describe
from http_edge.keys import CONTEXT, context_of
from http_edge.schemas import whole_number

_BEARER: Final = "bearer "
_CHALLENGE: Final = {"WWW-Authenticate": 'Bearer realm="taskledger-admin"'}
ADMIN_KEYS: Final = web.AppKey("admin_keys", ClientKeys)


class NewKeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    quota_per_day: Annotated[StrictInt, BeforeValidator(whole_number)] | None = None
    rate_per_second: StrictFloat | StrictInt | None = None


def authenticate_admin(request: web.Request) -> str:
    """The operator behind ``Authorization: Bearer <admin key>``: 401 without a key
    we know, 403 for a client's key."""
    header = request.headers.get("Authorization", "")
    if header[: len(_BEARER)].lower() != _BEARER:
        raise ApiError(
            401, "missing_credentials", "send Authorization: Bearer <admin key>", headers=_CHALLENGE
        )
    presented = header[len(_BEARER) :].strip()
    admin = request.app[ADMIN_KEYS].client_for(presented)
    if admin is not None:
        return admin
    context = context_of(request)
    clients = context.client_keys or ClientKeys(context.api_keys)
    if clients.client_for(presented) is not None:
        raise ApiError(403, "not_an_operator", "a client key cannot use operator endpoints")
    raise ApiError(401, "invalid_credentials", "the admin key is not valid", headers=_CHALLENGE)


def _registry(request: web.Request) -> KeyRegistry:
    registry = context_of(request).client_keys
    if registry is None:
        raise ApiError(503, "unavailable", "this edge keeps no client keys")
    return registry


async def create(request: web.Request) -> web.Response:
    authenticate_admin(request)
    registry = _registry(request)
    context = context_of(request)
    wanted = parse_model(
        NewKeyRequest, await read_json_body(request, context.limits.max_json_bytes)
    )
    rate = float(wanted.rate_per_second) if wanted.rate_per_second is not None else None
    try:
        made = await create_key(
            registry.store,
            wanted.name,
            context.clock(),
            quota_per_day=wanted.quota_per_day,
            rate_per_second=rate,
        )
    except InvalidKeyRequest as error:
        raise ApiError(400, "invalid_request", str(error)) from None
    except KeyNameTaken:
        raise ApiError(409, "name_in_use", f"a key named {wanted.name!r} exists") from None
    await registry.reload()  # usable here at once; on other edges within their refresh
    return web.json_response(made.document(), status=201)


async def listing(request: web.Request) -> web.Response:
    authenticate_admin(request)
    registry = _registry(request)
    await registry.flush()
    keys: list[dict[str, Any]] = await list_keys(
        registry.store, usage_day(context_of(request).clock())
    )
    return web.json_response({"keys": keys})


async def revoke(request: web.Request) -> web.Response:
    authenticate_admin(request)
    registry = _registry(request)
    name = request.match_info["name"]
    context = context_of(request)
    record = await registry.store.revoke(name, context.clock())
    if record is None:
        raise ApiError(404, "not_found", f"no key named {name!r}")
    await registry.reload()
    used = await registry.store.usage(usage_day(context.clock()))
    return web.json_response(describe(record, used.get(name, 0)))


def add_routes(app: web.Application) -> None:
    """Register the operator endpoints (keys, stats, miners, dashboard) on ``app``."""
    from http_edge import admin_stats, dashboard

    context = app[CONTEXT]
    app[ADMIN_KEYS] = ClientKeys(context.admin_keys)
    app[admin_stats.STATS_CACHE] = admin_stats.StatsCache()
    anchors: admin_stats.AnchorSource = LogAnchors(
        context.log_features.checkpoints, context.anchor_sinks
    )
    app[admin_stats.ANCHORS] = anchors
    add = app.router
    add.add_post("/api/v1/admin/keys", create)
    add.add_get("/api/v1/admin/keys", listing)
    add.add_delete("/api/v1/admin/keys/{name}", revoke)
    add.add_get("/api/v1/admin/miners", admin_stats.miners)
    add.add_get("/api/v1/admin/stats", admin_stats.stats)
    dashboard.add_routes(app)
