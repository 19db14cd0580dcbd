"""Replay the whole log and check every hash, link, sequence and transition.

The audit keeps a few fields per task (last sequence and hash, status, the
miners of open tasks), never the payloads, so memory grows with the number of
tasks, not with the number of events.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from aggregates import MINER_TRANSITIONS, START, TERMINAL, TRANSITIONS
from events import EVENT_TYPES, GENESIS_HASH, Envelope, EventLog, StreamHead
from events.codec import sha256_hex


@dataclass(frozen=True, slots=True)
class Violation:
    task_id: str
    sequence: int
    kind: str
    message: str

    def __str__(self) -> str:
        return f"task {self.task_id} sequence {self.sequence}: {self.kind}: {self.message}"


@dataclass
class AuditReport:
    events: int = 0
    tasks: int = 0
    seconds: float = 0.0
    violations: list[Violation] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.violations

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


@dataclass(slots=True)
class _Stream:
    sequence: int = 0
    hash: str = GENESIS_HASH
    status: str = START
    miners: dict[str, str] | None = None


class Auditor:
    """Feed envelopes in log order, then the recorded stream heads."""

    def __init__(self) -> None:
        self.report = AuditReport()
        self._streams: dict[str, _Stream] = {}

    def _violate(self, envelope: Envelope, kind: str, message: str) -> None:
        self.report.violations.append(Violation(envelope.task_id, envelope.sequence, kind, message))

    def check(self, envelope: Envelope) -> None:
        self.report.events += 1
        stream = self._streams.get(envelope.task_id)
        if stream is None:
            stream = self._streams[envelope.task_id] = _Stream()
        if sha256_hex(envelope.body) != envelope.hash:
            self._violate(envelope, "hash_mismatch", "the stored event does not match its hash")
        if envelope.sequence != stream.sequence + 1:
            self._violate(
                envelope,
                "sequence_gap",
                f"expected sequence {stream.sequence + 1} (an event is missing or out of order)",
            )
        if envelope.prev_hash != stream.hash:
            self._violate(envelope, "broken_link", "previous-hash does not match the chain")
        cls = EVENT_TYPES.get(envelope.type)
        if cls is None or not 1 <= envelope.version <= cls.VERSION:
            self._violate(envelope, "unknown_event", f"{envelope.type} v{envelope.version}")
        after = TRANSITIONS.get((stream.status, envelope.type))
        if after is None:
            self._violate(
                envelope, "illegal_transition", f"{envelope.type} is not allowed in {stream.status}"
            )
        else:
            self._check_miners(envelope, stream)
            stream.status = after
            if after in TERMINAL:
                stream.miners = None
        stream.sequence = envelope.sequence
        stream.hash = envelope.hash

    def _check_miners(self, envelope: Envelope, stream: _Stream) -> None:
        data = envelope.data
        miners = stream.miners if stream.miners is not None else {}
        stream.miners = miners
        if envelope.type == "TaskDistributed":
            new = [a.get("hotkey") for a in data.get("assignments", ())]
        elif envelope.type == "MinerAssigned":
            new = [data.get("assignment", {}).get("hotkey")]
        else:
            new = []
        for hotkey in new:
            if not isinstance(hotkey, str) or hotkey in miners:
                self._violate(envelope, "illegal_miner_transition", f"{hotkey} assigned twice")
            else:
                miners[hotkey] = "assigned"
        hotkey = data.get("hotkey")
        if envelope.type in ("MinerResponded", "MinerFailed", "MinerTimedOut"):
            after = MINER_TRANSITIONS.get((miners.get(str(hotkey), "unassigned"), envelope.type))
            if after is None:
                self._violate(
                    envelope,
                    "illegal_miner_transition",
                    f"{envelope.type} for miner {hotkey} that is {miners.get(str(hotkey))}",
                )
            else:
                miners[str(hotkey)] = after
        if envelope.type == "TaskCompleted" and "assigned" in miners.values():
            self._violate(envelope, "illegal_transition", "completed while miners were assigned")

    def finish(self, heads: Iterable[StreamHead]) -> AuditReport:
        """Compare each stream's end with the head the log recorded for it."""
        recorded = {head.task_id: head for head in heads}
        for task_id, head in recorded.items():
            stream = self._streams.get(task_id)
            if stream is None or stream.sequence != head.sequence or stream.hash != head.hash:
                seen = stream.sequence if stream else 0
                self.report.violations.append(
                    Violation(
                        task_id,
                        head.sequence,
                        "truncated_stream",
                        f"the log recorded {head.sequence} events for this task, found {seen}",
                    )
                )
        self.report.tasks = len(self._streams)
        return self.report


async def audit_log(
    log: EventLog,
    *,
    progress: Callable[[int], None] | None = None,
    batch_size: int = 10_000,
) -> AuditReport:
    started = time.perf_counter()
    auditor = Auditor()
    async for batch in log.subscribe(after=None, follow=False, batch_size=batch_size):
        for envelope in batch.events:
            auditor.check(envelope)
        if progress is not None:
            progress(auditor.report.events)
    report = auditor.finish(await log.stream_heads())
    report.seconds = time.perf_counter() - started
    return report


def audit_envelopes(envelopes: Iterable[Envelope], heads: Iterable[StreamHead] = ()) -> AuditReport:
    auditor = Auditor()
    for envelope in envelopes:
        auditor.check(envelope)
    return auditor.finish(heads)
