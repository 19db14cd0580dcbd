"""`taskledger bench kafka`: the whole pipeline on one local Kafka broker, over HTTP.

The proxy runs with `TASKLEDGER_EVENT_LOG=kafka://…` as two processes, as an operator
would split it: the edge (`--role edge`), which sends commands through the broker, and
the processors (`--role processors`: the command processor, the dispatcher and deadline
keeper of the partitions it owns and a projection worker; the leader also runs retention
and the checkpointer), with fast miners and the reference validator; the load comes
from this process over loopback. Besides the HTTP phases it
follows `<prefix>.status` with a plain aiokafka consumer, to time intake to the
first status document past PENDING on the topic.

Before measuring, the pipeline runs at the offered rate for ``warm_seconds`` (60 s by
default): a broker just started spends much of its first minute of load compiling (its
JIT compiler threads took more CPU than its request handlers in the first 30 s here),
which is a start-up cost, not the steady state an operator's broker runs in.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer

from bench.cpu import CpuMeter, Profilers
from bench.http_load import (
    Load,
    latency_phase,
    lifecycle_phase,
    offer,
    percentile,
    start_servers,
    stop,
)
from taskledger.dev import free_port

EVENTS_PER_LIFECYCLE = 8
_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "kafka-broker"


class StatusFollower:
    """When each task's first status past PENDING reached the status topic."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self.first_progress: dict[str, float] = {}
        self._consumer = AIOKafkaConsumer(
            f"{prefix}.status",
            bootstrap_servers=bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        self._task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        async for record in self._consumer:
            if record.value is None:
                continue
            document = orjson.loads(record.value)
            if document.get("status") != "PENDING":
                self.first_progress.setdefault(document["task_id"], time.time())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()


def start_broker(workdir: Path) -> tuple[subprocess.Popen[str], str]:
    """A single-node broker from the project's script, on free loopback ports."""
    port, controller = free_port("127.0.0.1"), free_port("127.0.0.1")
    process = subprocess.Popen(
        [
            str(_SCRIPT),
            "start",
            "--port",
            str(port),
            "--controller-port",
            str(controller),
            "--data-dir",
            str(workdir / "kafka"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        if "ready" in line:
            return process, f"127.0.0.1:{port}"
    os.killpg(process.pid, signal.SIGKILL)
    raise RuntimeError("the Kafka broker did not start (is Maven reachable for the jars?)")


@contextlib.contextmanager
def kafka_broker(workdir: Path, bootstrap: str | None) -> Iterator[tuple[str, int | None]]:
    """``bootstrap`` if one is given, else a broker of our own for the block (stopped after
    it): its address, and its pid when it is ours (for its CPU)."""
    if bootstrap is not None:
        yield bootstrap, None
        return
    broker, address = start_broker(workdir)
    try:
        yield address, broker.pid
    finally:
        os.killpg(broker.pid, signal.SIGTERM)
        broker.wait(timeout=60)


async def _warm_up(load: Load, timeout: float = 120.0) -> None:
    """Until a task goes all the way: the processors' group has formed and one leads."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task_id = await load.submit(-1)
        if task_id is not None:
            with contextlib.suppress(TimeoutError):
                await load.wait_terminal([task_id], timeout=30)
                return
        await asyncio.sleep(0.5)
    raise RuntimeError("the pipeline did not complete a task within the warm-up")


async def _drive(
    url: str,
    key: str,
    bootstrap: str,
    prefix: str,
    plan: Plan,
    pipeline: Pipeline,
    *,
    measure_latency: bool,
    warm_seconds: float,
) -> dict[str, Any]:
    follower = StatusFollower(bootstrap, prefix)
    await follower.start()
    runs: list[dict[str, Any]] = []
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:
            # The lean client, as `bench http` uses: the load shares the 2 cores.
            load = Load(session, url, key, lean=True)
            try:
                await _warm_up(load)
                if warm_seconds > 0:
                    await offer(load, plan.rate, warm_seconds, {})  # not measured: see above
                for _ in range(plan.repeats if measure_latency else 0):
                    runs.append(await _latency_run(load, follower, plan.rate, plan.seconds))
                lifecycles = await measured_lifecycles(load, plan, pipeline)
            finally:
                await load.close()
    finally:
        await follower.stop()
    figures: dict[str, Any] = {
        "lifecycles": lifecycles,
        "pipeline_events_per_second": lifecycles["lifecycles_per_second"] * EVENTS_PER_LIFECYCLE,
    }
    if runs:
        figures.update(median_run(runs))
        figures["latency_runs"] = runs
    return figures


async def _latency_run(
    load: Load, follower: StatusFollower, rate: float, seconds: float
) -> dict[str, Any]:
    """One open-loop phase at ``rate``: times to DISTRIBUTED (from the events) and to the
    status topic (from the follower)."""
    sent: dict[str, float] = {}
    latency = await latency_phase(load, rate, seconds, sent)
    await asyncio.sleep(1.0)
    to_topic = [
        (follower.first_progress[task_id] - at) * 1000
        for task_id, at in sent.items()
        if task_id in follower.first_progress
    ]
    return {
        "latency": latency,
        "status_topic": {
            "tasks_seen": len(to_topic),
            "to_status_topic_p50_ms": percentile(to_topic, 0.5),
            "to_status_topic_p99_ms": percentile(to_topic, 0.99),
        },
    }


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run whose p99 to DISTRIBUTED is the median (the lower middle of an even count):
    a run as it came, not a blend of several; the others are reported beside it."""
    ranked = sorted(runs, key=lambda run: run["latency"]["to_distributed_p99_ms"])
    return ranked[(len(ranked) - 1) // 2]


@dataclass(frozen=True)
class Plan:
    """What one `bench kafka` run does (see the command's options)."""

    rate: float = 200.0
    seconds: float = 10.0
    tasks: int = 1000
    warm_seconds: float = 60.0
    repeats: int = 1
    processors: tuple[int, ...] = (1,)
    embedded_warm_seconds: float = 15.0
    profile: Path | None = None
    steady_rate: float = 50.0


@dataclass
class Pipeline:
    """The processes of one pipeline under test, by name, and what it is called."""

    tag: str
    pids: dict[str, int] = field(default_factory=dict)
    trees: frozenset[str] = frozenset()


async def measured_lifecycles(load: Load, plan: Plan, pipeline: Pipeline) -> dict[str, Any]:
    """The steady phase, then the lifecycle phase, each with each process's CPU seconds
    over it (and the load generator's, this process's own), per completed lifecycle.

    Steady: ``steady_rate`` tasks/s for ``seconds``, until all are terminal, a rate both
    pipelines keep up with, so that they do the same work per second; the lifecycle
    phase (as many as go) depends on how fast each goes, and on what else the machine
    runs, more."""
    pids = {**pipeline.pids, "load": os.getpid()}
    meter = CpuMeter(pids, pipeline.trees)
    sent: dict[str, float] = {}
    meter.start()
    await offer(load, plan.steady_rate, plan.seconds, sent)
    steady = _per_lifecycle({"lifecycles": len(sent)}, meter.stop())
    with Profilers(plan.profile, pids, pipeline.tag):
        meter.start()
        lifecycles = await lifecycle_phase(load, plan.tasks)
        spent = meter.stop()
    lifecycles = _per_lifecycle(lifecycles, spent)
    lifecycles["steady"] = steady
    return lifecycles


def _per_lifecycle(phase: dict[str, Any], spent: dict[str, float]) -> dict[str, Any]:
    count = max(1, phase["lifecycles"])
    phase["cpu_seconds"] = spent
    phase["cpu_ms_per_lifecycle"] = {name: 1000 * s / count for name, s in spent.items()}
    return phase


def _named(processes: list[subprocess.Popen[str]], processors: int) -> dict[str, int]:
    """start_servers' processes (peers apart) by name: peers, processors-1…N, edge."""
    names = ["peers", *(f"processors-{n}" for n in range(1, processors + 1)), "edge"]
    return {name: process.pid for name, process in zip(names, processes, strict=True)}


def ours_ms(cpu_ms: dict[str, float]) -> float:
    """taskledger's own processes: the edge and the processors (not the broker, the
    miners and validator, nor the load)."""
    return sum(v for name, v in cpu_ms.items() if name == "edge" or name.startswith("processors"))


def _kafka_pipeline(
    directory: Path,
    bootstrap: str,
    broker_pid: int | None,
    plan: Plan,
    processors: int,
    first: bool,
) -> dict[str, Any]:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    event_log = f"kafka://{bootstrap}?prefix={prefix}&partitions=6"
    processes, url, key = start_servers(
        directory / prefix, event_log, peers_apart=True, processors=processors
    )
    pipeline = Pipeline(f"kafka-{processors}p", _named(processes, processors))
    if broker_pid is not None:
        pipeline.pids["broker"] = broker_pid
        pipeline.trees = frozenset({"broker"})
    # The broker's JIT warm-up is paid once: later pipelines on it warm up briefly.
    warm = plan.warm_seconds if first else min(plan.warm_seconds, plan.embedded_warm_seconds)
    try:
        figures = asyncio.run(
            _drive(
                url,
                key,
                bootstrap,
                prefix,
                plan,
                pipeline,
                measure_latency=first,
                warm_seconds=warm,
            )
        )
    finally:
        stop(processes)
    figures["processors"] = processors
    return figures


async def _drive_embedded(url: str, key: str, plan: Plan, pipeline: Pipeline) -> dict[str, Any]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:
        load = Load(session, url, key, lean=True)
        try:
            await _warm_up(load)
            if plan.embedded_warm_seconds > 0:
                await offer(load, plan.rate, plan.embedded_warm_seconds, {})
            return await measured_lifecycles(load, plan, pipeline)
        finally:
            await load.close()


def run_embedded(directory: Path, plan: Plan) -> dict[str, Any]:
    """`bench http`'s system (edge and processors on one SQLite log), peers apart as on
    Kafka, over the same lifecycle phase."""
    processes, url, key = start_servers(directory / "embedded", peers_apart=True)
    try:
        pipeline = Pipeline("embedded", _named(processes, 1))
        return {"lifecycles": asyncio.run(_drive_embedded(url, key, plan, pipeline))}
    finally:
        stop(processes)


def run_kafka_bench(bootstrap: str | None, plan: Plan) -> dict[str, Any]:
    """Each processors count of the plan on Kafka (the first with the latency runs), then
    the embedded pipeline, and the ratio of their CPU per lifecycle."""
    with tempfile.TemporaryDirectory(prefix="taskledger-kafka-bench-") as name:
        directory = Path(name)
        with kafka_broker(directory, bootstrap) as (address, broker_pid):
            pipelines = [
                _kafka_pipeline(directory, address, broker_pid, plan, count, index == 0)
                for index, count in enumerate(plan.processors)
            ]
        embedded = run_embedded(directory, plan)
    figures = dict(pipelines[0])
    figures["by_processors"] = pipelines
    figures["embedded"] = embedded
    ours = ours_ms(figures["lifecycles"]["cpu_ms_per_lifecycle"])
    theirs = ours_ms(embedded["lifecycles"]["cpu_ms_per_lifecycle"])
    figures["cpu_ratio_to_embedded"] = ours / theirs if theirs else float("nan")
    ours = ours_ms(figures["lifecycles"]["steady"]["cpu_ms_per_lifecycle"])
    theirs = ours_ms(embedded["lifecycles"]["steady"]["cpu_ms_per_lifecycle"])
    figures["steady_cpu_ratio_to_embedded"] = ours / theirs if theirs else float("nan")
    return figures
