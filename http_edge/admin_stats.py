"""``GET /api/v1/admin/miners`` and ``GET /api/v1/admin/stats``: the operators' figures.

Everything comes from the read models (either store) and the processors' own
figures; nothing here reads the log. The figures of the last 15 minutes are
read from the most recent tasks of each status (at most ``SAMPLE`` each), so a
dashboard costs the same at 10 tasks a minute as at 10,000: past the sample the
rates are measured over the span the sample covers, and ``sampled`` says so.
The answer is kept for a second, so any number of open dashboards cost one read.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, Final

from aiohttp import web

from aggregates import STATUSES, TaskState
from events import format_time
from http_edge.admin import authenticate_admin
from http_edge.context import EdgeContext
from http_edge.health import miner_figures
from http_edge.keys import context_of
from projections.miner_stats import MinerStats, normalised_weights

WINDOW: Final = timedelta(minutes=15)
SAMPLE: Final = 200
FAILURES_SHOWN: Final = 20
CACHE_SECONDS: Final = 1.0
# However many tasks the read models hold, reading the figures takes at most this share
# of the edge's time: a read that took d seconds is kept for d / COST_SHARE at least.
COST_SHARE: Final = 0.05

AnchorSource = Callable[[], Awaitable[dict[str, Any]]]
# Where the dashboard learns of signed checkpoints and their anchors (set by
# ``admin.add_routes``; see ``http_edge.anchor_figures``).
ANCHORS: Final[web.AppKey[AnchorSource]] = web.AppKey("anchors")


class StatsCache:
    """The last stats document and when it was made (monotonic seconds)."""

    def __init__(self) -> None:
        self.made = -math.inf
        self.keep = CACHE_SECONDS
        self.document: dict[str, Any] = {}


STATS_CACHE: Final = web.AppKey("admin_stats_cache", StatsCache)


def percentile(values: list[float], share: float) -> float | None:
    """Nearest-rank percentile (``share`` in 0..1); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return round(ordered[rank - 1], 1)


def _ms(later: datetime | None, earlier: datetime | None) -> float | None:
    if later is None or earlier is None:
        return None
    return (later - earlier).total_seconds() * 1000.0


def _summary(values: Iterable[float | None]) -> dict[str, Any]:
    known = [value for value in values if value is not None and value >= 0]
    return {"p50": percentile(known, 0.5), "p99": percentile(known, 0.99), "count": len(known)}


def _minute(moment: datetime, since: datetime) -> int:
    """Which of the window's 15 minutes (0 the oldest) ``moment`` falls in; -1 before it."""
    offset = (moment - since).total_seconds()
    return min(14, int(offset // 60)) if offset >= 0 else -1


def _reason(state: TaskState) -> str:
    error = state.error or {}
    return str(error.get("message") or error.get("code") or "unknown")


def figures(now: datetime, recent: dict[str, list[TaskState]], sampled: bool) -> dict[str, Any]:
    """The window's throughput, latencies and failures from the recent tasks of each status."""
    since = now - WINDOW
    created: Counter[int] = Counter()
    finished: dict[str, Counter[int]] = {"APPROVED": Counter(), "FAILED": Counter()}
    for status, states in recent.items():
        for state in states:
            if state.created_at is not None:
                created[_minute(state.created_at, since)] += 1
            if status in finished and state.updated_at is not None:
                finished[status][_minute(state.updated_at, since)] += 1
    approved = recent.get("APPROVED", [])
    answered = [state for states in recent.values() for state in states if state.first_response]
    failed = recent.get("FAILED", [])
    return {
        "throughput": {
            "per_minute": [
                {
                    "minute": format_time(since + timedelta(minutes=minute)),
                    "created": created[minute],
                    "approved": finished["APPROVED"][minute],
                    "failed": finished["FAILED"][minute],
                }
                for minute in range(15)
            ],
            "approved_per_second": _rate(approved, now),
        },
        "latency_ms": {
            "first_response": _summary(
                _ms(s.first_response.received_at, s.created_at)
                for s in answered
                if s.first_response is not None
            ),
            "approved": _summary(_ms(s.updated_at, s.created_at) for s in approved),
        },
        "failures": [
            {
                "task_id": state.task_id,
                "type": state.task_type,
                "failed_at": format_time(state.updated_at) if state.updated_at else None,
                "reason": _reason(state),
            }
            for state in failed[:FAILURES_SHOWN]
        ],
        "sampled": sampled,
    }


def _rate(states: list[TaskState], now: datetime) -> float:
    """Tasks a second over the span the states cover (the window, or less if sampled)."""
    if not states:
        return 0.0
    oldest = min(state.updated_at or now for state in states)
    span = WINDOW.total_seconds() if len(states) < SAMPLE else (now - oldest).total_seconds()
    return round(len(states) / max(span, 1.0), 3)


async def _anchors(app: web.Application) -> dict[str, Any]:
    source = app.get(ANCHORS)
    if source is None:
        return {"configured": False, "status": "none configured"}
    try:
        return await asyncio.wait_for(source(), 2.0)
    except Exception as error:
        return {"configured": True, "status": "unavailable", "error": type(error).__name__}


async def _processors(context: EdgeContext) -> dict[str, Any]:
    try:
        found = await asyncio.wait_for(context.processor_figures(), 2.0)
    except Exception:
        return {"status": "unavailable"}
    return {"status": "ok", **found}


async def collect(app: web.Application, context: EdgeContext) -> dict[str, Any]:
    now = context.clock()
    since = now - WINDOW
    statuses = list(STATUSES)
    per_status = await asyncio.gather(
        *(context.store.recent_in_status(status, since, SAMPLE) for status in statuses)
    )
    recent = dict(zip(statuses, per_status, strict=True))
    counts, miners, processors, anchors = await asyncio.gather(
        context.store.status_counts(),
        miner_figures(context),
        _processors(context),
        _anchors(app),
    )
    document: dict[str, Any] = {
        "at": format_time(now),
        "window_seconds": int(WINDOW.total_seconds()),
        "tasks_by_status": {status: counts.get(status, 0) for status in statuses},
        **figures(now, recent, any(len(states) >= SAMPLE for states in per_status)),
        "miners": miners,
        "processors": processors,
        "anchors": anchors,
    }
    return document


async def stats(request: web.Request) -> web.Response:
    authenticate_admin(request)
    cache = request.app[STATS_CACHE]
    if cache.made < time.monotonic() - cache.keep:
        started = time.monotonic()
        cache.document = await collect(request.app, context_of(request))
        cache.made = time.monotonic()
        cache.keep = max(CACHE_SECONDS, (cache.made - started) / COST_SHARE)
    return web.json_response(cache.document, headers={"Cache-Control": "no-store"})


def miner_rows(
    context: EdgeContext, infos: dict[str, Any], stats: list[MinerStats]
) -> list[dict[str, Any]]:
    by_hotkey = {row.hotkey: row for row in stats}
    weights = normalised_weights(stats)
    rows = []
    for hotkey in sorted(set(infos) | set(by_hotkey)):
        info = infos.get(hotkey)
        row = by_hotkey.get(hotkey, MinerStats(hotkey))
        rows.append(
            {
                "hotkey": hotkey,
                "uid": info.uid if info is not None else None,
                "capabilities": sorted(info.capabilities) if info is not None else [],
                "healthy": info is not None and context.selector.healthy(hotkey),
                "in_flight": row.in_flight,
                "assigned": row.assigned,
                "responded": row.responded,
                "failed": row.failed,
                "timed_out": row.timed_out,
                "success_rate": round(row.success_rate, 4),
                "latency_ms_avg": (
                    round(row.latency_ms_avg, 1) if row.latency_ms_avg is not None else None
                ),
                "reward_avg": round(row.reward_avg, 6),
                "weight": round(weights.get(hotkey, 0.0), 6),
            }
        )
    return rows


async def miners(request: web.Request) -> web.Response:
    authenticate_admin(request)
    context = context_of(request)
    known, stats = await asyncio.gather(context.pool.miners(), context.store.all_miners())
    infos = {info.hotkey: info for info in known}
    return web.json_response({"miners": miner_rows(context, infos, stats)})
