"""Any edited, removed or reordered event is caught by the audit, which names its task.

The logs are real histories: several tasks taken through their lifecycles by the
decider and interleaved. The tampering is done on the stored form (the canonical
body and its hash), the way someone with write access to the database would.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.log_audit import AuditReport, audit_envelopes, audit_log
from events import EVENT_TYPES, Envelope, canonical, format_time, from_stored
from events.codec import decode
from events.sqlite_log import SqliteEventLog
from processors.commands import EmbeddedCommands
from tests.support.histories import ENDINGS, T0, Ledger, interleave, lifecycle

HOTKEYS = ("hk-a", "hk-b", "hk-c")


@st.composite
def ledgers(draw: st.DrawFn) -> Ledger:
    """A valid log of one to four tasks with any endings, interleaved at random."""
    plans = draw(
        st.lists(
            st.tuples(st.sampled_from(sorted(ENDINGS)), st.integers(1, 3), st.booleans()),
            min_size=1,
            max_size=4,
        )
    )
    scripts = {
        f"task-{n}": lifecycle(ending, T0 + timedelta(minutes=n), HOTKEYS[:miners], archive=archive)
        for n, (ending, miners, archive) in enumerate(plans)
    }
    order = draw(st.permutations([t for t, commands in scripts.items() for _ in commands]))
    ledger = Ledger()
    for task_id, command in interleave(scripts, order):
        ledger.execute(task_id, command)
    return ledger


def named(report: AuditReport) -> set[str]:
    return {violation.task_id for violation in report.violations}


def rewritten(envelope: Envelope, fields: dict[str, Any], rehash: bool) -> Envelope:
    body = canonical(fields)
    return from_stored(body, hashlib.sha256(body).hexdigest() if rehash else envelope.hash)


# -- the kinds of edit -----------------------------------------------------------

other_json = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.text(max_size=5)
    | st.floats(allow_nan=False, allow_infinity=False)
)
other_hashes = st.binary(min_size=1, max_size=8).map(lambda raw: hashlib.sha256(raw).hexdigest())


def edits(fields: dict[str, Any]) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    """One field of the stored event changed (or a payload key added or removed)."""
    data = fields["data"]

    def with_field(name: str, values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return values.map(lambda value: (name, {**fields, name: value}))

    def payload(values: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[Any]:
        return values.map(lambda new: ("data", {**fields, "data": new}))

    choices = [
        with_field("type", st.sampled_from(sorted(EVENT_TYPES)) | st.text(max_size=12)),
        with_field("sequence", st.integers(min_value=-3, max_value=60)),
        with_field("version", st.integers(min_value=0, max_value=3)),
        with_field("prev_hash", other_hashes),
        with_field(
            "occurred_at",
            st.integers(-(10**9), 10**9).map(
                lambda us: format_time(T0 + timedelta(microseconds=us))
            ),
        ),
        with_field("task_id", st.sampled_from(["task-0", "task-1", "task-9"])),
        with_field("actor", st.text(max_size=8)),
        with_field("id", st.uuids().map(str)),
        payload(st.text(min_size=1, max_size=6).map(lambda key: {**data, key: "added"})),
    ]
    if data:
        keys = st.sampled_from(sorted(data))
        choices.append(payload(st.tuples(keys, other_json).map(lambda kv: {**data, kv[0]: kv[1]})))
        choices.append(payload(keys.map(lambda k: {n: v for n, v in data.items() if n != k})))
    return st.one_of(choices)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ledger=ledgers(), data=st.data(), rehash=st.booleans())
def test_editing_any_field_of_any_event_is_caught(
    ledger: Ledger, data: st.DataObject, rehash: bool
) -> None:
    assert audit_envelopes(ledger.log, ledger.heads()).clean
    index = data.draw(st.integers(0, len(ledger.log) - 1), label="index")
    victim = ledger.log[index]
    fields = decode(victim.body)
    field, changed = data.draw(edits(fields), label="edit")
    body = canonical(changed)
    if body == victim.body:
        return  # the "edit" wrote back the same bytes: nothing was tampered with
    tampered = [*ledger.log]
    tampered[index] = rewritten(victim, changed, rehash)
    report = audit_envelopes(tampered, ledger.heads())
    assert victim.task_id in named(report), (field, [str(v) for v in report.violations])


def test_a_reshaped_payload_is_reported_rather_than_crashing_the_audit() -> None:
    """An edit can change a value's JSON type; the audit must still name the task."""
    ledger = Ledger()
    for command in lifecycle("approved", T0, HOTKEYS[:2]):
        ledger.execute("task-0", command)
    for event_type, key, value in [
        ("TaskDistributed", "assignments", "hk-a"),
        ("TaskDistributed", "assignments", None),
        ("TaskDistributed", "assignments", [7]),
        ("MinerResponded", "hotkey", {"nested": 1}),
    ]:
        index = next(i for i, e in enumerate(ledger.log) if e.type == event_type)
        fields = decode(ledger.log[index].body)
        fields["data"] = {**fields["data"], key: value}
        for rehash in (False, True):
            tampered = [*ledger.log]
            tampered[index] = rewritten(ledger.log[index], fields, rehash)
            report = audit_envelopes(tampered, ledger.heads())
            assert "task-0" in named(report), (event_type, key, value, rehash)


@settings(max_examples=150, deadline=None)
@given(ledger=ledgers(), data=st.data())
def test_dropping_any_event_is_caught(ledger: Ledger, data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(ledger.log) - 1), label="index")
    victim = ledger.log[index]
    report = audit_envelopes(ledger.log[:index] + ledger.log[index + 1 :], ledger.heads())
    assert victim.task_id in named(report)


@settings(max_examples=50, deadline=None)
@given(ledger=ledgers())
def test_dropping_the_last_event_of_a_stream_is_caught_by_its_head(ledger: Ledger) -> None:
    for head in ledger.heads():
        last = next(
            i for i in reversed(range(len(ledger.log))) if ledger.log[i].task_id == head.task_id
        )
        truncated = ledger.log[:last] + ledger.log[last + 1 :]
        report = audit_envelopes(truncated, ledger.heads())
        assert [(v.task_id, v.kind) for v in report.violations] == [
            (head.task_id, "truncated_stream")
        ]
        # Without the recorded heads a dropped tail is indistinguishable from a shorter
        # history, which is why the log keeps them.
        assert audit_envelopes(truncated).clean


@settings(max_examples=150, deadline=None)
@given(ledger=ledgers(), data=st.data())
def test_swapping_two_events_of_a_stream_is_caught(ledger: Ledger, data: st.DataObject) -> None:
    task_id = data.draw(st.sampled_from(sorted(ledger.states)), label="task")
    positions = [i for i, e in enumerate(ledger.log) if e.task_id == task_id]
    first, second = data.draw(
        st.lists(st.sampled_from(positions), min_size=2, max_size=2, unique=True).map(sorted),
        label="swap",
    )
    swapped = [*ledger.log]
    swapped[first], swapped[second] = swapped[second], swapped[first]
    report = audit_envelopes(swapped, ledger.heads())
    assert task_id in named(report)


@given(ledger=ledgers())
@settings(max_examples=30, deadline=None)
def test_streams_of_different_tasks_may_interleave_in_any_order(ledger: Ledger) -> None:
    """The audit checks each task's own chain; the order across tasks is free."""
    by_task = sorted(ledger.log, key=lambda e: e.task_id)
    assert audit_envelopes(by_task, ledger.heads()).clean


# -- a real SQLite log file, tampered with the sqlite3 module ------------------


async def write_history(path: Path) -> dict[str, list[Envelope]]:
    log = SqliteEventLog(path)
    commands = EmbeddedCommands(log)
    plans = {
        "task-approved": lifecycle("failover_approved", T0, HOTKEYS[:2], spare=HOTKEYS[2]),
        "task-cancelled": lifecycle("cancelled_distributed", T0, HOTKEYS[:2]),
        "task-timed-out": lifecycle("all_timed_out", T0, HOTKEYS, archive=True),
    }
    try:
        for task_id, command in interleave(plans, [t for _ in range(12) for t in plans]):
            await commands.execute(task_id, command, actor="tests")
        streams = {task_id: await log.read_stream(task_id) for task_id in plans}
        assert (await audit_log(log)).clean
        return streams
    finally:
        await log.close()


async def audit_file(path: Path) -> AuditReport:
    log = SqliteEventLog(path)
    try:
        return await audit_log(log)
    finally:
        await log.close()


def rows(connection: sqlite3.Connection, task_id: str) -> list[tuple[int, int, bytes, str]]:
    return connection.execute(
        "SELECT position, sequence, body, hash FROM events WHERE task_id = ? ORDER BY sequence",
        (task_id,),
    ).fetchall()


def edit_body(body: bytes, rehash: bool) -> tuple[bytes, str | None]:
    fields = decode(body)
    fields["actor"] = "someone-else"
    edited = canonical(fields)
    return edited, hashlib.sha256(edited).hexdigest() if rehash else None


TASK = "task-approved"


def update_body(connection: sqlite3.Connection, rehash: bool) -> tuple[int, set[str]]:
    position, sequence, body, _ = rows(connection, TASK)[2]
    edited, new_hash = edit_body(body, rehash)
    connection.execute("UPDATE events SET body = ? WHERE position = ?", (edited, position))
    if new_hash:
        connection.execute("UPDATE events SET hash = ? WHERE position = ?", (new_hash, position))
    # Unhashed: the row no longer matches its hash. Rehashed: the next event no longer links.
    return (sequence + 1, {"broken_link"}) if rehash else (sequence, {"hash_mismatch"})


def update_last_body_rehashed(connection: sqlite3.Connection) -> tuple[int, set[str]]:
    position, sequence, body, _ = rows(connection, TASK)[-1]
    edited, new_hash = edit_body(body, rehash=True)
    connection.execute(
        "UPDATE events SET body = ?, hash = ? WHERE position = ?", (edited, new_hash, position)
    )
    # Nothing links after the last event: only the recorded head shows it changed.
    return sequence, {"head_mismatch"}


def delete_row(connection: sqlite3.Connection, which: int) -> tuple[int, set[str]]:
    stream = rows(connection, TASK)
    position, sequence, _, _ = stream[which]
    connection.execute("DELETE FROM events WHERE position = ?", (position,))
    if sequence == stream[-1][1]:
        return sequence, {"truncated_stream"}
    return sequence + 1, {"sequence_gap", "broken_link"}


def swap_rows(connection: sqlite3.Connection, with_hashes: bool) -> tuple[int, set[str]]:
    stream = rows(connection, TASK)
    (p1, s1, b1, h1), (p2, _, b2, h2) = stream[1], stream[3]
    columns = "body = ?, hash = ?" if with_hashes else "body = ?"
    first = (b2, h2) if with_hashes else (b2,)
    second = (b1, h1) if with_hashes else (b1,)
    connection.execute(f"UPDATE events SET {columns} WHERE position = ?", (*first, p1))
    connection.execute(f"UPDATE events SET {columns} WHERE position = ?", (*second, p2))
    # Each row is checked where it is stored: a body carried along with its hash is misplaced.
    return (s1, {"misplaced_event", "broken_link"}) if with_hashes else (s1, {"hash_mismatch"})


def overwrite_body(connection: sqlite3.Connection) -> tuple[int, set[str]]:
    """What a torn write or a flipped bit leaves: bytes that are not an event at all."""
    position, sequence, body, _ = rows(connection, TASK)[2]
    connection.execute(
        "UPDATE events SET body = ? WHERE position = ?", (b"\x00" + body[1:-7], position)
    )
    return sequence, set()


TAMPERINGS = {
    "update body, keep hash": lambda c: update_body(c, rehash=False),
    "update body and hash": lambda c: update_body(c, rehash=True),
    "update last body and hash": update_last_body_rehashed,
    "delete a middle row": lambda c: delete_row(c, 2),
    "delete the first row": lambda c: delete_row(c, 0),
    "delete the last row": lambda c: delete_row(c, -1),
    "swap two bodies": lambda c: swap_rows(c, with_hashes=False),
    "swap two bodies with their hashes": lambda c: swap_rows(c, with_hashes=True),
    "overwrite a body with bytes that are not JSON": overwrite_body,
}


@pytest.mark.parametrize("tampering", sorted(TAMPERINGS))
def test_tampering_with_a_sqlite_log_file_is_caught(tmp_path: Path, tampering: str) -> None:
    path = tmp_path / "events.db"
    streams = asyncio.run(write_history(path))
    assert len(streams[TASK]) >= 5

    connection = sqlite3.connect(path)
    try:
        with connection:
            sequence, kinds = TAMPERINGS[tampering](connection)
    finally:
        connection.close()

    report = asyncio.run(audit_file(path))
    found = {(v.task_id, v.sequence, v.kind) for v in report.violations}
    assert {(TASK, sequence, kind) for kind in kinds} <= found, sorted(found)
    assert (TASK, sequence) in {(task_id, at) for task_id, at, _ in found}, sorted(found)
    assert named(report) == {TASK}
