"""Faults on the Kafka path: a processor SIGKILLed under load while another shares its
partitions, and the broker itself killed and restarted mid-run. Afterwards no command is
lost or applied twice, and the log audits clean.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import IO

import pytest
from aiokafka.errors import KafkaError

from aggregates import Command, DomainError
from audit.log_audit import audit_log
from events import LogUnavailable
from events.kafka import KafkaEventLog, WriterFenced
from processors.commands import EmbeddedCommands
from processors.kafka.publisher import CommandPublisher
from tests.support.histories import ENDINGS, T0, Ledger, lifecycle
from tests.support.kafka_broker import KafkaBroker
from tests.support.kafka_pipeline import (
    HOTKEYS,
    assert_each_command_applied_once,
    expected_types,
    publisher_for,
    running_processor,
    scripted,
    submit_all,
    wait_for_streams,
)

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parents[2]
PARTITIONS = 6

CHILD = """
import asyncio, logging, sys
from processors.kafka.processor import run_processor

logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
logging.getLogger("processors.kafka").setLevel(logging.INFO)
asyncio.run(run_processor(sys.argv[1], topic_prefix=sys.argv[2], partitions=int(sys.argv[3])))
"""


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    broker = KafkaBroker.start(tmp_path_factory.mktemp("kafka-faults"))
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
async def reader(kafka: KafkaBroker) -> AsyncIterator[KafkaEventLog]:
    log = KafkaEventLog(
        kafka.bootstrap, topic_prefix=f"faults-{uuid.uuid4().hex[:10]}", partitions=PARTITIONS
    )
    await log.start()
    try:
        yield log
    finally:
        await log.close()


class Child:
    """A processor in its own process; its log lines are collected as they come."""

    def __init__(self, reader: KafkaEventLog) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", CHILD, reader.bootstrap, reader.topics.prefix, str(PARTITIONS)],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        assert self.process.stderr is not None
        self._pump = threading.Thread(target=self._read, args=(self.process.stderr,), daemon=True)
        self._pump.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line.rstrip())

    def owns_partitions(self) -> bool:
        owning = [line for line in self.lines if "owning partitions" in line]
        return bool(owning) and not owning[-1].endswith("[]")

    def end(self, sig: signal.Signals) -> int:
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)
        try:
            return self.process.wait(30)
        finally:
            if self.process.poll() is None:
                self.process.kill()
            self._pump.join(5)


@contextlib.contextmanager
def children(reader: KafkaEventLog, count: int) -> Iterator[list[Child]]:
    started = [Child(reader) for _ in range(count)]
    try:
        yield started
    finally:
        for child in started:
            if child.process.poll() is None:
                child.process.kill()
                child.process.wait(10)


async def submit_in_waves(
    publisher: CommandPublisher,
    scripts: dict[str, list[Command]],
    *,
    wave: int = 10,
    between: Callable[[int], Awaitable[None]] | None = None,
) -> dict[str, list[str]]:
    """Wave after wave of ``wave`` tasks, so the load spans a while; ``between`` runs after
    each wave (given its number)."""
    sent: dict[str, list[str]] = {}
    task_ids = list(scripts)
    for number, first in enumerate(range(0, len(task_ids), wave)):
        chunk = {t: scripts[t] for t in task_ids[first : first + wave]}
        sent.update(await submit_all(publisher, chunk))
        if between is not None:
            await between(number)
        await asyncio.sleep(0.05)
    return sent


async def test_a_processor_killed_under_load_loses_and_repeats_nothing(
    reader: KafkaEventLog,
) -> None:
    scripts = scripted(120)
    expected = expected_types(scripts)
    with children(reader, 2) as (victim, survivor):
        async with asyncio.timeout(60):
            while not (victim.owns_partitions() and survivor.owns_partitions()):
                assert victim.process.poll() is None, victim.lines
                assert survivor.process.poll() is None, survivor.lines
                await asyncio.sleep(0.1)

        async def kill_after_third_wave(number: int) -> None:
            if number == 2:
                # Its partitions have work queued, and more comes in the later waves.
                assert victim.end(signal.SIGKILL) == -signal.SIGKILL

        async with publisher_for(reader) as publisher:
            sent = await submit_in_waves(publisher, scripts, between=kill_after_third_wave)
        streams = await wait_for_streams(reader, {t: len(types) for t, types in expected.items()})
        assert survivor.process.poll() is None, survivor.lines
        # The survivor took the victim's partitions over.
        everything = f"owning partitions {list(range(PARTITIONS))}"
        assert any(line.endswith(everything) for line in survivor.lines), survivor.lines
        assert survivor.end(signal.SIGTERM) == 0, survivor.lines[-20:]
    assert {t: [e.type for e in s] for t, s in streams.items()} == expected
    assert_each_command_applied_once(streams, sent)
    report = await audit_log(reader)
    assert report.clean, [str(v) for v in report.violations[:5]]
    assert report.events == sum(len(types) for types in expected.values())


async def handle_until(
    commands: EmbeddedCommands, stop: asyncio.Event, workers: int = 4
) -> dict[str, tuple[list[Command], int]]:
    """Workers taking tasks through their lifecycles until ``stop``; a task ends at its first
    error. Returns each task's script and how many of its commands succeeded."""
    tasks: dict[str, tuple[list[Command], int]] = {}
    counter = itertools.count()

    async def work() -> None:
        while not stop.is_set():
            n = next(counter)
            task_id, script = next(iter(scripted_one(n).items()))
            tasks[task_id] = (script, 0)
            for done, command in enumerate(script, start=1):
                try:
                    await commands.execute(task_id, command, actor="fault-test")
                except (LogUnavailable, KafkaError, WriterFenced, DomainError):
                    break
                tasks[task_id] = (script, done)

    await asyncio.gather(*(work() for _ in range(workers)))
    return tasks


def scripted_one(n: int) -> dict[str, list[Command]]:
    ending = sorted(ENDINGS)[n % len(ENDINGS)]
    script = lifecycle(ending, T0 + timedelta(minutes=n), HOTKEYS[: 1 + n % 3], archive=n % 2 == 1)
    return {f"direct-{n}-{ending}": script}


async def test_the_broker_killed_and_restarted_mid_run(
    kafka: KafkaBroker, reader: KafkaEventLog
) -> None:
    # Two writers at once: the command processor, and the log's own appends (the
    # EmbeddedCommands path) on other topics.
    commanded = scripted(100)
    expected = expected_types(commanded)
    direct = KafkaEventLog(
        kafka.bootstrap, topic_prefix=f"direct-{uuid.uuid4().hex[:10]}", partitions=PARTITIONS
    )
    stop_handling = asyncio.Event()
    try:
        async with running_processor(reader) as running, publisher_for(reader) as publisher:
            handling = asyncio.create_task(handle_until(EmbeddedCommands(direct), stop_handling))

            async def restart_after_third_wave(number: int) -> None:
                if number == 2:
                    await asyncio.to_thread(kafka.kill)
                    await asyncio.sleep(1.0)
                    await asyncio.to_thread(kafka.restart)

            sent = await submit_in_waves(publisher, commanded, between=restart_after_third_wave)
            streams = await wait_for_streams(
                reader, {t: len(types) for t, types in expected.items()}, running
            )
            stop_handling.set()
            handled = await asyncio.wait_for(handling, 90)
        # The command path: nothing lost, nothing twice.
        assert {t: [e.type for e in s] for t, s in streams.items()} == expected
        assert_each_command_applied_once(streams, sent)
        report = await audit_log(reader)
        assert report.clean, [str(v) for v in report.violations[:5]]

        # The direct path rode the restart out: appends and reads waited for the broker.
        # Should a caller ever be told of a failure, the task holds the events of the
        # commands that succeeded, or one more command's worth (told "failed", not "nothing
        # happened"); never anything else.
        scripts = {task_id: script for task_id, (script, _) in handled.items()}
        handled_types = expected_types(scripts)
        lengths = _lengths_per_command(scripts)
        started = 0
        for task_id, (_, done) in handled.items():
            stream = await direct.read_stream(task_id)
            assert [e.type for e in stream] == handled_types[task_id][: len(stream)]
            assert len(stream) in lengths[task_id][done : done + 2]
            started += bool(stream)
        direct_report = await audit_log(direct)
        assert direct_report.clean, [str(v) for v in direct_report.violations[:5]]
        assert direct_report.tasks == started
        unfinished = {t: done for t, (script, done) in handled.items() if done < len(script)}
        assert not unfinished
    finally:
        await direct.close()


def _lengths_per_command(scripts: dict[str, list[Command]]) -> dict[str, list[int]]:
    """For each task, the stream length after 0, 1, 2, … of its commands."""
    lengths: dict[str, list[int]] = {}
    for task_id, commands in scripts.items():
        ledger = Ledger()
        lengths[task_id] = [0]
        for command in commands:
            ledger.execute(task_id, command)
            lengths[task_id].append(len(ledger.log))
    return lengths
