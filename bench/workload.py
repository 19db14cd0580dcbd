"""The benchmark workload: whole task lifecycles, about 8 events each with 3 miners."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aggregates import Command, CreateTask, DistributeTask, Evaluate, RecordResponse
from events import MinerAssignment, trusted

MINERS = tuple(f"5Miner{index:02d}" for index in range(12))
EVENTS_PER_TASK = 8


@dataclass(frozen=True, slots=True)
class Lifecycle:
    task_id: str
    commands: tuple[Command, ...]


def lifecycle(index: int, base: datetime | None = None) -> Lifecycle:
    """Create, distribute to 3 miners, 3 responses (then DONE), evaluate (then APPROVED)."""
    now = base or datetime.now(UTC)
    miners = [MINERS[(index + offset) % len(MINERS)] for offset in range(3)]
    deadline = now + timedelta(minutes=5)
    # The bench's own inputs are of their types already: built as the edge's validated
    # ones would be, without spending the writers' time validating them again.
    assignments = tuple(
        trusted(MinerAssignment, {"hotkey": m, "deadline": deadline}) for m in miners
    )
    text = f"Summarize document {index}. It has a few sentences. They say little."
    commands: list[Command] = [
        CreateTask(
            task_type="summarization",
            priority=("low", "normal", "high", "critical")[index % 4],
            input={"text": text, "max_words": 20},
            client="bench",
            deadline=deadline,
            miners_wanted=3,
            miner_timeout_seconds=30.0,
            now=now,
        ),
        DistributeTask(assignments, now),
    ]
    commands += [
        RecordResponse(m, {"summary": f"Document {index} says little."}, 10.0 + rank, now)
        for rank, m in enumerate(miners)
    ]
    commands.append(Evaluate("5Validator", {m: 0.5 + 0.1 * r for r, m in enumerate(miners)}, now))
    return Lifecycle(f"00000000-0000-4000-8000-{index:012d}", tuple(commands))


def lifecycles(count: int) -> Iterator[Lifecycle]:
    base = datetime.now(UTC)
    for index in range(count):
        yield lifecycle(index, base)
