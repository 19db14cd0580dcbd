"""`taskledger keys create|list|revoke`: client keys, on the local data directory's store
(the one the edges share) or through a running proxy's admin API (``--url --admin-key``).

Every answer is printed as JSON, the same documents as the HTTP API.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp

from events import format_time
from http_edge.key_store import KeyNameTaken, usage_day
from http_edge.key_store.manage import InvalidKeyRequest, create_key, list_keys
from http_edge.key_store.registry import describe
from processors.commands import utc_now
from taskledger.backends import open_key_store
from taskledger.settings import Settings, from_environment


class KeysFailed(Exception):
    """What went wrong, for the operator; the command exits 1."""


def add_keys_parser(commands: Any) -> None:
    keys = commands.add_parser("keys", help="create, list and revoke client keys")
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--data-dir", type=Path, help="default: $TASKLEDGER_DATA_DIR or .taskledger")
    where.add_argument("--url", help="a running proxy (with --admin-key) instead of the data dir")
    where.add_argument("--admin-key", help="an operator's key (TASKLEDGER_ADMIN_KEYS)")
    actions = keys.add_subparsers(dest="keys_action", required=True)
    create = actions.add_parser("create", parents=[where], help="a new key, printed once")
    create.add_argument("name")
    create.add_argument("--quota-per-day", type=int, default=None)
    create.add_argument("--rate", type=float, default=None, help="requests a second")
    actions.add_parser("list", parents=[where], help="every key and its use today")
    revoke = actions.add_parser("revoke", parents=[where], help="refuse a key from now on")
    revoke.add_argument("name")
    keys.set_defaults(handler=run_keys)


def run_keys(arguments: argparse.Namespace) -> int:
    try:
        if arguments.url:
            if not arguments.admin_key:
                raise KeysFailed("--url needs --admin-key")
            document = asyncio.run(_remote(arguments))
        else:
            settings = from_environment().with_overrides(data_dir=arguments.data_dir)
            document = asyncio.run(_local(settings, arguments))
    except KeysFailed as failure:
        print(f"taskledger keys: {failure}", file=sys.stderr)
        return 1
    print(json.dumps(document, indent=2))
    return 0


async def _local(settings: Settings, arguments: argparse.Namespace) -> Any:
    if not settings.data_dir.exists() and not settings.read_models.startswith("firestore://"):
        raise KeysFailed(f"no data directory at {settings.data_dir}")
    store = open_key_store(settings)
    now = utc_now()
    try:
        if arguments.keys_action == "create":
            try:
                made = await create_key(
                    store,
                    arguments.name,
                    now,
                    quota_per_day=arguments.quota_per_day,
                    rate_per_second=arguments.rate,
                )
            except InvalidKeyRequest as error:
                raise KeysFailed(str(error)) from None
            except KeyNameTaken:
                raise KeysFailed(f"a key named {arguments.name!r} exists") from None
            return made.document()
        if arguments.keys_action == "list":
            return {"keys": await list_keys(store, usage_day(now))}
        record = await store.revoke(arguments.name, now)
        if record is None:
            raise KeysFailed(f"no key named {arguments.name!r}")
        used = await store.usage(usage_day(now))
        return describe(record, used.get(record.name, 0)) | {"at": format_time(now)}
    finally:
        await store.close()


async def _remote(arguments: argparse.Namespace) -> Any:
    base = str(arguments.url).rstrip("/")
    headers = {"Authorization": f"Bearer {arguments.admin_key}"}
    if arguments.keys_action == "create":
        body: dict[str, Any] = {"name": arguments.name}
        if arguments.quota_per_day is not None:
            body["quota_per_day"] = arguments.quota_per_day
        if arguments.rate is not None:
            body["rate_per_second"] = arguments.rate
        request: tuple[str, str, dict[str, Any] | None] = (
            "POST",
            f"{base}/api/v1/admin/keys",
            body,
        )
    elif arguments.keys_action == "list":
        request = ("GET", f"{base}/api/v1/admin/keys", None)
    else:
        request = ("DELETE", f"{base}/api/v1/admin/keys/{arguments.name}", None)
    method, url, json_body = request
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
            session.request(method, url, json=json_body, headers=headers) as response,
        ):
            try:
                document = await response.json(content_type=None)
            except ValueError:
                document = None
            if response.status >= 400:
                error = (document or {}).get("error", {}) if isinstance(document, dict) else {}
                message = error.get("message") or f"HTTP {response.status}"
                raise KeysFailed(f"{message} ({response.status})")
            return document
    except aiohttp.ClientError as error:
        raise KeysFailed(f"cannot reach {base}: {error}") from None
