"""The command core both runtimes share: decide_and_seal and the head cache."""

from __future__ import annotations

from collections.abc import Callable
from itertools import count

import pytest

from aggregates import CancelTask, CheckDeadlines, DomainError, InvalidCommand, TaskState, fold
from events import GENESIS_HASH, Envelope
from events.log import check_continuation
from processors.command_core import (
    CommandRequest,
    TaskHead,
    TaskHeads,
    decide_and_seal,
    head_of,
)
from processors.ledger_commands import RecordLedgerEvent
from tests.support.histories import ENDINGS, T0, lifecycle

TASK = "00000000-0000-4000-8000-0000000000c0"


def fresh_ids() -> Callable[[], str]:
    numbers = count(1)
    return lambda: f"00000000-0000-4000-8000-{next(numbers):012d}"


@pytest.mark.parametrize("ending", sorted(ENDINGS))
def test_a_lifecycle_run_through_the_core_is_a_chain_that_folds_to_its_heads(
    ending: str,
) -> None:
    ids = fresh_ids()
    head = head_of(TASK, [])
    stream: list[Envelope] = []
    for command in lifecycle(ending, T0, ("hk-a", "hk-b")):
        before = head
        head, sealed = decide_and_seal(head, CommandRequest(TASK, command, "actor"), ids)
        check_continuation(TASK, before.state.version, before.hash, before.state.version, sealed)
        stream += sealed
        assert head == head_of(TASK, stream)
    assert head.state.status == ENDINGS[ending]
    assert head.state == fold(TASK, stream)


def test_a_refusal_raises_and_a_no_op_keeps_the_head() -> None:
    create, *_ = lifecycle("approved", T0, ("hk-a",))
    empty = TaskHead(TaskState(TASK), GENESIS_HASH)
    with pytest.raises(DomainError):
        decide_and_seal(empty, CommandRequest(TASK, CancelTask("no", T0), "c"), lambda: "x")
    ids = fresh_ids()
    created, _ = decide_and_seal(empty, CommandRequest(TASK, create, "c"), ids)
    again, sealed = decide_and_seal(
        created, CommandRequest(TASK, CheckDeadlines(T0), "keeper"), ids
    )
    assert created.state.exists
    assert (again, sealed) == (created, [])


def test_events_name_the_command_as_their_cause_unless_told_otherwise() -> None:
    create = lifecycle("approved", T0, ("hk-a",))[0]
    empty = head_of(TASK, [])
    ids = fresh_ids()
    _, by_id = decide_and_seal(
        empty,
        CommandRequest(TASK, create, "c", command_id="cmd-1"),
        ids,
    )
    _, told = decide_and_seal(
        empty,
        CommandRequest(TASK, create, "c", causation_id="cause", command_id="cmd-1"),
        ids,
    )
    _, plain = decide_and_seal(empty, CommandRequest(TASK, create, "c"), ids)
    assert [e.causation_id for e in by_id + told + plain] == ["cmd-1", "cause", None]
    assert {e.correlation_id for e in by_id + told + plain} == {TASK}


def test_a_ledger_command_is_no_task_command() -> None:
    command = RecordLedgerEvent("WeightsSubmitted", 1, {}, T0)
    with pytest.raises(InvalidCommand):
        decide_and_seal(head_of(TASK, []), CommandRequest(TASK, command, "c"), lambda: "x")


def test_the_heads_keep_the_most_recently_used() -> None:
    heads = TaskHeads(2)
    for task_id in ("a", "b"):
        heads.remember(task_id, head_of(task_id, []))
    assert heads.get("a") is not None  # now the most recent
    heads.remember("c", head_of("c", []))
    assert [heads.get(t) is not None for t in ("a", "b", "c")] == [True, False, True]
    heads.forget("a")
    assert heads.get("a") is None
    heads.clear()
    assert heads.get("c") is None
