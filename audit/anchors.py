"""The audit against anchors: does the log reproduce every signed checkpoint?

The task chains prove each stream against itself; someone who can write the
log can still recompute every hash of a rewritten stream, or drop a stream
and its head. The anchors (checkpoints signed by the proxy hotkey, published
outside the data directory) pin the log chain at positions: the audit folds
the chain again, in log order, and compares it at every anchored position.

What it can name: a checkpoint whose signature is not the proxy's; the first
checkpoint per partition the log does not reproduce, and where the first
missing or different event is — exactly when the log's numbering shows it
(a position missing from a log that numbers without gaps, or a log that ends
before the checkpoint), otherwise as the range between the last checkpoint
reproduced and that one (only the chain's end is anchored, not each event);
and the events after the last checkpoint, which no anchor covers yet.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from events.log_chain import ChainHead, Checkpoint


@dataclass(frozen=True, slots=True)
class AnchorFinding:
    kind: str
    partition: int
    position: int
    message: str

    def __str__(self) -> str:
        where = f"log partition {self.partition} position {self.position}"
        return f"{where}: {self.kind}: {self.message}"


@dataclass
class AnchorReport:
    checkpoints: int = 0
    verified: int = 0
    reproduced: int = 0
    findings: list[AnchorFinding] = field(default_factory=list)
    unanchored: dict[int, int] = field(default_factory=dict)
    """Per partition, the events after its last anchored checkpoint."""
    events: int = 0
    seconds: float = 0.0

    @property
    def clean(self) -> bool:
        return not self.findings

    @property
    def unanchored_events(self) -> int:
        return sum(self.unanchored.values())

    def to_document(self) -> dict[str, object]:
        return {
            "events": self.events,
            "seconds": self.seconds,
            "checkpoints": self.checkpoints,
            "verified": self.verified,
            "reproduced": self.reproduced,
            "findings": [
                {
                    "kind": f.kind,
                    "partition": f.partition,
                    "position": f.position,
                    "message": f.message,
                }
                for f in self.findings
            ],
            "unanchored": {
                "events": self.unanchored_events,
                "partitions": {str(p): n for p, n in sorted(self.unanchored.items())},
            },
        }


@dataclass(slots=True)
class _Partition:
    checkpoints: list[Checkpoint]
    head: ChainHead = field(default_factory=ChainHead)
    next: int = 0
    reproduced_position: int = 0
    reproduced_events: int = 0
    first_gap: int | None = None
    diverged: bool = False


class AnchorAuditor:
    """Feed (partition, position, event hash) in log order, then :meth:`finish`.

    ``contiguous``: the log numbers its events without gaps (SQLite does;
    Kafka offsets skip transaction markers), so a missing number is a missing
    event.
    """

    def __init__(
        self,
        checkpoints: Iterable[Checkpoint],
        verify: Callable[[Checkpoint], bool],
        log_name: str,
        *,
        contiguous: bool,
    ) -> None:
        self.report = AnchorReport()
        self._contiguous = contiguous
        anchored: dict[int, dict[int, Checkpoint]] = {}
        for checkpoint in checkpoints:
            self.report.checkpoints += 1
            if not verify(checkpoint):
                self._find(
                    "forged_checkpoint",
                    checkpoint.partition,
                    checkpoint.position,
                    "the signature is not the proxy hotkey's",
                )
                continue
            if checkpoint.log != log_name:
                self._find(
                    "foreign_checkpoint",
                    checkpoint.partition,
                    checkpoint.position,
                    f"signed for log {checkpoint.log!r}, this is {log_name!r}",
                )
                continue
            self.report.verified += 1
            at = anchored.setdefault(checkpoint.partition, {})
            seen = at.get(checkpoint.position)
            if seen is not None and (seen.log_hash, seen.events) != (
                checkpoint.log_hash,
                checkpoint.events,
            ):
                self._find(
                    "conflicting_checkpoints",
                    checkpoint.partition,
                    checkpoint.position,
                    "two signed checkpoints disagree about the same position",
                )
            at[checkpoint.position] = checkpoint
        self._partitions = {
            partition: _Partition(sorted(by_position.values(), key=lambda c: c.position))
            for partition, by_position in anchored.items()
        }

    def _find(self, kind: str, partition: int, position: int, message: str) -> None:
        self.report.findings.append(AnchorFinding(kind, partition, position, message))

    def add(self, partition: int, position: int, event_hash: str) -> None:
        state = self._partitions.get(partition)
        if state is None:
            state = self._partitions[partition] = _Partition([])
        checkpoints = state.checkpoints
        head = state.head
        if (
            self._contiguous
            and state.first_gap is None
            and position != head.position + 1
            and position > head.position
        ):
            state.first_gap = head.position + 1
        while state.next < len(checkpoints) and checkpoints[state.next].position < position:
            self._compare(partition, state, checkpoints[state.next])
        head.add(position, event_hash)
        if state.next < len(checkpoints) and checkpoints[state.next].position == position:
            self._compare(partition, state, checkpoints[state.next])

    def _compare(
        self, partition: int, state: _Partition, checkpoint: Checkpoint, at_end: bool = False
    ) -> None:
        state.next += 1
        if state.diverged:
            return
        head = state.head
        if head.events == checkpoint.events and head.log_hash == checkpoint.log_hash:
            self.report.reproduced += 1
            state.reproduced_position = checkpoint.position
            state.reproduced_events = head.events
            state.first_gap = None
            return
        state.diverged = True
        since = state.reproduced_position
        if state.first_gap is not None and state.first_gap <= checkpoint.position:
            where, message = state.first_gap, f"the event at position {state.first_gap} is missing"
        elif at_end and head.position < checkpoint.position:
            where = head.position + 1
            message = f"the log ends at position {head.position}; events from {where} are missing"
        else:
            where = since + 1
            message = (
                f"the first missing or different event is at a position from {since + 1} "
                f"to {checkpoint.position} (the last reproduced checkpoint is at {since})"
            )
        self._find(
            "log_rewritten",
            partition,
            where,
            f"the log does not reproduce the checkpoint at position {checkpoint.position} "
            f"({checkpoint.events} events, log hash {checkpoint.log_hash[:16]}…; the log has "
            f"{head.events} events there, log hash {head.log_hash[:16]}…): {message}",
        )

    def finish(self) -> AnchorReport:
        for partition, state in sorted(self._partitions.items()):
            self.report.events += state.head.events
            while state.next < len(state.checkpoints):
                self._compare(partition, state, state.checkpoints[state.next], at_end=True)
            unanchored = state.head.events - state.reproduced_events
            if state.diverged:
                unanchored = 0  # nothing after a rewritten stretch can be vouched for anyway
            if unanchored > 0:
                self.report.unanchored[partition] = unanchored
        return self.report
