"""Replay the whole log and check every hash, link, sequence and transition.

The audit keeps a few fields per task (last sequence and hash, status, the
miners of open tasks), never the payloads, so memory grows with the number of
tasks, not with the number of events.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from hashlib import sha256
from typing import Any, Protocol, runtime_checkable

import orjson

from aggregates import MINER_TRANSITIONS, START, TERMINAL, TRANSITIONS
from events import EVENT_TYPES, GENESIS_HASH, Envelope, EventLog, StreamHead
from events.envelope import body_fields
from events.ledger import LEDGER_EVENT_TYPES, is_ledger_stream

_MINER_EVENTS = frozenset(
    {
        "TaskDistributed",
        "MinerAssigned",
        "MinerResponded",
        "MinerFailed",
        "MinerTimedOut",
        "TaskCompleted",
    }
)


_LATEST_VERSIONS = {name: cls.VERSION for name, cls in EVENT_TYPES.items()}

_REQUIRED_FIELDS = frozenset(
    {"id", "task_id", "sequence", "type", "version", "occurred_at", "actor", "data", "prev_hash"}
)


@runtime_checkable
class RawLog(Protocol):
    """A log that can hand out stored events as (body, hash) without building envelopes
    (the SQLite log can); the audit takes this fast path when the log declares it."""

    def raw_batches(self, batch_size: int) -> AsyncIterator[list[tuple[int, str, int, bytes, str]]]:
        """Batches of stored (position, task id, sequence, body, hash), in log order."""
        ...


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
    ledger: bool = False  # the proxy's own facts: chained and versioned, no task transitions


class Auditor:
    """Feed envelopes in log order, then the recorded stream heads."""

    def __init__(self) -> None:
        self.report = AuditReport()
        self._streams: dict[str, _Stream] = {}

    def check(self, envelope: Envelope) -> None:
        self.check_stored(envelope.body, envelope.hash, body_fields(envelope))

    def check_raw(self, task_id: str, sequence: int, body: bytes, hash: str) -> None:
        """Check a stored row; a body that does not decode is a violation, not a crash."""
        try:
            fields = orjson.loads(body)
            if not isinstance(fields, dict) or not _REQUIRED_FIELDS.issubset(fields):
                raise ValueError("missing envelope fields")
        except ValueError as error:
            self.report.events += 1
            self._violate(task_id, sequence, "malformed_event", f"the stored body: {error}")
            stream = self._streams.setdefault(task_id, _Stream(ledger=is_ledger_stream(task_id)))
            stream.sequence, stream.hash = sequence, hash
            return
        if fields["task_id"] != task_id or fields["sequence"] != sequence:
            self._violate(
                task_id, sequence, "misplaced_event", "the body names another task or sequence"
            )
            # The row is checked in the stream it is stored in, as readers of that stream get it.
            fields = {**fields, "task_id": task_id, "sequence": sequence}
        self.check_stored(body, hash, fields)

    def check_stored(self, body: bytes, hash: str, fields: dict[str, Any]) -> None:
        """Check one stored event: its canonical body, recorded hash and decoded fields."""
        self.report.events += 1
        task_id, sequence, event_type = fields["task_id"], fields["sequence"], fields["type"]
        stream = self._streams.get(task_id)
        if stream is None:
            stream = self._streams[task_id] = _Stream(ledger=is_ledger_stream(task_id))
        if sha256(body).hexdigest() != hash:
            self._violate(
                task_id, sequence, "hash_mismatch", "the stored event does not match its hash"
            )
        if sequence != stream.sequence + 1:
            self._violate(
                task_id,
                sequence,
                "sequence_gap",
                f"expected sequence {stream.sequence + 1} (an event is missing or out of order)",
            )
        if fields["prev_hash"] != stream.hash:
            self._violate(
                task_id, sequence, "broken_link", "previous-hash does not match the chain"
            )
        stream.sequence = sequence
        stream.hash = hash
        version = fields["version"]
        if stream.ledger:
            ledger_type = LEDGER_EVENT_TYPES.get(event_type)
            if ledger_type is None or not 1 <= version <= ledger_type.VERSION:
                self._violate(task_id, sequence, "unknown_event", f"{event_type} v{version}")
            return
        latest = _LATEST_VERSIONS.get(event_type)
        if latest is None or not 1 <= version <= latest:
            self._violate(task_id, sequence, "unknown_event", f"{event_type} v{version}")
        after = TRANSITIONS.get((stream.status, event_type))
        if after is None:
            self._violate(
                task_id,
                sequence,
                "illegal_transition",
                f"{event_type} is not allowed in {stream.status}",
            )
            return
        if event_type in _MINER_EVENTS:
            try:
                self._check_miners(task_id, sequence, event_type, fields["data"], stream)
            except (AttributeError, TypeError, KeyError) as error:
                self._violate(
                    task_id, sequence, "malformed_payload", f"{event_type} payload: {error!r}"
                )
        stream.status = after
        if after in TERMINAL:
            stream.miners = None

    def _violate(self, task_id: str, sequence: int, kind: str, message: str) -> None:
        self.report.violations.append(Violation(task_id, sequence, kind, message))

    def _check_miners(
        self, task_id: str, sequence: int, event_type: str, data: dict[str, Any], stream: _Stream
    ) -> None:
        miners = stream.miners if stream.miners is not None else {}
        stream.miners = miners
        if event_type == "TaskDistributed":
            new = [a.get("hotkey") for a in data.get("assignments", ())]
        elif event_type == "MinerAssigned":
            new = [data.get("assignment", {}).get("hotkey")]
        else:
            new = []
        for hotkey in new:
            if not isinstance(hotkey, str) or hotkey in miners:
                self._violate(
                    task_id, sequence, "illegal_miner_transition", f"{hotkey} assigned twice"
                )
            else:
                miners[hotkey] = "assigned"
        if event_type in ("MinerResponded", "MinerFailed", "MinerTimedOut"):
            hotkey = str(data.get("hotkey"))
            after = MINER_TRANSITIONS.get((miners.get(hotkey, "unassigned"), event_type))
            if after is None:
                self._violate(
                    task_id,
                    sequence,
                    "illegal_miner_transition",
                    f"{event_type} for miner {hotkey} that is {miners.get(hotkey, 'unassigned')}",
                )
            else:
                miners[hotkey] = after
        if event_type == "TaskCompleted" and "assigned" in miners.values():
            self._violate(
                task_id, sequence, "illegal_transition", "completed while miners were assigned"
            )

    def finish(
        self, heads: Iterable[StreamHead], heads_after: Iterable[StreamHead] | None = None
    ) -> AuditReport:
        """Compare each stream with the head the log recorded for it.

        Heads are read before the events, so on a live log a stream may have
        grown past its head since: only a stream that ends short of its head,
        or ends at it with another hash, is a violation. Heads read again after
        the events bound the other side: a real append records its head in the
        same transaction, so events beyond that later head were never appended.
        """
        recorded = {head.task_id: head for head in heads}
        for task_id, head in recorded.items():
            stream = self._streams.get(task_id)
            if stream is not None and stream.sequence == head.sequence and stream.hash != head.hash:
                self.report.violations.append(
                    Violation(
                        task_id,
                        head.sequence,
                        "head_mismatch",
                        "the last event differs from the one the log recorded as the head",
                    )
                )
            elif stream is None or stream.sequence < head.sequence:
                seen = stream.sequence if stream else 0
                self.report.violations.append(
                    Violation(
                        task_id,
                        head.sequence,
                        "truncated_stream",
                        f"the log recorded {head.sequence} events for this task, found {seen}",
                    )
                )
        if heads_after is not None:
            latest = {head.task_id: head.sequence for head in heads_after}
            for task_id, stream in self._streams.items():
                if stream.sequence > latest.get(task_id, 0):
                    self.report.violations.append(
                        Violation(
                            task_id,
                            stream.sequence,
                            "unrecorded_events",
                            f"the log recorded {latest.get(task_id, 0)} events for this task, "
                            f"found {stream.sequence}",
                        )
                    )
        self.report.tasks = len(self._streams)
        return self.report


async def audit_log(
    log: EventLog,
    *,
    progress: Callable[[int], None] | None = None,
    batch_size: int = 2_000,
) -> AuditReport:
    """Check the whole log; ``batch_size`` rows are read at a time.

    Small batches are faster here, not slower: rows that outlive the garbage
    collector's young generations are promoted and make it sweep everything.
    """
    started = time.perf_counter()
    auditor = Auditor()
    heads = await log.stream_heads()
    if isinstance(log, RawLog):
        # The fast path: decode each stored body once, build no envelopes.
        async for rows in log.raw_batches(batch_size):
            check = auditor.check_raw
            for _, task_id, sequence, body, hash in rows:
                check(task_id, sequence, body, hash)
            if progress is not None:
                progress(auditor.report.events)
    else:
        async for batch in log.subscribe(after=None, follow=False, batch_size=batch_size):
            for envelope in batch.events:
                auditor.check(envelope)
            if progress is not None:
                progress(auditor.report.events)
    report = auditor.finish(heads, await log.stream_heads())
    report.seconds = time.perf_counter() - started
    return report


def audit_envelopes(envelopes: Iterable[Envelope], heads: Iterable[StreamHead] = ()) -> AuditReport:
    auditor = Auditor()
    for envelope in envelopes:
        auditor.check(envelope)
    return auditor.finish(heads)
