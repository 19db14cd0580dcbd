"""Printing benchmark figures and keeping them in BENCHMARKS.md."""

from __future__ import annotations

import json
import os
import platform
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_HEADER = (
    "# Benchmarks\n\nFigures written by `taskledger bench …`; "
    "rerun the command to refresh its section.\n"
)


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f", {pages / 2**30:.0f} GiB"
    except (ValueError, OSError):
        pass
    return (
        f"{os.cpu_count()} cores ({model}){memory}, {platform.system()} {platform.release()}, "
        f"Python {sys.version.split()[0]}"
    )


def record(section: str, body: str, path: Path = Path("BENCHMARKS.md")) -> None:
    """Replace (or add) one section of BENCHMARKS.md, leaving the others as they are."""
    start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    block = f"{start}\n{body.rstrip()}\n\n_Measured {stamp} on {machine()}._\n{end}"
    text = path.read_text() if path.exists() else _HEADER
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    text = (
        pattern.sub(lambda _: block, text)
        if pattern.search(text)
        else text.rstrip() + "\n\n" + block + "\n"
    )
    path.write_text(text)


def publish(
    section: str, figures: dict[str, Any], text: str, markdown: str, *, as_json: bool, keep: bool
) -> int:
    """Print the figures (as text or JSON) and, when ``keep``, write their section."""
    print(json.dumps(figures, indent=2) if as_json else text)
    if keep:
        record(section, markdown)
    return 0
