"""Valid task histories built through the pure decider, for tests that need real logs.

``Ledger`` is an in-memory event log fed by ``decide`` + ``evolve``: it seals every
event into its task's hash chain and keeps the log order, the way a backend would.
``lifecycle`` scripts the commands of one task from creation to a chosen ending, so
tests can build many-task logs (and interleave them) without a running system.
``chain`` seals filler events straight onto a stream, for tests of the log itself that need
a valid hash chain and no lifecycle.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from aggregates import (
    ArchiveTask,
    CancelTask,
    CheckDeadlines,
    Command,
    CreateTask,
    DistributeTask,
    Evaluate,
    RecordFailure,
    RecordResponse,
    TaskState,
    decide,
    evolve,
)
from events import GENESIS_HASH, Envelope, Event, MinerAssignment, StreamHead, seal, to_data

T0 = datetime(2025, 1, 1, tzinfo=UTC)
_IDS = uuid.UUID("5f0c3f4e-4a43-4a7c-9d1f-7d1f0bde0a11")

# Endings a scripted lifecycle can reach, with the status each leaves the task in.
ENDINGS: dict[str, str] = {
    "approved": "APPROVED",
    "failover_approved": "APPROVED",
    "late_partial_approved": "APPROVED",
    "rejected": "FAILED",
    "all_failed": "FAILED",
    "all_timed_out": "FAILED",
    "expired_pending": "FAILED",
    "cancelled_pending": "CANCELLED",
    "cancelled_distributed": "CANCELLED",
}

TASK_DEADLINE = timedelta(seconds=300)
MINER_TIMEOUT = timedelta(seconds=30)


def event_id(task_id: str, sequence: int) -> str:
    """Deterministic uuids, so a rebuilt history is byte-for-byte the same."""
    return str(uuid.uuid5(_IDS, f"{task_id}/{sequence}"))


class Ledger:
    """Decides commands against tasks and records the sealed events in log order."""

    def __init__(self, actor: str = "tests") -> None:
        self.actor = actor
        self.states: dict[str, TaskState] = {}
        self.log: list[Envelope] = []
        # Each task's envelopes too: scanning the whole log per command made long
        # histories (the Kafka fault test's tens of thousands of tasks) quadratic.
        self._streams: dict[str, list[Envelope]] = {}

    def state(self, task_id: str) -> TaskState:
        return self.states.get(task_id) or TaskState(task_id)

    def stream(self, task_id: str) -> list[Envelope]:
        return list(self._streams.get(task_id, ()))

    def execute(self, task_id: str, command: Command) -> list[Envelope]:
        """Decide and record; a DomainError propagates and records nothing."""
        return self.record(task_id, decide(self.state(task_id), command), command.now)

    def record(self, task_id: str, events: Sequence[Event], at: datetime) -> list[Envelope]:
        state = self.state(task_id)
        stream = self.stream(task_id)
        previous = stream[-1].hash if stream else GENESIS_HASH
        sealed = []
        for event in events:
            state = evolve(state, event, at)
            envelope = seal(
                event_id=event_id(task_id, state.version),
                task_id=task_id,
                sequence=state.version,
                type=event.TYPE,
                version=event.VERSION,
                occurred_at=at,
                actor=self.actor,
                data=to_data(event),
                prev_hash=previous,
                correlation_id=task_id,
            )
            sealed.append(envelope)
            previous = envelope.hash
        self.states[task_id] = state
        self.log.extend(sealed)
        self._streams.setdefault(task_id, []).extend(sealed)
        return sealed

    def heads(self) -> list[StreamHead]:
        last: dict[str, Envelope] = {}
        for envelope in self.log:
            last[envelope.task_id] = envelope
        return [StreamHead(e.task_id, e.sequence, e.hash) for e in last.values()]


def lifecycle(
    ending: str,
    start: datetime,
    hotkeys: Sequence[str],
    *,
    spare: str = "hk-spare",
    archive: bool = False,
) -> list[Command]:
    """The commands that take one task from creation to ``ending`` (a key of ENDINGS)."""
    if ending not in ENDINGS:
        raise ValueError(f"unknown ending {ending!r}")
    at = _Clock(start)
    commands: list[Command] = [
        CreateTask(
            task_type="transcription",
            priority="normal",
            input={"audio": "sha256:" + "ab" * 32, "language": "en"},
            client="client-1",
            deadline=start + TASK_DEADLINE,
            miners_wanted=len(hotkeys),
            miner_timeout_seconds=MINER_TIMEOUT.total_seconds(),
            now=at(),
        )
    ]
    if ending == "expired_pending":
        commands.append(CheckDeadlines(now=start + TASK_DEADLINE))
        return _archived(commands, archive, at)
    if ending == "cancelled_pending":
        commands.append(CancelTask(reason="client cancelled", now=at()))
        return _archived(commands, archive, at)
    distributed_at = at()
    commands.append(
        DistributeTask(
            assignments=tuple(
                MinerAssignment(hotkey=h, deadline=distributed_at + MINER_TIMEOUT) for h in hotkeys
            ),
            now=distributed_at,
        )
    )
    answered = list(hotkeys)
    if ending == "cancelled_distributed":
        commands.append(CancelTask(reason="client cancelled", now=at()))
    elif ending == "all_failed":
        commands += [RecordFailure(h, "bad output", now=at()) for h in hotkeys]
    elif ending == "all_timed_out":
        commands.append(CheckDeadlines(now=distributed_at + MINER_TIMEOUT))
    elif ending == "late_partial_approved":
        commands.append(_response(hotkeys[0], at()))
        commands.append(CheckDeadlines(now=start + TASK_DEADLINE))
        commands.append(Evaluate("validator-1", {hotkeys[0]: 0.7}, now=at.jump(TASK_DEADLINE)))
    else:
        if ending == "failover_approved":
            failed_at = at()
            replacement = MinerAssignment(hotkey=spare, deadline=failed_at + MINER_TIMEOUT)
            commands.append(RecordFailure(hotkeys[0], "refused", failed_at, replacement))
            answered = [*hotkeys[1:], spare]
        commands += [_response(h, at()) for h in answered]
        if ending == "rejected":
            scores = {h: 0.0 for h in answered}
        else:
            scores = {h: round(0.9 - 0.1 * i, 2) for i, h in enumerate(answered)}
        commands.append(Evaluate("validator-1", scores, now=at()))
    return _archived(commands, archive, at)


def _response(hotkey: str, now: datetime) -> RecordResponse:
    return RecordResponse(hotkey, {"text": f"transcript by {hotkey}"}, latency_ms=120.5, now=now)


def _archived(commands: list[Command], archive: bool, at: _Clock) -> list[Command]:
    if archive:
        commands.append(ArchiveTask(now=at.jump(timedelta(days=1)), blobs_deleted=()))
    return commands


class _Clock:
    """Hands out strictly increasing moments, one second apart."""

    def __init__(self, start: datetime) -> None:
        self.now = start - timedelta(seconds=1)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now

    def jump(self, by: timedelta) -> datetime:
        self.now += by
        return self.now


def interleave(
    scripts: dict[str, list[Command]], order: Iterable[str]
) -> list[tuple[str, Command]]:
    """Merge per-task scripts in the given task order, keeping each task's own order.

    ``order`` names a task once per command it should contribute next; leftovers
    follow in script order.
    """
    queues = {task_id: list(commands) for task_id, commands in scripts.items()}
    merged: list[tuple[str, Command]] = []
    for task_id in order:
        if queues.get(task_id):
            merged.append((task_id, queues[task_id].pop(0)))
    for task_id, rest in queues.items():
        merged += [(task_id, command) for command in rest]
    return merged


def chain(
    task_id: str, count: int, *, after: Envelope | None = None, note: str = ""
) -> list[Envelope]:
    """``count`` sealed events continuing ``after`` (or starting the stream)."""
    sequence, previous = (after.sequence, after.hash) if after else (0, GENESIS_HASH)
    events = []
    for _ in range(count):
        sequence += 1
        envelope = seal(
            event_id=str(uuid.uuid4()),
            task_id=task_id,
            sequence=sequence,
            type="MinerFailed",
            version=1,
            occurred_at=T0,
            actor="contract",
            data={"hotkey": f"hk-{sequence}", "reason": f"reason {note}{sequence}"},
            prev_hash=previous,
            correlation_id=task_id,
        )
        events.append(envelope)
        previous = envelope.hash
    return events
