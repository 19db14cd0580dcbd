"""Sending work to assigned miners, and recording what their immediate replies say."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from aggregates import DomainError, RecordFailure, RecordResponse, TaskState
from blobs.links import InputLinks
from blobs.port import BlobStore
from events import MinerAssigned, MinerAssignment, TaskDistributed, format_time, payload_of
from miners.client import Accepted, Answered, MinerReply, Refused
from miners.directory import MinerInfo
from processors.command_core import Outcome
from processors.command_port import TaskCommands
from processors.pool import MinerPool
from processors.results import InvalidResult, normalise_result
from processors.selection import MinerSelector
from processors.settings import ProcessorSettings

log = logging.getLogger(__name__)


class WorkClient(Protocol):
    async def send_work(self, miner: MinerInfo, payload: dict[str, Any]) -> MinerReply: ...


_ASSIGNING = frozenset({TaskDistributed.TYPE, MinerAssigned.TYPE})


def new_assignments(outcome: Outcome) -> list[MinerAssignment]:
    found: list[MinerAssignment] = []
    for envelope in outcome.events:
        if envelope.type not in _ASSIGNING:
            continue  # most outcomes assign nobody: spare parsing their events
        event = payload_of(envelope)
        if isinstance(event, TaskDistributed):
            found.extend(event.assignments)
        elif isinstance(event, MinerAssigned):
            found.append(event.assignment)
    return found


class WorkSender:
    def __init__(
        self,
        commands: TaskCommands,
        client: WorkClient,
        pool: MinerPool,
        selector: MinerSelector,
        blobs: BlobStore,
        links: InputLinks,
        settings: ProcessorSettings,
        clock: Callable[[], datetime],
    ) -> None:
        self._commands = commands
        self._client = client
        self._pool = pool
        self._selector = selector
        self._blobs = blobs
        self._links = links
        self._settings = settings
        self._clock = clock
        self._sending: set[asyncio.Task[None]] = set()

    def deliver(self, outcome: Outcome) -> None:
        """Send the work of every assignment the outcome made, in the background."""
        for assignment in new_assignments(outcome):
            task = asyncio.get_running_loop().create_task(
                self._send(outcome.state, assignment.hotkey)
            )
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    def redeliver(self, state: TaskState) -> None:
        """Send the work again to every miner still assigned (after a restart, say).

        Delivery is at least once: a miner that already has the work answers
        again or not at all, and a second answer is refused by the decider.
        """
        for slot in state.assigned():
            task = asyncio.get_running_loop().create_task(self._send(state, slot.hotkey))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def replacement(self, state: TaskState, count: int = 1) -> list[MinerAssignment]:
        """Fresh miners for a task's failover, never one it already had."""
        if count <= 0:
            return []
        chosen = self._selector.choose(
            await self._pool.miners(),
            state.task_type,
            count,
            exclude=[slot.hotkey for slot in state.miners],
        )
        return [self.assignment(state, miner.hotkey) for miner in chosen]

    def assignment(self, state: TaskState, hotkey: str) -> MinerAssignment:
        now = self._clock()
        deadline = now.timestamp() + self._settings.miner_timeout_seconds
        if state.deadline is not None:
            deadline = min(deadline, state.deadline.timestamp())
        return MinerAssignment(hotkey=hotkey, deadline=datetime.fromtimestamp(deadline, now.tzinfo))

    def payload(self, state: TaskState, hotkey: str, deadline: datetime) -> dict[str, Any]:
        base = self._settings.public_url.rstrip("/")
        input_url = None
        if state.blobs:
            expires = int(time.time()) + self._settings.input_link_seconds
            digest = state.blobs[0]
            query = self._links.query(digest, state.task_id, hotkey, expires)
            input_url = f"{base}/api/v1/blobs/{digest}?{query}"
        return {
            "task_id": state.task_id,
            "type": state.task_type,
            "input": state.input,
            "input_url": input_url,
            "deadline": format_time(deadline),
            "response_url": f"{base}/api/v1/miner/response",
        }

    async def _send(self, state: TaskState, hotkey: str) -> None:
        slot = state.slot(hotkey)
        miner = await self._pool.get(hotkey)
        if slot is None:
            return
        if miner is None:
            await self._fail(state.task_id, hotkey, "miner left the directory")
            return
        reply = await self._client.send_work(miner, self.payload(state, hotkey, slot.deadline))
        try:
            await self._record(state, hotkey, reply)
        except DomainError as refused:
            # The task moved on meanwhile (cancelled, timed out, deadline): nothing to record.
            log.debug("reply from %s for %s not recorded: %s", hotkey, state.task_id, refused)

    async def _record(self, state: TaskState, hotkey: str, reply: MinerReply) -> None:
        match reply:
            case Accepted():
                return
            case Answered(result=raw, latency_ms=latency):
                try:
                    result = await normalise_result(state.task_type, raw, self._blobs)
                except InvalidResult as invalid:
                    await self._fail(state.task_id, hotkey, f"invalid result: {invalid}")
                    return
                command = RecordResponse(hotkey, result, latency, self._clock())
                outcome = await self._commands.execute(state.task_id, command, actor=hotkey)
                self.deliver(outcome)
            case Refused(reason=reason, detail=detail):
                await self._fail(state.task_id, hotkey, f"{reason}: {detail}" if detail else reason)

    async def _fail(self, task_id: str, hotkey: str, reason: str) -> None:
        state = await self._commands.load(task_id)
        replacements = await self.replacement(state)
        command = RecordFailure(
            hotkey, reason, self._clock(), replacements[0] if replacements else None
        )
        try:
            outcome = await self._commands.execute(task_id, command, actor="dispatcher")
        except DomainError as refused:
            log.debug("failure of %s for %s not recorded: %s", hotkey, task_id, refused)
            return
        self.deliver(outcome)

    async def drain(self) -> None:
        while self._sending:
            await asyncio.gather(*list(self._sending), return_exceptions=True)
