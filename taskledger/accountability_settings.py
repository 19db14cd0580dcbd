"""Settings of accountability: checkpoints, anchors, weights on chain (``TASKLEDGER_*``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


class AccountabilitySettingsError(ValueError):
    """A setting of this module has a value we cannot use; the message names it."""


@dataclass(frozen=True, slots=True)
class AccountabilitySettings:
    checkpoint_events: int = 10_000
    checkpoint_seconds: float = 60.0
    anchors: tuple[str, ...] = ()
    # Commitments cost a fee and are rate-limited on chain: at most one per this many seconds.
    chain_anchor_seconds: float = 3600.0
    set_weights: bool = False
    weights_version_key: int = 0
    weights_seconds: float = 600.0


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise AccountabilitySettingsError(f"{name}: {raw!r} is not a number") from None
    if value <= 0:
        raise AccountabilitySettingsError(f"{name}: must be positive")
    return value


def accountability_from_environment(env: Mapping[str, str]) -> AccountabilitySettings:
    anchors = tuple(a.strip() for a in env.get("TASKLEDGER_ANCHORS", "").split(",") if a.strip())
    for anchor in anchors:
        if not (anchor.startswith(("file://", "gs://")) or anchor == "chain"):
            raise AccountabilitySettingsError(
                f"TASKLEDGER_ANCHORS: {anchor!r} is not file:///PATH, gs://BUCKET/PREFIX or chain"
            )
    set_weights = env.get("TASKLEDGER_SET_WEIGHTS", "off").strip().lower()
    if set_weights not in ("on", "off"):
        raise AccountabilitySettingsError("TASKLEDGER_SET_WEIGHTS: use on or off")
    version_key = env.get("TASKLEDGER_WEIGHTS_VERSION_KEY", "0").strip() or "0"
    if not version_key.isdigit():
        raise AccountabilitySettingsError(
            f"TASKLEDGER_WEIGHTS_VERSION_KEY: {version_key!r} is not a whole number"
        )
    events = _positive(env, "TASKLEDGER_CHECKPOINT_EVENTS", 10_000)
    if events != int(events):
        raise AccountabilitySettingsError("TASKLEDGER_CHECKPOINT_EVENTS: a whole number")
    return AccountabilitySettings(
        checkpoint_events=int(events),
        checkpoint_seconds=_positive(env, "TASKLEDGER_CHECKPOINT_SECONDS", 60.0),
        anchors=anchors,
        chain_anchor_seconds=_positive(env, "TASKLEDGER_CHAIN_ANCHOR_SECONDS", 3600.0),
        set_weights=set_weights == "on",
        weights_version_key=int(version_key),
        weights_seconds=_positive(env, "TASKLEDGER_WEIGHTS_SECONDS", 600.0),
    )
