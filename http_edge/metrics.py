"""``GET /metrics``: Prometheus text exposition (format 0.0.4), written out by hand.

Request counts by route and status and a latency histogram by route, kept by
a middleware; tasks by status, miners and processor figures, read at scrape
time.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Handler

from aggregates import STATUSES
from http_edge.health import miner_figures
from http_edge.keys import context_of
from http_edge.stream import STREAMS
from http_edge.waiting import HOLDS

log = logging.getLogger(__name__)

BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
UNMATCHED: Final = "unmatched"


@dataclass(slots=True)
class _Histogram:
    buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    total: float = 0.0
    count: int = 0

    def observe(self, seconds: float) -> None:
        for index, bound in enumerate(BUCKETS):
            if seconds <= bound:
                self.buckets[index] += 1
        self.total += seconds
        self.count += 1


class HttpMetrics:
    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str, int]] = Counter()
        self.latency: dict[tuple[str, str], _Histogram] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests[(method, route, status)] += 1
        histogram = self.latency.get((method, route))
        if histogram is None:
            histogram = self.latency[(method, route)] = _Histogram()
        histogram.observe(seconds)


METRICS: Final = web.AppKey("metrics", HttpMetrics)


def route_of(request: web.Request) -> str:
    """The route's pattern (``/api/v1/task/{task_id}/status``), never the raw path:
    labels must not grow with every task id or probe of an unknown URL."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as error:
        status = error.status
        raise
    finally:
        request.app[METRICS].observe(
            request.method, route_of(request), status, time.perf_counter() - started
        )


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{name}="{_escape(value)}"' for name, value in labels.items())
    return "{" + inner + "}"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value)) if isinstance(value, float) else str(value)


def _metric_name(*parts: str) -> str:
    name = "_".join(parts)
    return "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in name)


class _Exposition:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self._declared: set[str] = set()

    def family(self, name: str, kind: str, help_text: str) -> None:
        if name not in self._declared:
            self._declared.add(name)
            self.lines.append(f"# HELP {name} {help_text}")
            self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, labels: Mapping[str, str], value: float) -> None:
        self.lines.append(f"{name}{_labels(labels)} {_number(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _http(out: _Exposition, metrics: HttpMetrics) -> None:
    out.family("taskledger_http_requests_total", "counter", "HTTP requests by route and status.")
    for (method, route, status), count in sorted(metrics.requests.items()):
        labels = {"method": method, "route": route, "status": str(status)}
        out.sample("taskledger_http_requests_total", labels, count)
    name = "taskledger_http_request_duration_seconds"
    out.family(name, "histogram", "HTTP request latency by route.")
    for (method, route), histogram in sorted(metrics.latency.items()):
        labels = {"method": method, "route": route}
        for bound, count in zip(BUCKETS, histogram.buckets, strict=True):
            out.sample(f"{name}_bucket", {**labels, "le": _number(bound)}, count)
        out.sample(f"{name}_bucket", {**labels, "le": "+Inf"}, histogram.count)
        out.sample(f"{name}_sum", labels, histogram.total)
        out.sample(f"{name}_count", labels, histogram.count)


def _processor_samples(figures: Mapping[str, Any]) -> Iterable[tuple[str, dict[str, str], float]]:
    """Numeric processor figures: ``{"lag": 3}`` becomes ``taskledger_processor_lag 3``,
    ``{"restarts": {"dispatcher": 1}}`` becomes ``..._restarts{processor="dispatcher"} 1``."""
    for key, value in sorted(figures.items()):
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, int | float):
            yield _metric_name("taskledger_processor", key), {}, value
        elif isinstance(value, Mapping):
            for inner, number in sorted(value.items()):
                if isinstance(number, int | float) and not isinstance(number, bool):
                    name = _metric_name("taskledger_processor", key)
                    yield name, {"processor": str(inner)}, number


async def metrics(request: web.Request) -> web.Response:
    context = context_of(request)
    out = _Exposition()
    _http(out, request.app[METRICS])
    out.family("taskledger_http_open_streams", "gauge", "Status streams open now.")
    out.sample("taskledger_http_open_streams", {}, request.app[STREAMS].open_streams)
    out.family("taskledger_http_held_requests", "gauge", "Intakes held by wait= now.")
    out.sample("taskledger_http_held_requests", {}, request.app[HOLDS].held)
    try:
        counts = await context.store.status_counts()
    except Exception:
        log.warning("metrics: task counts unavailable", exc_info=True)
    else:
        out.family("taskledger_tasks", "gauge", "Tasks by status, as the read models have them.")
        for status in STATUSES:
            out.sample("taskledger_tasks", {"status": status}, counts.get(status, 0))
    miners = await miner_figures(context)
    out.family("taskledger_miners_known", "gauge", "Miners in the directory.")
    out.sample("taskledger_miners_known", {}, miners["known"])
    out.family("taskledger_miners_healthy", "gauge", "Miners the selector considers healthy.")
    out.sample("taskledger_miners_healthy", {}, miners["healthy"])
    try:
        figures = await context.processor_figures()
    except Exception:
        log.warning("metrics: processor figures unavailable", exc_info=True)
        figures = {}
    for name, labels, value in _processor_samples(figures):
        out.family(name, "gauge", "Processor figure.")
        out.sample(name, labels, value)
    return web.Response(body=out.text().encode(), headers={"Content-Type": CONTENT_TYPE})
