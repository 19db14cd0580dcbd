"""What a process has just read or written, kept so it need not read or decode it again."""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from events.envelope import Envelope, from_stored


def envelope_of(record: Any) -> Envelope:
    """The event an events-topic record holds."""
    hash = ""
    for name, value in record.headers or ():
        if name == "hash":
            hash = bytes(value).decode()
    return from_stored(bytes(record.value), hash, record.offset)


class PlacedEvents:
    """The events this process committed, by partition and offset, for a while.

    Readers in the writer's own process (its projection worker's share, the leader's
    checkpointer) read them back from the topic in a moment; they take these objects rather
    than decode the same bytes again. Only committed transactions are remembered, and a
    read_committed consumer never sees an aborted record, so an offset found here is the
    record there.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._events: dict[tuple[int, int], Envelope] = {}

    def remember(self, partition: int, offsets: Sequence[int], events: Sequence[Envelope]) -> None:
        for offset, envelope in zip(offsets, events, strict=True):
            self._events[(partition, offset)] = envelope
        while len(self._events) > self._size:
            del self._events[next(iter(self._events))]

    def envelope(self, record: Any) -> Envelope:
        """The event of an events-topic record: remembered, or decoded."""
        placed = self._events.get((record.partition, record.offset))
        if placed is not None and record.key == placed.task_id.encode():
            if placed.position != record.offset:
                # Sealed before it had an offset: the log chain needs its position.
                placed = dataclasses.replace(placed, position=record.offset)
                self._events[(record.partition, record.offset)] = placed
            return placed
        return envelope_of(record)


class StreamCache:
    """Recently read or written streams, valid while their length matches the head."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._streams: OrderedDict[str, list[Envelope]] = OrderedDict()

    def get(self, task_id: str, sequence: int) -> list[Envelope] | None:
        stream = self._streams.get(task_id)
        if stream is None or len(stream) != sequence:
            return None
        self._streams.move_to_end(task_id)
        return stream

    def put(self, task_id: str, stream: list[Envelope]) -> None:
        self._streams[task_id] = stream
        self._streams.move_to_end(task_id)
        while len(self._streams) > self._size:
            self._streams.popitem(last=False)

    def extend(self, task_id: str, events: Sequence[Envelope]) -> None:
        stream = self._streams.get(task_id)
        if stream is None and events and events[0].sequence == 1:
            self.put(task_id, list(events))
        elif stream is not None and events and len(stream) + 1 == events[0].sequence:
            stream.extend(events)
            self._streams.move_to_end(task_id)
        else:
            self._streams.pop(task_id, None)
