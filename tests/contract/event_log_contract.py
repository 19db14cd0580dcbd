"""The event log contract, written once and run against every backend.

A backend's test module subclasses ``EventLogContract`` as ``Test<Backend>`` and
implements ``make_log`` (and ``reopen``, for the durability tests); a backend is
correct when the whole suite passes.

Only what the port promises is asserted, so that a partitioned backend (Kafka)
passes unchanged: each task's events in sequence order, every event exactly once,
checkpoints as opaque strings. One global order across tasks is not promised.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from events import (
    Batch,
    BrokenChain,
    Envelope,
    EventLog,
    StaleVersion,
    StreamHead,
)
from events.log import append_many
from tests.support.histories import chain

FOLLOW_TIMEOUT = 15.0


def ids(envelopes: Sequence[Envelope]) -> list[str]:
    return [envelope.event_id for envelope in envelopes]


def per_task(envelopes: Sequence[Envelope]) -> dict[str, list[Envelope]]:
    streams: dict[str, list[Envelope]] = {}
    for envelope in envelopes:
        streams.setdefault(envelope.task_id, []).append(envelope)
    return streams


async def read_all(log: EventLog, after: str | None = None, batch_size: int = 1000) -> list[Batch]:
    return [b async for b in log.subscribe(after=after, follow=False, batch_size=batch_size)]


def events_of(batches: Sequence[Batch]) -> list[Envelope]:
    return [envelope for batch in batches for envelope in batch.events]


async def take(log: EventLog, count: int, after: str | None = None) -> list[Envelope]:
    """Follow the log until ``count`` events arrived."""
    seen: list[Envelope] = []
    iterator = log.subscribe(after=after, follow=True, batch_size=50)
    try:
        async for batch in iterator:
            seen.extend(batch.events)
            if len(seen) >= count:
                break
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()
    return seen


def same_stored(read: Sequence[Envelope], written: Sequence[Envelope]) -> None:
    """Read back exactly as written: fields, canonical bytes and hash (the audit needs them)."""
    assert list(read) == list(written)
    assert [e.body for e in read] == [e.body for e in written]
    assert [e.hash for e in read] == [e.hash for e in written]


class EventLogContract(abc.ABC):
    @abc.abstractmethod
    async def make_log(self, request: pytest.FixtureRequest) -> EventLog:
        """A fresh, empty log; ``request`` gives access to the backend's fixtures."""

    @abc.abstractmethod
    async def reopen(self, log: EventLog) -> EventLog:
        """Close ``log`` and open the same log again, as a restarted process would."""

    @pytest.fixture
    async def log(self, request: pytest.FixtureRequest) -> AsyncIterator[EventLog]:
        self._opened = [await self.make_log(request)]
        try:
            yield self._opened[0]
        finally:
            await self._opened[-1].close()

    async def _reopen(self, log: EventLog) -> EventLog:
        again = await self.reopen(log)
        self._opened.append(again)
        return again

    # -- append and read --------------------------------------------------------

    async def test_appended_events_read_back_exactly(self, log: EventLog) -> None:
        first = chain("task-1", 3)
        await log.append("task-1", 0, first)
        more = chain("task-1", 2, after=first[-1])
        await log.append("task-1", 3, more)
        same_stored(await log.read_stream("task-1"), first + more)

    async def test_streams_are_kept_apart(self, log: EventLog) -> None:
        one, two = chain("task-1", 2), chain("task-2", 3)
        await log.append("task-1", 0, one)
        await log.append("task-2", 0, two)
        same_stored(await log.read_stream("task-1"), one)
        same_stored(await log.read_stream("task-2"), two)

    async def test_an_unknown_stream_is_empty(self, log: EventLog) -> None:
        assert await log.read_stream("nobody") == []

    async def test_check_passes_on_an_open_log(self, log: EventLog) -> None:
        await log.check()

    # -- optimistic concurrency and the chain ------------------------------------

    @pytest.mark.parametrize("expected", [0, 2, 4, 9])
    async def test_a_stale_expected_sequence_is_refused_and_nothing_written(
        self, log: EventLog, expected: int
    ) -> None:
        written = chain("task-1", 3)
        await log.append("task-1", 0, written)
        heads = await log.stream_heads()
        with pytest.raises(StaleVersion) as refused:
            await log.append("task-1", expected, chain("task-1", 2, after=written[-1]))
        assert (refused.value.task_id, refused.value.expected, refused.value.actual) == (
            "task-1",
            expected,
            3,
        )
        same_stored(await log.read_stream("task-1"), written)
        assert await log.stream_heads() == heads

    async def test_a_new_stream_must_be_expected_empty(self, log: EventLog) -> None:
        with pytest.raises(StaleVersion):
            await log.append("task-1", 1, chain("task-1", 1))
        assert await log.read_stream("task-1") == []
        assert await log.stream_heads() == []

    @pytest.mark.parametrize(
        "breakage",
        ["first does not link", "second does not link", "skips a sequence", "repeats a sequence"],
    )
    async def test_events_that_do_not_continue_the_chain_are_refused(
        self, log: EventLog, breakage: str
    ) -> None:
        written = chain("task-1", 2)
        await log.append("task-1", 0, written)
        offered = chain("task-1", 3, after=written[-1])
        if breakage == "first does not link":
            offered = chain("task-1", 3, after=written[0])[1:]  # sequence 3, linked to event 1
        elif breakage == "second does not link":
            stray = chain("task-1", 2, after=written[0])[1]  # sequence 3 again, other hash
            offered = [offered[0], *chain("task-1", 2, after=stray)]
        elif breakage == "skips a sequence":
            offered = [offered[0], offered[2]]
        else:
            offered = [offered[0], offered[0]]
        with pytest.raises(BrokenChain):
            await log.append("task-1", 2, offered)
        same_stored(await log.read_stream("task-1"), written)

    async def test_events_of_another_task_are_refused(self, log: EventLog) -> None:
        with pytest.raises(BrokenChain):
            await log.append("task-1", 0, chain("task-2", 1))
        assert await log.read_stream("task-1") == []
        assert await log.read_stream("task-2") == []

    async def test_of_concurrent_appends_to_one_stream_exactly_one_wins(
        self, log: EventLog
    ) -> None:
        base = chain("task-1", 1)
        await log.append("task-1", 0, base)
        contenders = [chain("task-1", 2, after=base[0], note=f"writer {n} ") for n in range(8)]
        outcomes = await asyncio.gather(
            *(log.append("task-1", 1, events) for events in contenders), return_exceptions=True
        )
        winners = [n for n, outcome in enumerate(outcomes) if outcome is None]
        assert len(winners) == 1, outcomes
        assert all(isinstance(o, StaleVersion) for o in outcomes if o is not None), outcomes
        same_stored(await log.read_stream("task-1"), base + contenders[winners[0]])

    async def test_concurrent_appends_to_many_streams_all_land_in_order(
        self, log: EventLog
    ) -> None:
        streams = {f"task-{n:03}": chain(f"task-{n:03}", 3) for n in range(120)}
        outcomes = await asyncio.gather(
            *(log.append(task_id, 0, events) for task_id, events in streams.items())
        )
        assert outcomes == [None] * len(streams)
        seen = per_task(events_of(await read_all(log)))
        assert set(seen) == set(streams)
        for task_id, events in streams.items():
            same_stored(seen[task_id], events)
            same_stored(await log.read_stream(task_id), events)

    async def test_a_refused_append_does_not_sink_its_neighbours(self, log: EventLog) -> None:
        stale = chain("task-stale", 1)
        await log.append("task-stale", 0, stale)
        good_one, good_two = chain("task-1", 2), chain("task-2", 2)
        outcomes = await asyncio.gather(
            log.append("task-1", 0, good_one),
            log.append("task-stale", 0, chain("task-stale", 1, after=stale[0])),
            log.append("task-broken", 0, chain("task-broken", 2)[1:]),
            log.append("task-2", 0, good_two),
            return_exceptions=True,
        )
        assert outcomes[0] is None and outcomes[3] is None
        assert isinstance(outcomes[1], StaleVersion)
        assert isinstance(outcomes[2], BrokenChain)
        same_stored(await log.read_stream("task-1"), good_one)
        same_stored(await log.read_stream("task-2"), good_two)
        same_stored(await log.read_stream("task-stale"), stale)
        assert await log.read_stream("task-broken") == []

    async def test_append_many_writes_or_refuses_each_stream_alone(self, log: EventLog) -> None:
        stale = chain("task-stale", 1)
        await log.append("task-stale", 0, stale)
        first = chain("task-1", 2)
        second = chain("task-1", 1, after=first[-1])
        good = chain("task-2", 3)
        outcomes = await append_many(
            log,
            [
                ("task-1", 0, first),
                ("task-stale", 0, chain("task-stale", 1, after=stale[0])),
                ("task-empty", 0, []),
                ("task-broken", 0, chain("task-broken", 2)[1:]),
                ("task-2", 0, good),
            ],
        )
        assert outcomes[0] is None and outcomes[2] is None and outcomes[4] is None
        assert isinstance(outcomes[1], StaleVersion)
        assert isinstance(outcomes[3], BrokenChain)
        # A later append to the same stream in another call builds on the first.
        assert await append_many(log, [("task-1", 2, second)]) == [None]
        same_stored(await log.read_stream("task-1"), first + second)
        same_stored(await log.read_stream("task-2"), good)
        same_stored(await log.read_stream("task-stale"), stale)
        assert await log.read_stream("task-broken") == []
        assert await log.read_stream("task-empty") == []

    # -- subscriptions -----------------------------------------------------------

    async def _fill(self, log: EventLog, tasks: int = 5, rounds: int = 4) -> list[Envelope]:
        """Appends interleaved across tasks; returns them in the order they were acknowledged."""
        written: list[Envelope] = []
        last: dict[str, Envelope] = {}
        for round_ in range(rounds):
            for n in range(tasks):
                task_id = f"task-{n}"
                events = chain(task_id, 1 + (n + round_) % 3, after=last.get(task_id))
                await log.append(task_id, last[task_id].sequence if task_id in last else 0, events)
                last[task_id] = events[-1]
                written += events
        return written

    async def test_subscribing_from_the_start_yields_every_event_once_in_task_order(
        self, log: EventLog
    ) -> None:
        written = await self._fill(log)
        seen = events_of(await read_all(log))
        assert sorted(ids(seen)) == sorted(ids(written))
        by_task = per_task(seen)
        for task_id, events in per_task(written).items():
            same_stored(by_task[task_id], events)

    async def test_subscribing_to_an_empty_log_ends_at_once(self, log: EventLog) -> None:
        assert events_of(await read_all(log)) == []

    async def test_resuming_from_any_checkpoint_yields_exactly_the_rest(
        self, log: EventLog
    ) -> None:
        written = await self._fill(log)
        batches = await read_all(log, batch_size=4)
        everything = events_of(batches)
        assert len(everything) == len(written)
        consumed = 0
        for batch in batches:
            consumed += len(batch.events)
            rest = events_of(await read_all(log, after=batch.checkpoint, batch_size=7))
            assert ids(rest) == ids(everything[consumed:])

    async def test_resuming_after_the_end_yields_only_later_appends(self, log: EventLog) -> None:
        written = await self._fill(log, tasks=2, rounds=2)
        checkpoint = (await read_all(log))[-1].checkpoint
        assert events_of(await read_all(log, after=checkpoint)) == []
        later = {
            task_id: chain(task_id, 2, after=events[-1])
            for task_id, events in per_task(written).items()
        }
        later["task-new"] = chain("task-new", 1)
        for task_id, events in later.items():
            await log.append(task_id, events[0].sequence - 1, events)
        rest = events_of(await read_all(log, after=checkpoint))
        assert sorted(ids(rest)) == sorted(ids([e for events in later.values() for e in events]))
        for task_id, events in per_task(rest).items():
            same_stored(events, later[task_id])

    async def test_a_follower_sees_events_appended_later(self, log: EventLog) -> None:
        before = chain("task-0", 2)
        await log.append("task-0", 0, before)
        follower = asyncio.create_task(take(log, 2 + 3 * 3))
        await asyncio.sleep(0.1)
        later = {f"task-{n}": chain(f"task-{n}", 3) for n in (1, 2, 3)}
        for task_id, events in later.items():
            await log.append(task_id, 0, events[:1])
            await log.append(task_id, 1, events[1:])
        seen = await asyncio.wait_for(follower, FOLLOW_TIMEOUT)
        by_task = per_task(seen)
        same_stored(by_task["task-0"], before)
        for task_id, events in later.items():
            same_stored(by_task[task_id], events)

    async def test_a_follower_resumes_from_a_checkpoint(self, log: EventLog) -> None:
        first = chain("task-1", 2)
        await log.append("task-1", 0, first)
        checkpoint = (await read_all(log))[-1].checkpoint
        follower = asyncio.create_task(take(log, 1, after=checkpoint))
        await asyncio.sleep(0.1)
        assert not follower.done()
        later = chain("task-1", 1, after=first[-1])
        await log.append("task-1", 2, later)
        same_stored(await asyncio.wait_for(follower, FOLLOW_TIMEOUT), later)

    # -- checkpoints and heads --------------------------------------------------------

    async def test_checkpoints_round_trip_per_consumer(self, log: EventLog) -> None:
        await log.append("task-1", 0, chain("task-1", 3))
        batches = await read_all(log, batch_size=1)
        assert await log.load_checkpoint("projections") is None
        await log.save_checkpoint("projections", batches[0].checkpoint)
        await log.save_checkpoint("dispatcher", batches[2].checkpoint)
        assert await log.load_checkpoint("projections") == batches[0].checkpoint
        assert await log.load_checkpoint("dispatcher") == batches[2].checkpoint
        await log.save_checkpoint("projections", batches[1].checkpoint)
        assert await log.load_checkpoint("projections") == batches[1].checkpoint
        assert await log.load_checkpoint("dispatcher") == batches[2].checkpoint
        assert await log.load_checkpoint("nobody") is None

    async def test_stream_heads_name_each_streams_last_event(self, log: EventLog) -> None:
        assert await log.stream_heads() == []
        written = await self._fill(log)
        expected = {
            StreamHead(task_id, events[-1].sequence, events[-1].hash)
            for task_id, events in per_task(written).items()
        }
        assert set(await log.stream_heads()) == expected

    async def test_log_checkpoints_are_kept_in_order_and_events_carry_positions(
        self, log: EventLog
    ) -> None:
        from events.log_chain import Checkpoint

        await self._fill(log)
        positions = [e.position for e in events_of(await read_all(log))]
        assert None not in positions  # the log chain and its checkpoints name positions
        kept = getattr(log, "log_checkpoints", None)
        assert kept is not None and await kept() == []
        documents = [
            Checkpoint("log", partition, position, position, "a" * 64, "at", "5P", "0x")
            for partition, position in ((1, 9), (0, 4), (0, 12))
        ]
        for checkpoint in documents:
            await log.save_log_checkpoint(checkpoint)  # type: ignore[attr-defined]
        assert [(c.partition, c.position) for c in await kept()] == [(0, 4), (1, 9), (0, 12)]
        assert [c.position for c in await kept(after=4, limit=1)] == [9]

    # -- durability ---------------------------------------------------------------

    async def test_everything_survives_close_and_reopen(self, log: EventLog) -> None:
        written = await self._fill(log)
        checkpoint = (await read_all(log, batch_size=5))[0].checkpoint
        await log.save_checkpoint("projections", checkpoint)
        heads = set(await log.stream_heads())

        again = await self._reopen(log)

        assert set(await again.stream_heads()) == heads
        for task_id, events in per_task(written).items():
            same_stored(await again.read_stream(task_id), events)
        assert await again.load_checkpoint("projections") == checkpoint
        seen = events_of(await read_all(again))
        assert sorted(ids(seen)) == sorted(ids(written))
        rest = events_of(await read_all(again, after=checkpoint))
        assert ids(rest) == ids(seen[5:])
        # The reopened log keeps enforcing the versions it recorded.
        last = per_task(written)["task-0"][-1]
        with pytest.raises(StaleVersion):
            await again.append("task-0", last.sequence - 1, chain("task-0", 1, after=last))
        await again.append("task-0", last.sequence, chain("task-0", 1, after=last))
