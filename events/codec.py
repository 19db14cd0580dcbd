"""Canonical encoding: the exact bytes that are hashed and stored.

Sorted keys and no insignificant whitespace, so the same event always encodes
to the same bytes in any process and any language that follows the rule.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import orjson

GENESIS_HASH = "0" * 64


def canonical(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def decode(raw: bytes | str) -> Any:
    return orjson.loads(raw)


def sha256_hex(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


# The moments spelled most recently: a command's time is spelled once per command, and
# the commands that arrive together (or a task's next ones) often share their moment.
_SPELLED: dict[datetime, str] = {}
_SPELLED_MAX = 4096


def format_time(moment: datetime) -> str:
    """ISO 8601 in UTC with microseconds and a trailing Z: one spelling per instant."""
    text = _SPELLED.get(moment)
    if text is None:
        if len(_SPELLED) >= _SPELLED_MAX:
            _SPELLED.clear()
        text = _SPELLED[moment] = _spelled(moment)
    return text


def _spelled(moment: datetime) -> str:
    if moment.tzinfo is not UTC:
        if moment.tzinfo is None:
            raise ValueError("times must be timezone-aware")
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="microseconds")[:-6] + "Z"  # without "+00:00"


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
