"""`taskledger bench http --dashboard`: lifecycles/s with the operators' dashboard open,
as a ratio to the same run without it.

The dashboard is one client polling as the page does (``/api/v1/admin/stats``
every second, ``/api/v1/admin/miners`` every two). Runs with and without it
alternate, each on a fresh system, and the ratio is of the medians, so that a
drift of the machine over time touches both sides alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

from bench.http_load import Load, lifecycle_phase, start_servers, stop
from bench.http_server import ADMIN_KEY


async def poll_dashboard(session: aiohttp.ClientSession, url: str) -> int:
    """Poll like the page until cancelled; the number of polls answered 200."""
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    answered = 0
    tick = 0
    try:
        while True:
            paths = ["/api/v1/admin/stats"] + (["/api/v1/admin/miners"] if tick % 2 == 0 else [])
            for path in paths:
                async with session.get(f"{url}{path}", headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"the dashboard's {path} answered {response.status}")
                    answered += 1
            tick += 1
            await asyncio.sleep(1.0)
    except asyncio.CancelledError:
        return answered


async def _run(url: str, key: str, tasks: int, dashboard: bool) -> dict[str, Any]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:
        load = Load(session, url, key, lean=True)
        poller = asyncio.create_task(poll_dashboard(session, url)) if dashboard else None
        try:
            result = await lifecycle_phase(load, tasks)
        finally:
            polls = 0
            if poller is not None:
                poller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    polls = await poller
            await load.close()
        if dashboard:
            if polls == 0:
                raise RuntimeError("the dashboard was never answered during the run")
            result["dashboard_polls"] = polls
        return result


def run_dashboard_bench(tasks: int = 2000, rounds: int = 3) -> dict[str, Any]:
    runs: dict[str, list[float]] = {"without": [], "with": []}
    polls = 0
    for _ in range(rounds):
        for side in ("without", "with"):
            with tempfile.TemporaryDirectory(prefix="taskledger-dashboard-bench-") as directory:
                processes, url, key = start_servers(Path(directory))
                try:
                    result = asyncio.run(_run(url, key, tasks, side == "with"))
                finally:
                    stop(processes)
            runs[side].append(result["lifecycles_per_second"])
            polls += int(result.get("dashboard_polls", 0))
    without, with_dashboard = statistics.median(runs["without"]), statistics.median(runs["with"])
    return {
        "tasks": tasks,
        "rounds": rounds,
        "without_dashboard_per_second": without,
        "with_dashboard_per_second": with_dashboard,
        "ratio": with_dashboard / without,
        "runs": runs,
        "dashboard_polls": polls,
    }
