"""The README's production table says what the settings really default to."""

from __future__ import annotations

import re
from pathlib import Path

from taskledger.settings import from_environment

README = Path(__file__).resolve().parents[2] / "README.md"

FIELDS = {
    "TASKLEDGER_IDLE_TIMEOUT": "idle_timeout_seconds",
    "TASKLEDGER_BODY_MIN_RATE": "body_min_bytes_per_second",
    "TASKLEDGER_BODY_GRACE": "body_grace_seconds",
    "TASKLEDGER_MAX_CONNECTIONS": "max_connections",
    "TASKLEDGER_MAX_UPLOAD_BYTES": "max_upload_bytes",
    "TASKLEDGER_RATE_LIMIT": "rate_per_second",
    "TASKLEDGER_RATE_BURST": "rate_burst",
    "TASKLEDGER_PEER_RATE_LIMIT": "peer_rate_per_second",
    "TASKLEDGER_PEER_RATE_BURST": "peer_rate_burst",
    "TASKLEDGER_ALLOW_PRIVATE_MINERS": "allow_private_miners",
}


def documented_defaults() -> dict[str, str]:
    section = README.read_text().split("## Running in production", 1)[1].split("\n## ", 1)[0]
    found: dict[str, str] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`TASKLEDGER_"):
            names = re.findall(r"`(TASKLEDGER_\w+)`", cells[0])
            values = re.findall(r"`([^`]+)`", cells[1])
            found.update(zip(names, values, strict=True))
    return found


def test_every_documented_default_is_the_real_one() -> None:
    documented = documented_defaults()
    assert set(documented) == set(FIELDS)
    defaults = from_environment({})
    for name, value in documented.items():
        actual = getattr(defaults, FIELDS[name])
        expected = {"off": False, "on": True}.get(value, value)
        if isinstance(actual, bool):
            assert actual is expected, name
        else:
            assert float(actual) == float(expected), name


def test_each_setting_is_read_from_its_variable() -> None:
    changed = from_environment(
        {
            "TASKLEDGER_IDLE_TIMEOUT": "2.5",
            "TASKLEDGER_BODY_MIN_RATE": "500",
            "TASKLEDGER_BODY_GRACE": "3",
            "TASKLEDGER_MAX_CONNECTIONS": "64",
            "TASKLEDGER_PEER_RATE_LIMIT": "7",
            "TASKLEDGER_PEER_RATE_BURST": "9",
            "TASKLEDGER_ALLOW_PRIVATE_MINERS": "on",
        }
    )
    assert (changed.idle_timeout_seconds, changed.body_min_bytes_per_second) == (2.5, 500.0)
    assert (changed.body_grace_seconds, changed.max_connections) == (3.0, 64)
    assert (changed.peer_rate_per_second, changed.peer_rate_burst) == (7.0, 9)
    assert changed.allow_private_miners is True
