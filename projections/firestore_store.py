"""Read models in Google Cloud Firestore, checkpoints in the same database.

Collections (each name behind ``prefix``):

- ``tasks/{task_id}``: ``state``, the folded TaskState (``state_to_doc``) as a JSON
  string, and the flat fields the queries filter and sort on: ``client``,
  ``status``, ``priority_rank``, ``created_at``, ``updated_at``,
  ``next_deadline`` (ISO text or null), ``archived``, ``version`` and ``blobs``
  (every digest the task refers to, inputs and results).
- ``miners/{hotkey}``: ``MinerStats.to_doc()``.
- ``checkpoints/{consumer}``: ``{"checkpoint": ...}``.
- ``commits/{id}``: exists while a commit that needs several transactions is
  under way (see below).

``firestore.indexes.json`` (repository root) holds the indexes the queries need,
for the collection names without a prefix.

The state is a string rather than a Firestore map because miner results are
whatever JSON a miner sent: Firestore refuses arrays inside arrays and field
names like ``__x__``, and one such answer stored as a map would fail every
attempt to commit its batch and stall the projection. A string holds any JSON,
and ``firestore.indexes.json`` exempts it from indexing.

Exactly once under at-least-once delivery, with duplicate or concurrent writers:

- A task document is written inside a transaction that first reads it, and only
  when the incoming ``version`` (the last sequence applied) is greater than the
  stored one. A repeated or older state never replaces a newer one, whoever
  sends it.
- The checkpoint only moves forward (positions compare as numbers).
- Miner statistics are folded inside the (last) transaction: from the miner
  documents read there, with the counts of the events whose sequence lies above
  their task's version read there too (before this commit's writes). A writer
  that lost the race to commit the same events counts none of them again, and
  two writers counting into the same miner at once are serialised by the
  transaction (the loser is retried on the winner's documents).
- A commit of more than 500 writes is split into transactions of at most 500,
  in order: tasks, then the miners and the checkpoint with the last one. Documents
  written before the last transaction are *staged*: they carry the commit's id
  and the document they replaced, and ``commits/{id}`` exists until the last
  transaction deletes it. While it exists, ``get_task``, ``get_tasks``,
  ``get_miners`` and ``all_miners`` return the replaced documents, so a batch
  that is delivered again after a crash between the transactions is folded
  again from the states before it, and its miner deltas count once. The
  queries (``tasks_due``, ``tasks_in_status``, …) see staged documents at once.

A staged document also holds the one it replaced, so in commits of more
than 500 writes a task's state must fit in half of Firestore's 1 MiB limit.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import orjson
from google.api_core.retry_async import AsyncRetry
from google.cloud.firestore import (
    AsyncClient,
    AsyncCollectionReference,
    AsyncDocumentReference,
    AsyncQuery,
    AsyncTransaction,
    FieldFilter,
    Query,
    async_transactional,
)
from google.cloud.firestore_v1.async_aggregation import AsyncAggregationQuery
from google.cloud.firestore_v1.base_document import DocumentSnapshot
from google.cloud.firestore_v1.field_path import FieldPath

from aggregates import STATUSES, TERMINAL, TaskState
from events import PRIORITY_RANK, format_time
from projections.checkpoints import checkpoint_advances
from projections.miner_stats import MinerCount, MinerStats, tally
from projections.state_codec import state_from_doc, state_to_doc
from projections.task_blobs import task_blobs

MAX_WRITES = 500
"""Writes per transaction."""

_CHECK_SECONDS = 5.0
# Projection workers on other partitions count into the same miner documents at once: a
# transaction that lost the contest for them is run again on the winner's documents.
_ATTEMPTS = 20


def task_document(state: TaskState) -> dict[str, Any]:
    deadline = state.next_deadline()
    return {
        "state": orjson.dumps(state_to_doc(state)).decode(),
        "client": state.client,
        "status": state.status,
        "priority_rank": PRIORITY_RANK.get(state.priority, 1),
        "created_at": format_time(state.created_at) if state.created_at else None,
        "updated_at": format_time(state.updated_at) if state.updated_at else None,
        "next_deadline": format_time(deadline) if deadline else None,
        "archived": state.archived,
        "version": state.version,
        "blobs": task_blobs(state),
    }


def _state(document: dict[str, Any]) -> TaskState:
    return state_from_doc(orjson.loads(document["state"]))


_Snapshot = DocumentSnapshot[AsyncDocumentReference]


@dataclass(frozen=True, slots=True)
class _Write:
    reference: AsyncDocumentReference
    document: dict[str, Any]
    version: int  # written only above the stored version


@dataclass(frozen=True, slots=True)
class _Chunk:
    writes: Sequence[_Write]
    commit_id: str | None  # set when the commit spans several transactions
    first: bool
    last: bool


class FirestoreReadModelStore:
    def __init__(self, client: AsyncClient, *, prefix: str = "") -> None:
        self._client = client
        self.tasks: AsyncCollectionReference = client.collection(f"{prefix}tasks")
        self.miners: AsyncCollectionReference = client.collection(f"{prefix}miners")
        self.checkpoints: AsyncCollectionReference = client.collection(f"{prefix}checkpoints")
        self.commits: AsyncCollectionReference = client.collection(f"{prefix}commits")
        # Ids of multi-transaction commits known to have finished: a staged document
        # names its commit, whose marker was created no later than the document, so
        # once the marker is gone it never comes back.
        self._finished: set[str] = set()

    # -- writes ---------------------------------------------------------------

    async def commit(
        self,
        consumer: str,
        checkpoint: str,
        tasks: Sequence[TaskState],
        counts: Sequence[MinerCount],
    ) -> None:
        writes = [
            _Write(self.tasks.document(s.task_id), task_document(s), s.version) for s in tasks
        ]
        checkpoint_ref = self.checkpoints.document(consumer)
        # The miners counted are written by the last transaction, beside the checkpoint.
        miners = len({count.hotkey for count in counts})
        if len(writes) + 1 + miners <= MAX_WRITES:
            chunk = _Chunk(writes, None, True, True)
            await self._run_chunk(chunk, checkpoint_ref, checkpoint, counts)
            return
        # Room for the marker's creation (first) or deletion and the checkpoint (last).
        room = max(1, MAX_WRITES - 2 - miners)
        commit_id = uuid.uuid4().hex
        starts = range(0, len(writes), room)
        for index, start in enumerate(starts):
            chunk = _Chunk(writes[start : start + room], commit_id, index == 0, start == starts[-1])
            await self._run_chunk(chunk, checkpoint_ref, checkpoint, counts if chunk.last else ())
        self._finished.add(commit_id)

    async def _run_chunk(
        self,
        chunk: _Chunk,
        checkpoint_ref: AsyncDocumentReference,
        checkpoint: str,
        counts: Sequence[MinerCount],
    ) -> None:
        counted = {t: self.tasks.document(t) for t in dict.fromkeys(c.task_id for c in counts)}
        hotkeys = {h: self.miners.document(h) for h in dict.fromkeys(c.hotkey for c in counts)}

        @async_transactional
        async def write(transaction: AsyncTransaction) -> None:
            references = [w.reference for w in chunk.writes] + [checkpoint_ref]
            references += [*counted.values(), *hotkeys.values()]
            unique = list({reference.path: reference for reference in references}.values())
            snapshots = await self._read(unique, transaction)
            stored = {path: _without_staging(s.to_dict()) for path, s in snapshots.items()}
            pending = await self._pending(stored.values(), transaction)
            current = {path: _effective(doc, pending) for path, doc in stored.items()}
            # Counted against the tasks as they were before this commit (staged documents
            # of its earlier transactions still read as the ones they replaced).
            versions = {
                task_id: (current.get(reference.path) or {}).get("version", 0)
                for task_id, reference in counted.items()
            }
            new = [c for c in counts if c.sequence > versions[c.task_id]]
            miners = {
                hotkey: MinerStats.from_doc(document)
                for hotkey, reference in hotkeys.items()
                if (document := current.get(reference.path)) is not None
            }
            stored_checkpoint = current.get(checkpoint_ref.path)
            advances = checkpoint_advances(
                checkpoint, stored_checkpoint["checkpoint"] if stored_checkpoint else None
            )
            for item in chunk.writes:
                before = current.get(item.reference.path)
                if before is not None and before["version"] >= item.version:
                    continue
                document = item.document
                if not chunk.last:
                    document = {
                        **document,
                        "staged": {"commit": chunk.commit_id, "previous": before},
                    }
                transaction.set(item.reference, document)
            for stats in tally(miners, new):
                transaction.set(hotkeys[stats.hotkey], stats.to_doc())
            if chunk.commit_id is not None and chunk.first:
                transaction.set(self.commits.document(chunk.commit_id), {"started": True})
            if chunk.last:
                if advances:
                    transaction.set(checkpoint_ref, {"checkpoint": checkpoint})
                if chunk.commit_id is not None:
                    transaction.delete(self.commits.document(chunk.commit_id))

        await write(self._client.transaction(max_attempts=_ATTEMPTS))

    # -- staging --------------------------------------------------------------

    async def _read(
        self,
        references: list[AsyncDocumentReference],
        transaction: AsyncTransaction | None = None,
    ) -> dict[str, _Snapshot]:
        found: dict[str, _Snapshot] = {}
        for start in range(0, len(references), MAX_WRITES):
            chunk = references[start : start + MAX_WRITES]
            async for snapshot in self._client.get_all(chunk, transaction=transaction):
                if snapshot.exists:
                    found[snapshot.reference.path] = snapshot
        return found

    async def _pending(
        self,
        documents: Iterable[tuple[dict[str, Any], dict[str, Any] | None]],
        transaction: AsyncTransaction | None = None,
    ) -> set[str]:
        """Which of the commits these documents were staged by are still under way."""
        named = {
            staged["commit"]
            for _, staged in documents
            if staged is not None and staged["commit"] not in self._finished
        }
        if not named:
            return set()
        markers = await self._read([self.commits.document(c) for c in named], transaction)
        under_way = {self.commits.document(c).path: c for c in named}
        pending = {under_way[path] for path in markers}
        self._finished.update(named - pending)
        return pending

    async def _documents(self, references: list[AsyncDocumentReference]) -> list[dict[str, Any]]:
        """The documents as the last finished commit left them."""
        snapshots = await self._read(references)
        stored = [_without_staging(s.to_dict()) for s in snapshots.values()]
        pending = await self._pending(stored)
        return [doc for doc in (_effective(pair, pending) for pair in stored) if doc is not None]

    # -- reads ----------------------------------------------------------------

    async def checkpoint(self, consumer: str) -> str | None:
        snapshot = await self.checkpoints.document(consumer).get()
        document = snapshot.to_dict() if snapshot.exists else None
        return str(document["checkpoint"]) if document else None

    async def get_task(self, task_id: str) -> TaskState | None:
        return (await self.get_tasks([task_id])).get(task_id)

    async def get_tasks(self, task_ids: Sequence[str]) -> dict[str, TaskState]:
        documents = await self._documents([self.tasks.document(t) for t in dict.fromkeys(task_ids)])
        states = (_state(document) for document in documents)
        return {state.task_id: state for state in states}

    async def get_miners(self, hotkeys: Sequence[str]) -> dict[str, MinerStats]:
        documents = await self._documents([self.miners.document(h) for h in dict.fromkeys(hotkeys)])
        stats = (MinerStats.from_doc(document) for document in documents)
        return {miner.hotkey: miner for miner in stats}

    async def all_miners(self) -> list[MinerStats]:
        stored = [_without_staging(s.to_dict()) async for s in self.miners.stream()]
        pending = await self._pending(stored)
        documents = (_effective(pair, pending) for pair in stored)
        stats = [MinerStats.from_doc(document) for document in documents if document is not None]
        return sorted(stats, key=lambda miner: miner.hotkey)

    # -- queries --------------------------------------------------------------

    def due_query(self, now: datetime, limit: int) -> AsyncQuery:
        return (
            self.tasks.where(filter=FieldFilter("next_deadline", "<=", format_time(now)))
            .order_by("next_deadline")
            .limit(limit)
        )

    def status_query(self, status: str, limit: int) -> AsyncQuery:
        return (
            self.tasks.where(filter=FieldFilter("status", "==", status))
            .order_by("priority_rank", direction=Query.DESCENDING)
            .order_by("created_at")
            .limit(limit)
        )

    def client_query(self, client: str, limit: int) -> AsyncQuery:
        return (
            self.tasks.where(filter=FieldFilter("client", "==", client))
            .order_by("created_at", direction=Query.DESCENDING)
            .limit(limit)
        )

    def archive_query(self, finished_before: datetime, limit: int) -> AsyncQuery:
        return (
            self.tasks.where(filter=FieldFilter("archived", "==", False))
            .where(filter=FieldFilter("status", "in", sorted(TERMINAL)))
            .where(filter=FieldFilter("updated_at", "<", format_time(finished_before)))
            .order_by("updated_at")
            .limit(limit)
        )

    def recent_query(self, status: str, since: datetime, limit: int) -> AsyncQuery:
        return (
            self.tasks.where(filter=FieldFilter("archived", "==", False))
            .where(filter=FieldFilter("status", "==", status))
            .where(filter=FieldFilter("updated_at", ">=", format_time(since)))
            .order_by("updated_at", direction=Query.DESCENDING)
            .limit(limit)
        )

    def blob_query(self, digest: str) -> AsyncQuery:
        return self.tasks.where(filter=FieldFilter("blobs", "array_contains", digest)).where(
            filter=FieldFilter("archived", "==", False)
        )

    def count_query(self, status: str) -> AsyncQuery:
        return self.tasks.where(filter=FieldFilter("status", "==", status))

    async def tasks_due(self, now: datetime, limit: int) -> list[str]:
        query = self.due_query(now, limit).select([FieldPath.document_id()])
        return [snapshot.id async for snapshot in query.stream()]

    async def tasks_in_status(self, status: str, limit: int) -> list[TaskState]:
        return await _states(self.status_query(status, limit))

    async def tasks_for_client(self, client: str, limit: int) -> list[TaskState]:
        return await _states(self.client_query(client, limit))

    async def tasks_to_archive(self, finished_before: datetime, limit: int) -> list[TaskState]:
        return await _states(self.archive_query(finished_before, limit))

    async def blob_in_use(self, digest: str, excluding_task: str) -> bool:
        # Two hits are enough: at most one of them is the excluded task.
        query = self.blob_query(digest).select([FieldPath.document_id()]).limit(2)
        return any([snapshot.id != excluding_task async for snapshot in query.stream()])

    async def recent_in_status(self, status: str, since: datetime, limit: int) -> list[TaskState]:
        return await _states(self.recent_query(status, since, limit))

    async def status_counts(self) -> dict[str, int]:
        async def count(status: str) -> int:
            # count() is annotated as returning a class; it returns an instance.
            aggregation = cast(AsyncAggregationQuery, self.count_query(status).count(alias="n"))
            result = await aggregation.get()
            return int(result[0][0].value)

        counts = await asyncio.gather(*(count(status) for status in STATUSES))
        return {status: n for status, n in zip(STATUSES, counts, strict=True) if n}

    # -- upkeep ---------------------------------------------------------------

    async def reset(self) -> None:
        # Not client.recursive_delete: its BulkWriter makes a synchronous copy of the
        # client and deletes from a thread pool. Our documents have no subcollections.
        for collection in (self.tasks, self.miners, self.checkpoints, self.commits):
            await _delete_all(self._client, collection)
        self._finished.clear()

    async def check(self) -> None:
        # The default retry policy keeps trying an unreachable service for minutes.
        retry = AsyncRetry(timeout=_CHECK_SECONDS)
        await self.checkpoints.limit(1).get(retry=retry, timeout=_CHECK_SECONDS)

    async def close(self) -> None:
        # AsyncClient has no close(); its gRPC channel is closed through the transport.
        api = getattr(self._client, "_firestore_api_internal", None)
        if api is not None:
            await api.transport.close()


def _without_staging(
    document: dict[str, Any] | None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    document = dict(document or {})
    return document, document.pop("staged", None)


def _effective(
    pair: tuple[dict[str, Any], dict[str, Any] | None], pending: set[str]
) -> dict[str, Any] | None:
    """The document, or the one it replaced while its commit is still under way."""
    document, staged = pair
    if staged is not None and staged["commit"] in pending:
        previous: dict[str, Any] | None = staged["previous"]
        return previous
    return document


async def _states(query: AsyncQuery) -> list[TaskState]:
    return [_state(snapshot.to_dict() or {}) async for snapshot in query.stream()]


async def _delete_all(client: AsyncClient, collection: AsyncCollectionReference) -> None:
    while True:
        page = await collection.select([FieldPath.document_id()]).limit(MAX_WRITES).get()
        if not page:
            return
        batch = client.batch()
        for snapshot in page:
            batch.delete(snapshot.reference)
        await batch.commit()
