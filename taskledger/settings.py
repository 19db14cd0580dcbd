"""Settings: read once from the environment (``TASKLEDGER_*``) and the command line."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from events import TASK_TYPES
from taskledger.accountability_settings import (
    AccountabilitySettings,
    AccountabilitySettingsError,
    accountability_from_environment,
)


class SettingsError(ValueError):
    """A setting has a value we cannot use; the message names it."""


def _accountability(env: Mapping[str, str]) -> AccountabilitySettings:
    try:
        return accountability_from_environment(env)
    except AccountabilitySettingsError as error:
        raise SettingsError(str(error)) from None


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path = Path(".taskledger")
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str | None = None
    event_log: str = "sqlite"
    read_models: str = "sqlite"
    blobs: str = "local"
    durability: str = "full"
    # Where the read models are folded. Embedded log, processors-only process: "inline"
    # in its own event loop, or "process" in a child process of its own. Kafka: each
    # processors process runs a projection worker ("inline", the default), or none
    # ("workers": projection workers of their own, `serve --role projections`, do it).
    projection: str = "inline"
    api_keys: dict[str, str] = field(default_factory=dict)
    admin_keys: dict[str, str] = field(default_factory=dict)
    validator_hotkeys: tuple[str, ...] = ()
    miners_file: Path | None = None
    miners_per_type: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TASK_TYPES, 3))
    miner_timeout_seconds: float = 30.0
    task_deadline_seconds: float = 120.0
    max_upload_bytes: int = 25 * 1024 * 1024
    rate_per_second: float = 200.0
    rate_burst: int = 400
    peer_rate_per_second: float = 200.0
    peer_rate_burst: int = 400
    idle_timeout_seconds: float = 5.0
    body_min_bytes_per_second: float = 10_000.0
    body_grace_seconds: float = 10.0
    max_connections: int = 4096
    # Send work to loopback, private and link-local miner addresses too (dev, tests).
    allow_private_miners: bool = False
    retention_seconds: float = 7 * 24 * 3600.0
    wallet: str = "taskledger-proxy"
    chain_endpoint: str | None = None
    netuid: int | None = None
    metagraph_refresh_seconds: float = 300.0
    link_secret: str | None = None
    # The OpenAI-compatible endpoints answer with the first response or the approved result.
    openai_answer: str = "first_response"
    openai_timeout_seconds: float = 60.0
    accountability: AccountabilitySettings = field(default_factory=AccountabilitySettings)

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def wallets_dir(self) -> Path:
        return self.data_dir / "wallets"

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **{key: value for key, value in changes.items() if value is not None})


def _pairs(text: str, name: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise SettingsError(f"{name}: expected name=value, got {item!r}")
        found[key.strip()] = value.strip()
    return found


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}: {raw!r} is not a number") from None
    if value <= 0:
        raise SettingsError(f"{name}: must be positive")
    return value


def _switch(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise SettingsError(f"{name}: use on or off")


def _miners_per_type(raw: str) -> dict[str, int]:
    counts: dict[str, int] = dict.fromkeys(TASK_TYPES, 3)
    if raw.strip().isdigit():
        return dict.fromkeys(TASK_TYPES, max(1, int(raw)))
    for task_type, value in _pairs(raw, "TASKLEDGER_MINERS_PER_TASK").items():
        if task_type not in counts or not value.isdigit() or int(value) < 1:
            raise SettingsError(f"TASKLEDGER_MINERS_PER_TASK: bad entry {task_type}={value}")
        counts[task_type] = int(value)
    return counts


def from_environment(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    get = env.get
    defaults = Settings()
    durability = get("TASKLEDGER_DURABILITY", defaults.durability)
    if durability not in ("full", "normal"):
        raise SettingsError("TASKLEDGER_DURABILITY: use full or normal")
    projection = get("TASKLEDGER_PROJECTION", defaults.projection)
    if projection not in ("inline", "process", "workers"):
        raise SettingsError("TASKLEDGER_PROJECTION: use inline, process or workers")
    port = get("TASKLEDGER_PORT")
    if port is not None and not port.isdigit():
        raise SettingsError(f"TASKLEDGER_PORT: {port!r} is not a port number")
    netuid = get("TASKLEDGER_NETUID")
    openai_answer = get("TASKLEDGER_OPENAI_ANSWER", defaults.openai_answer)
    if openai_answer not in ("first_response", "approved"):
        raise SettingsError("TASKLEDGER_OPENAI_ANSWER: use first_response or approved")
    miners_file = get("TASKLEDGER_MINERS_FILE")
    return Settings(
        data_dir=Path(get("TASKLEDGER_DATA_DIR", str(defaults.data_dir))),
        host=get("TASKLEDGER_HOST", defaults.host),
        port=int(port) if port else defaults.port,
        public_url=get("TASKLEDGER_PUBLIC_URL") or None,
        event_log=get("TASKLEDGER_EVENT_LOG", defaults.event_log),
        read_models=get("TASKLEDGER_READ_MODELS", defaults.read_models),
        blobs=get("TASKLEDGER_BLOBS", defaults.blobs),
        durability=durability,
        projection=projection,
        api_keys=_pairs(get("TASKLEDGER_API_KEYS", ""), "TASKLEDGER_API_KEYS"),
        admin_keys=_pairs(get("TASKLEDGER_ADMIN_KEYS", ""), "TASKLEDGER_ADMIN_KEYS"),
        validator_hotkeys=tuple(
            filter(None, (h.strip() for h in get("TASKLEDGER_VALIDATOR_HOTKEYS", "").split(",")))
        ),
        miners_file=Path(miners_file) if miners_file else None,
        miners_per_type=_miners_per_type(get("TASKLEDGER_MINERS_PER_TASK", "3")),
        miner_timeout_seconds=_number(env, "TASKLEDGER_MINER_TIMEOUT", 30.0),
        task_deadline_seconds=_number(env, "TASKLEDGER_TASK_DEADLINE", 120.0),
        max_upload_bytes=int(_number(env, "TASKLEDGER_MAX_UPLOAD_BYTES", 25 * 1024 * 1024)),
        rate_per_second=_number(env, "TASKLEDGER_RATE_LIMIT", 200.0),
        rate_burst=int(_number(env, "TASKLEDGER_RATE_BURST", 400)),
        peer_rate_per_second=_number(env, "TASKLEDGER_PEER_RATE_LIMIT", 200.0),
        peer_rate_burst=int(_number(env, "TASKLEDGER_PEER_RATE_BURST", 400)),
        idle_timeout_seconds=_number(env, "TASKLEDGER_IDLE_TIMEOUT", 5.0),
        body_min_bytes_per_second=_number(env, "TASKLEDGER_BODY_MIN_RATE", 10_000.0),
        body_grace_seconds=_number(env, "TASKLEDGER_BODY_GRACE", 10.0),
        max_connections=int(_number(env, "TASKLEDGER_MAX_CONNECTIONS", 4096)),
        allow_private_miners=_switch(env, "TASKLEDGER_ALLOW_PRIVATE_MINERS"),
        retention_seconds=_number(env, "TASKLEDGER_RETENTION_SECONDS", 7 * 24 * 3600.0),
        wallet=get("TASKLEDGER_WALLET", defaults.wallet),
        chain_endpoint=get("TASKLEDGER_CHAIN_ENDPOINT") or None,
        netuid=int(netuid) if netuid and netuid.isdigit() else None,
        metagraph_refresh_seconds=_number(env, "TASKLEDGER_METAGRAPH_REFRESH", 300.0),
        link_secret=get("TASKLEDGER_LINK_SECRET") or None,
        openai_answer=openai_answer,
        openai_timeout_seconds=_number(env, "TASKLEDGER_OPENAI_TIMEOUT", 60.0),
        accountability=_accountability(env),
    )
