"""A command's reply survives the trip through ``<prefix>.replies`` unchanged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from aggregates import (
    AlreadyAnswered,
    CreateTask,
    DomainError,
    IllegalTransition,
    TaskState,
    fold,
)
from events import GENESIS_HASH, Envelope
from processors.command_core import CommandRequest, TaskHead, decide_and_seal
from processors.commands import new_id
from processors.kafka.replies import CommandReply

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
TASK = "00000000-0000-4000-8000-0000000000aa"


def created() -> tuple[TaskState, list[Envelope]]:
    command = CreateTask(
        task_type="summarization",
        priority="high",
        input={"text": "One. Two."},
        client="c",
        deadline=NOW + timedelta(minutes=5),
        miners_wanted=2,
        miner_timeout_seconds=30.0,
        now=NOW,
    )
    head, sealed = decide_and_seal(
        TaskHead(fold(TASK, []), GENESIS_HASH), CommandRequest(TASK, command, "c"), new_id
    )
    return head.state, sealed


def test_an_outcome_comes_back_with_its_state_and_sealed_events() -> None:
    state, sealed = created()
    reply = CommandReply.decode(CommandReply("cmd-1", state, tuple(sealed)).encode())
    assert reply.command_id == "cmd-1"
    assert reply.error is None
    assert reply.state == state
    assert [(e.hash, e.body, e.sequence) for e in reply.events] == [
        (e.hash, e.body, e.sequence) for e in sealed
    ]
    assert all(e.recomputed_hash() == e.hash for e in reply.events)


def test_a_no_op_has_the_state_and_no_events() -> None:
    state, _ = created()
    reply = CommandReply.decode(CommandReply("cmd-2", state).encode())
    assert (reply.state, reply.events, reply.error) == (state, (), None)


@pytest.mark.parametrize("error", [IllegalTransition("not now"), AlreadyAnswered("twice")])
def test_a_refusal_comes_back_as_the_same_domain_error(error: DomainError) -> None:
    reply = CommandReply.decode(CommandReply("cmd-3", error=error).encode())
    assert reply.state is None
    assert type(reply.error) is type(error)
    assert reply.error is not None and reply.error.message == error.message
    assert reply.error.code == error.code
