"""The Task decider under random command sequences: the lifecycle's invariants hold at every step.

A Hypothesis state machine drives a few tasks through ``decide`` + ``evolve``,
seals what they produce into per-task hash chains (an in-memory log), and feeds
the same envelopes to the real projector over a SQLite read-model store. After
every step the log must replay to the state the machine kept, audit clean, and
project to the same state. Random sequences reach APPROVED only now and then, so
a second property runs the scripted lifecycles (every ending, interleaved) through
the same checks, and then throws every kind of command at the finished tasks.
"""

from __future__ import annotations

import asyncio
import math
import tempfile
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from aggregates import (
    OPEN,
    TERMINAL,
    TRANSITIONS,
    ArchiveTask,
    CancelTask,
    CheckDeadlines,
    Command,
    CreateTask,
    Decision,
    DistributeTask,
    DomainError,
    Evaluate,
    InvalidCommand,
    MinerAlreadyAssigned,
    RecordFailure,
    RecordResponse,
    TaskNotFound,
    TaskState,
    decide,
    decide_evolved,
    evolve,
    fold,
)
from audit.log_audit import audit_envelopes
from events import (
    GENESIS_HASH,
    PRIORITIES,
    TASK_TYPES,
    Batch,
    Envelope,
    Event,
    MinerAssignment,
    StreamHead,
    TaskEvaluated,
    seal,
    to_data,
)
from projections import Projector
from projections.sqlite_store import SqliteReadModelStore
from tests.support.histories import ENDINGS, T0, interleave, lifecycle

TASKS = ("task-a", "task-b")
POOL = tuple(f"hk-{n}" for n in range(6))

task_ids = st.sampled_from(TASKS)
hotkeys = st.sampled_from(POOL)
miner_timeouts = st.integers(min_value=1, max_value=60)
json_leaves = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8)
results = st.dictionaries(st.text(max_size=6), json_leaves, max_size=3)


def response_rule() -> Any:
    """The ``rule`` of a miner's answer (used twice, see ``respond_again``)."""
    return rule(
        task_id=task_ids,
        choice=st.integers(min_value=0, max_value=50),
        from_assigned=st.sampled_from([True, True, True, False]),
        result=results,
        latency_ms=st.floats(min_value=0, max_value=1e5),
    )


scores = st.floats(min_value=-0.5, max_value=1.5) | st.sampled_from([0.0, 1.0, math.nan])


class Harness:
    """Runs commands through the pure decider, records the sealed events, projects them,
    and checks every invariant the lifecycle promises."""

    def __init__(self, task_ids: tuple[str, ...]) -> None:
        self.states = {task_id: TaskState(task_id) for task_id in task_ids}
        self.streams: dict[str, list[Envelope]] = {task_id: [] for task_id in task_ids}
        self.log: list[Envelope] = []
        self.last_batch: tuple[Envelope, ...] = ()
        self.evaluated: Counter[str] = Counter()
        self._loop = asyncio.new_event_loop()
        self._tmp = tempfile.TemporaryDirectory()
        self.store = SqliteReadModelStore(Path(self._tmp.name) / "read.db")
        self.projector = Projector(self.store)

    def close(self) -> None:
        self._loop.run_until_complete(self.store.close())
        self._loop.close()
        self._tmp.cleanup()

    def run(self, task_id: str, command: Command) -> list[Event] | None:
        """Decide, check, seal, record and project; None when the decider refused."""
        before = self.states[task_id]
        try:
            events = decide(before, command)
        except DomainError:
            return None
        state = before
        stream = self.streams[task_id]
        sealed: list[Envelope] = []
        for produced in events:
            assert (state.status, produced.TYPE) in TRANSITIONS, (
                f"decider produced {produced.TYPE} in {state.status}"
            )
            state = evolve(state, produced, command.now)
            previous = sealed[-1].hash if sealed else (stream[-1].hash if stream else GENESIS_HASH)
            sealed.append(
                seal(
                    event_id=f"{task_id}/{state.version}",
                    task_id=task_id,
                    sequence=state.version,
                    type=produced.TYPE,
                    version=produced.VERSION,
                    occurred_at=command.now,
                    actor="property-test",
                    data=to_data(produced),
                    prev_hash=previous,
                )
            )
        # EmbeddedCommands takes the state from decide_evolved instead of
        # evolving the events itself: it must be this very state.
        assert decide_evolved(before, command) == Decision(events, state)
        if before.status in TERMINAL:
            assert [e.TYPE for e in events] in ([], ["TaskArchived"])
            assert state.status == before.status
        self.states[task_id] = state
        stream.extend(sealed)
        self.log.extend(sealed)
        if sealed:
            self.evaluated.update(
                hotkey for e in events if isinstance(e, TaskEvaluated) for hotkey in e.rewards
            )
            self.project(tuple(sealed))
            self._assert_not_applied_twice(state, command)
        return events

    def _assert_not_applied_twice(self, state: TaskState, command: Command) -> None:
        # Commands carry their own `now`, so this is the very same command again.
        if isinstance(command, CheckDeadlines | ArchiveTask):
            assert decide(state, command) == []
        else:
            with pytest.raises(DomainError):
                decide(state, command)

    def project(self, batch: tuple[Envelope, ...]) -> None:
        self.last_batch = batch
        self._loop.run_until_complete(self.projector.apply(Batch(batch, str(len(self.log)))))

    def check(self) -> None:
        self.log_replays_to_the_kept_state()
        self.a_miner_is_assigned_once_per_task()
        self.done_means_every_miner_settled_and_one_responded()
        self.hash_chain_audits_clean()
        self.projection_equals_the_fold()

    def log_replays_to_the_kept_state(self) -> None:
        for task_id, state in self.states.items():
            assert fold(task_id, self.streams[task_id]) == state
            assert state.version == len(self.streams[task_id])

    def a_miner_is_assigned_once_per_task(self) -> None:
        for state in self.states.values():
            names = [slot.hotkey for slot in state.miners]
            assert len(names) == len(set(names))

    def done_means_every_miner_settled_and_one_responded(self) -> None:
        for state in self.states.values():
            if state.status in ("DONE", "APPROVED"):
                assert not state.assigned()
                assert state.responded()
            if state.status == "DISTRIBUTED":
                assert state.assigned()

    def hash_chain_audits_clean(self) -> None:
        heads = [
            StreamHead(task_id, stream[-1].sequence, stream[-1].hash)
            for task_id, stream in self.streams.items()
            if stream
        ]
        report = audit_envelopes(self.log, heads)
        assert report.clean, [str(v) for v in report.violations]
        assert report.events == len(self.log)

    def projection_equals_the_fold(self) -> None:
        for task_id, state in self.states.items():
            projected = self._loop.run_until_complete(self.store.get_task(task_id))
            assert projected == (state if state.exists else None)
        slots = [slot for state in self.states.values() for slot in state.miners]
        names = sorted({slot.hotkey for slot in slots} | set(POOL))
        miners = self._loop.run_until_complete(self.store.get_miners(names))
        for hotkey in names:
            mine = [slot.state for slot in slots if slot.hotkey == hotkey]
            stats = miners.get(hotkey)
            if not mine:
                assert stats is None
                continue
            assert stats is not None
            assert stats.assigned == len(mine)
            assert stats.in_flight == mine.count("assigned")
            assert stats.responded == mine.count("responded")
            assert stats.failed == mine.count("failed")
            assert stats.timed_out == mine.count("timed_out")
            assert stats.evaluations == self.evaluated[hotkey]


class DeciderMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self.harness = Harness(TASKS)
        self.states = self.harness.states

    def teardown(self) -> None:
        self.harness.close()

    def run(self, task_id: str, command: Command) -> list[Event] | None:
        produced = self.harness.run(task_id, command)
        event(f"reached {self.states[task_id].status}")  # shown by --hypothesis-show-statistics
        return produced

    def _pick(self, task_id: str, choice: int, from_assigned: bool) -> str:
        assigned = [slot.hotkey for slot in self.states[task_id].assigned()]
        if from_assigned and assigned:
            return assigned[choice % len(assigned)]
        return POOL[choice % len(POOL)]

    # -- rules ------------------------------------------------------------------

    @initialize(deadline_in=st.integers(min_value=30, max_value=600))
    def open_first_task(self, deadline_in: int) -> None:
        """One task starts created, so short runs reach the late statuses; the other is
        left to the ``create`` rule."""
        self.create(TASKS[0], deadline_in, 2, 30.0, "transcription", "normal")

    @rule(millis=st.integers(min_value=0, max_value=120_000))
    def advance_clock(self, millis: int) -> None:
        self.now += timedelta(milliseconds=millis)

    @rule(task_id=task_ids)
    def advance_clock_to_the_next_deadline(self, task_id: str) -> None:
        """Deadlines are inclusive: land on one exactly, as the deadline keeper's timer does."""
        due = self.states[task_id].next_deadline()
        if due is not None and due > self.now:
            self.now = due

    @rule(
        task_id=task_ids,
        deadline_in=st.integers(min_value=-5, max_value=400),
        miners_wanted=st.integers(min_value=0, max_value=3),
        miner_timeout=st.sampled_from([0.5, 5.0, 30.0]),
        task_type=st.sampled_from(TASK_TYPES),
        priority=st.sampled_from(PRIORITIES),
    )
    def create(
        self,
        task_id: str,
        deadline_in: int,
        miners_wanted: int,
        miner_timeout: float,
        task_type: Any,
        priority: Any,
    ) -> None:
        before = self.states[task_id]
        command = CreateTask(
            task_type=task_type,
            priority=priority,
            input={"text": "hello"},
            client="client-1",
            deadline=self.now + timedelta(seconds=deadline_in),
            miners_wanted=miners_wanted,
            miner_timeout_seconds=miner_timeout,
            now=self.now,
        )
        produced = self.run(task_id, command)
        accepted = not before.exists and deadline_in > 0 and miners_wanted >= 1
        assert (produced is not None) == accepted
        if produced is not None:
            assert self.states[task_id].status == "PENDING"

    @rule(
        task_id=task_ids,
        chosen=st.lists(st.tuples(hotkeys, miner_timeouts), max_size=4)
        | st.lists(st.tuples(hotkeys, miner_timeouts), max_size=4, unique_by=lambda c: c[0]),
    )
    def distribute(self, task_id: str, chosen: list[tuple[str, int]]) -> None:
        before = self.states[task_id]
        command = DistributeTask(
            assignments=tuple(
                MinerAssignment(hotkey=h, deadline=self.now + timedelta(seconds=s))
                for h, s in chosen
            ),
            now=self.now,
        )
        produced = self.run(task_id, command)
        names = [h for h, _ in chosen]
        accepted = before.status == "PENDING" and bool(names) and len(set(names)) == len(names)
        assert (produced is not None) == accepted
        if produced is not None:
            assert [slot.hotkey for slot in self.states[task_id].miners] == names

    @response_rule()
    def respond(
        self,
        task_id: str,
        choice: int,
        from_assigned: bool,
        result: dict[str, Any],
        latency_ms: float,
    ) -> None:
        before = self.states[task_id]
        hotkey = self._pick(task_id, choice, from_assigned)
        slot = before.slot(hotkey)
        produced = self.run(task_id, RecordResponse(hotkey, result, latency_ms, now=self.now))
        accepted = before.status == "DISTRIBUTED" and slot is not None and slot.state == "assigned"
        assert (produced is not None) == accepted
        if produced is not None:
            after = self.states[task_id].slot(hotkey)
            assert after is not None and after.state == "responded" and after.result == result

    @response_rule()
    def respond_again(self, **response: Any) -> None:
        """Answers are the commonest command in a task's life: a second entry for the same
        rule makes Hypothesis pick it twice as often."""
        self.respond(**response)

    @rule(
        task_id=task_ids,
        choice=st.integers(min_value=0, max_value=50),
        from_assigned=st.booleans(),
        replacement=st.none() | st.tuples(hotkeys, miner_timeouts),
    )
    def fail(
        self,
        task_id: str,
        choice: int,
        from_assigned: bool,
        replacement: tuple[str, int] | None,
    ) -> None:
        before = self.states[task_id]
        hotkey = self._pick(task_id, choice, from_assigned)
        slot = before.slot(hotkey)
        offered = (
            MinerAssignment(
                hotkey=replacement[0], deadline=self.now + timedelta(seconds=replacement[1])
            )
            if replacement
            else None
        )
        produced = self.run(task_id, RecordFailure(hotkey, "bad output", self.now, offered))
        before_deadline = before.deadline is not None and self.now < before.deadline
        duplicate = (
            offered is not None and before_deadline and before.slot(offered.hotkey) is not None
        )
        accepted = (
            before.status == "DISTRIBUTED"
            and slot is not None
            and slot.state == "assigned"
            and not duplicate
        )
        assert (produced is not None) == accepted
        if produced is not None:
            after = self.states[task_id]
            failed = after.slot(hotkey)
            assert failed is not None and failed.state == "failed"
            if offered is not None and before_deadline:
                taken = after.slot(offered.hotkey)
                assert taken is not None and taken.replaces == hotkey

    @rule(
        task_id=task_ids,
        offered=st.lists(st.tuples(hotkeys, miner_timeouts), max_size=3),
    )
    def check_deadlines(self, task_id: str, offered: list[tuple[str, int]]) -> None:
        before = self.states[task_id]
        command = CheckDeadlines(
            now=self.now,
            replacements=tuple(
                MinerAssignment(hotkey=h, deadline=self.now + timedelta(seconds=s))
                for h, s in offered
            ),
        )
        try:
            produced = decide(before, command)
        except (TaskNotFound, MinerAlreadyAssigned) as refused:
            assert isinstance(refused, MinerAlreadyAssigned) or not before.exists
            return
        assert self.run(task_id, command) == produced
        after = self.states[task_id]
        if after.status in OPEN:
            # Nothing that is due may survive a deadline check.
            assert after.deadline is not None and self.now < after.deadline
            assert all(slot.deadline > self.now for slot in after.assigned())

    @rule(
        task_id=task_ids,
        valid=st.booleans(),
        given_scores=st.dictionaries(hotkeys, scores, max_size=4),
        fair_scores=st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=4, max_size=4),
    )
    def evaluate(
        self,
        task_id: str,
        valid: bool,
        given_scores: dict[str, float],
        fair_scores: list[float],
    ) -> None:
        """Scores for exactly the responders, in range (``valid``), or anything at all."""
        before = self.states[task_id]
        responded = [slot.hotkey for slot in before.responded()]
        proposed = dict(zip(responded, fair_scores, strict=False)) if valid else given_scores
        produced = self.run(task_id, Evaluate("validator-1", proposed, now=self.now))
        accepted = (
            before.status == "DONE"
            and set(proposed) <= set(responded)
            and all(0.0 <= s <= 1.0 for s in proposed.values())
        )
        assert (produced is not None) == accepted
        if produced is None:
            return
        after = self.states[task_id]
        if sum(proposed.values()) > 0:
            assert after.status == "APPROVED"
            assert after.winner is not None and after.scores is not None
            assert after.scores[after.winner] == max(proposed.values())
            assert after.rewards is not None and math.isclose(sum(after.rewards.values()), 1.0)
        else:
            assert after.status == "FAILED"

    @rule(task_id=task_ids, cancel=st.sampled_from([True, False, False]))
    def close(self, task_id: str, cancel: bool) -> None:
        """Cancel or archive: one rule for both, so that cancelling does not end most runs."""
        before = self.states[task_id]
        if not cancel:
            produced = self.run(task_id, ArchiveTask(now=self.now))
            assert (produced is not None) == (before.status in TERMINAL)
            if produced is not None:
                assert len(produced) == (0 if before.archived else 1)
                assert self.states[task_id].archived
        else:
            produced = self.run(task_id, CancelTask("changed my mind", now=self.now))
            assert (produced is not None) == (before.status in OPEN)
            if produced is not None:
                assert self.states[task_id].status == "CANCELLED"

    @precondition(lambda self: bool(self.harness.log))
    @rule(everything=st.booleans())
    def redeliver(self, everything: bool) -> None:
        """At-least-once delivery: the projector sees events it has already applied."""
        harness = self.harness
        harness.project(tuple(harness.log) if everything else harness.last_batch)

    @invariant()
    def lifecycle_invariants_hold(self) -> None:
        self.harness.check()


DeciderMachine.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestDeciderStateMachine = DeciderMachine.TestCase


# -- every scripted ending, interleaved across tasks ---------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    plans=st.lists(
        st.tuples(st.sampled_from(sorted(ENDINGS)), st.integers(1, 3), st.booleans()),
        min_size=1,
        max_size=3,
    ),
    data=st.data(),
)
def test_scripted_lifecycles_keep_every_invariant(
    plans: list[tuple[str, int, bool]], data: st.DataObject
) -> None:
    """The late statuses (DONE, APPROVED, the three ways to FAIL) on every run, not by luck."""
    scripts = {
        f"task-{n}": lifecycle(
            ending, T0 + timedelta(seconds=n), POOL[:miners], spare=POOL[-1], archive=archive
        )
        for n, (ending, miners, archive) in enumerate(plans)
    }
    order = data.draw(st.permutations([t for t, commands in scripts.items() for _ in commands]))
    harness = Harness(tuple(scripts))
    try:
        for task_id, command in interleave(scripts, order):
            assert harness.run(task_id, command) is not None, f"{task_id} refused {command}"
            harness.check()
        for (task_id, state), (ending, _, archive) in zip(
            harness.states.items(), plans, strict=True
        ):
            assert (state.status, state.archived) == (ENDINGS[ending], archive), task_id
            for command in everything_at(state, T0 + timedelta(days=3)):
                harness.run(task_id, command)  # Harness.run asserts terminal states absorb
            assert harness.states[task_id].status == state.status
            assert harness.states[task_id].archived
        harness.project(tuple(harness.log))
        harness.check()
    finally:
        harness.close()


def everything_at(state: TaskState, now: datetime) -> list[Command]:
    """One of every command, aimed at the task's own miners where a command names one."""
    later = MinerAssignment(hotkey="hk-late", deadline=now + timedelta(seconds=30))
    commands: list[Command] = [
        CreateTask("tts", "normal", {}, "client-1", now + timedelta(minutes=5), 1, 30.0, now),
        DistributeTask((later,), now),
        CheckDeadlines(now, (later,)),
        Evaluate("validator-1", {slot.hotkey: 1.0 for slot in state.responded()}, now),
        CancelTask("too late", now),
        ArchiveTask(now),
        ArchiveTask(now),
    ]
    for slot in state.miners:
        commands.append(RecordResponse(slot.hotkey, {"text": "late"}, 1.0, now))
        commands.append(RecordFailure(slot.hotkey, "late", now, later))
    return commands


def test_projecting_the_whole_log_in_one_batch_equals_the_fold(tmp_path: Path) -> None:
    harness = Harness(tuple(f"task-{ending}" for ending in ENDINGS))
    try:
        for ending in ENDINGS:
            for command in lifecycle(ending, T0, POOL[:2], spare=POOL[-1]):
                assert harness.run(f"task-{ending}", command) is not None
    finally:
        harness.close()

    async def project_everything() -> dict[str, TaskState]:
        store = SqliteReadModelStore(tmp_path / "read.db")
        try:
            await Projector(store).apply(Batch(tuple(harness.log), "end"))
            return await store.get_tasks(list(harness.states))
        finally:
            await store.close()

    assert asyncio.run(project_everything()) == harness.states


# -- refusals are DomainErrors -------------------------------------------------


@given(timeout=st.sampled_from([0.0, -1.0, -30.0, math.nan]))
def test_a_non_positive_miner_timeout_is_refused_as_a_domain_error(timeout: float) -> None:
    """``decide`` refuses with a DomainError, never with a validation error of the event."""
    command = CreateTask(
        task_type="tts",
        priority="normal",
        input={},
        client="client-1",
        deadline=T0 + timedelta(minutes=5),
        miners_wanted=1,
        miner_timeout_seconds=timeout,
        now=T0,
    )
    with pytest.raises(InvalidCommand):
        decide(TaskState("task-a"), command)


def test_a_negative_latency_is_refused_as_a_domain_error() -> None:
    state = TaskState("task-a")
    for command in (
        CreateTask("tts", "normal", {}, "c", T0 + timedelta(minutes=5), 1, 30.0, T0),
        DistributeTask((MinerAssignment(hotkey="hk-0", deadline=T0 + timedelta(seconds=30)),), T0),
    ):
        for produced in decide(state, command):
            state = evolve(state, produced, T0)
    with pytest.raises(InvalidCommand):
        decide(state, RecordResponse("hk-0", {"text": "hi"}, latency_ms=-1.0, now=T0))
