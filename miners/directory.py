"""The miner directory port: which miners exist, and which hotkeys may validate.

Backends: :class:`StaticMinerDirectory` (a list, e.g. from a miners file or
dev's reference miners), ``MetagraphDirectory`` (the chain) and
:class:`CombinedDirectory` over any of them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from bittensor.sp_core import ss58_decode

# The task types of the API; a miner advertises the ones it serves.
CAPABILITIES: frozenset[str] = frozenset({"transcription", "tts", "summarization"})

_FIELDS = frozenset({"hotkey", "url", "capabilities"})


@dataclass(frozen=True, slots=True)
class MinerInfo:
    """A miner reachable at ``url`` (``POST <url>/task``) under ``hotkey``."""

    hotkey: str
    url: str
    capabilities: frozenset[str]
    uid: int | None = None  # its slot on the subnet (from the metagraph); None off chain

    def __post_init__(self) -> None:
        if not self.hotkey:
            raise ValueError("hotkey is empty")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url {self.url!r} is not an http(s) URL with a host")
        if parts.query or parts.fragment or self.url.endswith("/"):
            raise ValueError(
                f"url {self.url!r} must be a base URL without query, fragment or trailing '/'"
            )
        unknown = self.capabilities - CAPABILITIES
        if unknown:
            raise ValueError(
                f"unknown capabilities {sorted(unknown)} (known: {sorted(CAPABILITIES)})"
            )


class MinerDirectory(Protocol):
    async def miners(self) -> list[MinerInfo]: ...

    async def validators(self) -> frozenset[str]:
        """Hotkeys allowed to fetch DONE tasks and submit evaluations."""
        ...


class MinersFileError(ValueError):
    """A miners file is unreadable or invalid; the message names the entry."""


class StaticMinerDirectory:
    """A fixed set of miners and validators."""

    def __init__(self, miners: Iterable[MinerInfo], validators: Iterable[str] = ()) -> None:
        self._miners = list(miners)
        hotkeys = [miner.hotkey for miner in self._miners]
        duplicates = sorted({hotkey for hotkey in hotkeys if hotkeys.count(hotkey) > 1})
        if duplicates:
            raise ValueError(f"duplicate miner hotkeys: {duplicates}")
        self._validators = frozenset(validators)

    async def miners(self) -> list[MinerInfo]:
        return list(self._miners)

    async def validators(self) -> frozenset[str]:
        return self._validators


class CombinedDirectory:
    """The union of several directories.

    A hotkey listed by more than one keeps the entry of the first directory
    given, so order is priority. A failing directory fails the whole call:
    quietly serving a subset would hide a broken source.
    """

    def __init__(self, *directories: MinerDirectory) -> None:
        self._directories = directories

    async def miners(self) -> list[MinerInfo]:
        listings = await asyncio.gather(*(d.miners() for d in self._directories))
        merged: dict[str, MinerInfo] = {}
        for listing in listings:
            for miner in listing:
                merged.setdefault(miner.hotkey, miner)
        return list(merged.values())

    async def validators(self) -> frozenset[str]:
        sets = await asyncio.gather(*(d.validators() for d in self._directories))
        return frozenset().union(*sets)


def load_miners_file(path: Path) -> list[MinerInfo]:
    """Read a JSON list of ``{"hotkey", "url", "capabilities"}`` objects, strictly.

    Raises :class:`MinersFileError` naming the file and the offending entry.
    """
    where = f"miners file {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise MinersFileError(f"{where}: cannot read: {error}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise MinersFileError(
            f"{where}: not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None
    if not isinstance(document, list):
        raise MinersFileError(
            f"{where}: expected a JSON list of miners, got {_json_type(document)}"
        )
    miners: list[MinerInfo] = []
    first_index: dict[str, int] = {}
    for index, entry in enumerate(document):
        miner = _parse_entry(entry, f"{where}: entries[{index}]")
        if miner.hotkey in first_index:
            raise MinersFileError(
                f"{where}: entries[{index}] repeats hotkey {miner.hotkey} "
                f"of entries[{first_index[miner.hotkey]}]"
            )
        first_index[miner.hotkey] = index
        miners.append(miner)
    return miners


def _parse_entry(entry: Any, where: str) -> MinerInfo:
    if not isinstance(entry, dict):
        raise MinersFileError(f"{where}: expected an object, got {_json_type(entry)}")
    hotkey = entry.get("hotkey")
    if isinstance(hotkey, str):
        where = f"{where} (hotkey {hotkey})"
    missing = sorted(_FIELDS - entry.keys())
    if missing:
        raise MinersFileError(f"{where}: missing field(s) {', '.join(missing)}")
    unknown = sorted(entry.keys() - _FIELDS)
    if unknown:
        raise MinersFileError(f"{where}: unknown field(s) {', '.join(unknown)}")
    url, capabilities = entry["url"], entry["capabilities"]
    if not isinstance(hotkey, str):
        raise MinersFileError(f"{where}: hotkey must be a string, got {_json_type(hotkey)}")
    try:
        ss58_decode(hotkey)
    except ValueError:
        raise MinersFileError(f"{where}: hotkey is not a valid SS58 address") from None
    if not isinstance(url, str):
        raise MinersFileError(f"{where}: url must be a string, got {_json_type(url)}")
    if not isinstance(capabilities, list) or not all(isinstance(c, str) for c in capabilities):
        raise MinersFileError(f"{where}: capabilities must be a list of strings")
    if not capabilities:
        raise MinersFileError(f"{where}: capabilities is empty; a miner must serve something")
    try:
        return MinerInfo(hotkey=hotkey, url=url.rstrip("/"), capabilities=frozenset(capabilities))
    except ValueError as error:
        raise MinersFileError(f"{where}: {error}") from None


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")
