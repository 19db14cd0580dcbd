"""The batched command path: many commands, one append, the same answers as one at a time."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from aggregates import (
    CancelTask,
    Evaluate,
    IllegalTransition,
    RecordResponse,
    TaskAlreadyExists,
    TaskNotFound,
    fold,
)
from audit.log_audit import audit_log
from bench.workload import lifecycle
from events import GENESIS_HASH, format_time, seal, seal_run
from events.sqlite_log import SqliteEventLog
from processors.command_core import CommandRequest, Outcome
from processors.commands import EmbeddedCommands, new_id
from tests.support.sample_commands import NOW, create, distribute


@pytest.fixture
async def log(tmp_path: Path):
    log = SqliteEventLog(tmp_path / "events.db")
    try:
        yield log
    finally:
        await log.close()


async def test_a_batch_gives_what_one_command_at_a_time_gives(
    log: SqliteEventLog, tmp_path: Path
) -> None:
    flows = [lifecycle(n, NOW) for n in range(6)]
    batched = EmbeddedCommands(log)
    for step in range(len(flows[0].commands)):
        results = await batched.execute_many(
            [CommandRequest(f.task_id, f.commands[step], "bench") for f in flows]
        )
        assert all(isinstance(r, Outcome) for r in results)
    one_by_one_log = SqliteEventLog(tmp_path / "one-by-one.db")
    try:
        single = EmbeddedCommands(one_by_one_log)
        for flow in flows:
            for command in flow.commands:
                await single.execute(flow.task_id, command, actor="bench")
        for flow in flows:
            ours = await log.read_stream(flow.task_id)
            theirs = await one_by_one_log.read_stream(flow.task_id)
            assert fold(flow.task_id, ours) == fold(flow.task_id, theirs)
            assert [e.type for e in ours] == [e.type for e in theirs]
            assert fold(flow.task_id, ours).status == "APPROVED"
    finally:
        await one_by_one_log.close()
    report = await audit_log(log)
    assert report.clean and report.events == 6 * 8


async def test_commands_for_one_task_in_a_batch_go_in_order_into_one_chain(
    log: SqliteEventLog,
) -> None:
    commands = EmbeddedCommands(log)
    task = "task-1"
    results = await commands.execute_many(
        [
            CommandRequest(task, create(), "c"),
            CommandRequest(task, Evaluate("v", {"m1": 1.0}, NOW), "v"),  # refused: PENDING
            CommandRequest(task, distribute(), "dispatcher", causation_id="cause"),
            CommandRequest(task, RecordResponse("m1", {"summary": "s"}, 5.0, NOW), "m1"),
        ]
    )
    assert isinstance(results[1], IllegalTransition)
    created, distributed, responded = results[0], results[2], results[3]
    assert isinstance(created, Outcome) and isinstance(distributed, Outcome)
    assert isinstance(responded, Outcome)
    assert created.state.status == "PENDING"
    assert distributed.state.status == "DISTRIBUTED"
    assert distributed.events[0].causation_id == "cause"
    assert responded.state.status == "DONE"
    stream = await log.read_stream(task)
    assert [e.sequence for e in stream] == [1, 2, 3, 4]
    assert stream[0].prev_hash == GENESIS_HASH
    assert all(later.prev_hash == earlier.hash for earlier, later in itertools.pairwise(stream))
    assert await commands.load(task) == responded.state == fold(task, stream)
    assert (await audit_log(log)).clean


async def test_refusals_are_answered_per_request_and_do_not_sink_the_batch(
    log: SqliteEventLog,
) -> None:
    commands = EmbeddedCommands(log)
    await commands.execute("exists", create(), actor="c")
    results = await commands.execute_many(
        [
            CommandRequest("new-1", create(1), "c"),
            CommandRequest("exists", create(2), "c"),
            CommandRequest("missing", CancelTask("no", NOW), "c"),
            CommandRequest("new-2", create(3), "c"),
        ]
    )
    assert isinstance(results[0], Outcome) and isinstance(results[3], Outcome)
    assert isinstance(results[1], TaskAlreadyExists)
    assert isinstance(results[2], TaskNotFound)
    assert len(await log.read_stream("new-1")) == 1
    assert len(await log.read_stream("exists")) == 1
    assert await log.read_stream("missing") == []
    with pytest.raises(TaskAlreadyExists):
        await commands.execute("new-2", create(4), actor="c")


async def test_a_batch_decided_on_stale_heads_is_decided_again_on_the_log(
    tmp_path: Path,
) -> None:
    edge_log = SqliteEventLog(tmp_path / "events.db")
    other_log = SqliteEventLog(tmp_path / "events.db")
    edge, other = EmbeddedCommands(edge_log), EmbeddedCommands(other_log)
    try:
        tasks = [f"task-{n}" for n in range(4)]
        await edge.execute_many([CommandRequest(t, create(), "c") for t in tasks])
        # Another process moves two of the tasks on; the edge's cached heads are stale.
        for task in tasks[:2]:
            await other.execute(task, distribute(), actor="dispatcher")
            await other.execute(task, RecordResponse("m1", {"s": 1}, 5.0, NOW), actor="m1")
        results = await edge.execute_many(
            [CommandRequest(t, Evaluate("v", {"m1": 1.0}, NOW), "v") for t in tasks[:2]]
            + [CommandRequest(t, distribute("m2"), "dispatcher") for t in tasks[2:]]
            + [CommandRequest(tasks[0], CancelTask("too late", NOW), "c")]
        )
        for result in results[:4]:
            assert isinstance(result, Outcome)
        assert [r.state.status for r in results[:4] if isinstance(r, Outcome)] == [
            "APPROVED",
            "APPROVED",
            "DISTRIBUTED",
            "DISTRIBUTED",
        ]
        assert isinstance(results[4], IllegalTransition)
        assert (await audit_log(edge_log)).clean
    finally:
        await edge_log.close()
        await other_log.close()


async def test_two_embedded_commands_creating_one_task_in_batches_create_it_once(
    tmp_path: Path,
) -> None:
    first_log = SqliteEventLog(tmp_path / "events.db")
    second_log = SqliteEventLog(tmp_path / "events.db")
    try:
        first, second = EmbeddedCommands(first_log), EmbeddedCommands(second_log)
        (a,) = await first.execute_many([CommandRequest("t", create(1), "a")])
        (b,) = await second.execute_many([CommandRequest("t", create(2), "b")])
        assert isinstance(a, Outcome)
        assert isinstance(b, TaskAlreadyExists)
        assert len(await first_log.read_stream("t")) == 1
    finally:
        await first_log.close()
        await second_log.close()


async def test_an_empty_batch_is_an_empty_answer(log: SqliteEventLog) -> None:
    assert await EmbeddedCommands(log).execute_many([]) == []


def test_a_run_sealed_together_is_the_chain_sealed_one_by_one() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=2)))
    payloads = [
        (str(uuid.uuid4()), "MinerFailed", 1, {"hotkey": f"m{n}", "reason": "r"}) for n in range(3)
    ]
    run = seal_run(
        task_id="t",
        after=(4, "a" * 64),
        payloads=payloads,
        occurred_at=at,
        actor="x",
        causation_id="c",
        correlation_id="k",
    )
    previous, one_by_one = "a" * 64, []
    for sequence, (event_id, type, version, data) in enumerate(payloads, start=5):
        envelope = seal(
            event_id=event_id,
            task_id="t",
            sequence=sequence,
            type=type,
            version=version,
            occurred_at=at,
            actor="x",
            data=data,
            prev_hash=previous,
            causation_id="c",
            correlation_id="k",
        )
        one_by_one.append(envelope)
        previous = envelope.hash
    assert run == one_by_one
    assert [e.body for e in run] == [e.body for e in one_by_one]
    assert all(e.recomputed_hash() == e.hash for e in run)
    assert run[0].occurred_at == "2026-01-02T01:04:05.000006Z"


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 11, 25, 12, 0, tzinfo=UTC),
        datetime(2026, 11, 25, 12, 0, 0, 123456, tzinfo=UTC),
        datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-5))),
        datetime(2026, 3, 1, 0, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    ],
)
def test_times_are_spelled_in_utc_with_microseconds_and_a_z(moment: datetime) -> None:
    expected = moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")
    assert format_time(moment) == expected + "Z"


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError):
        format_time(datetime(2026, 1, 1))


def test_new_ids_are_random_version_4_uuids_spelled_canonically() -> None:
    drawn = [new_id() for _ in range(5000)]
    assert len(set(drawn)) == len(drawn)
    for text in drawn:
        parsed = uuid.UUID(text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert str(parsed) == text
