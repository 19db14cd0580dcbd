"""Anchor sinks: where signed checkpoints are published, outside the data directory.

- :class:`FileAnchors` appends one JSON line per checkpoint to a file (opened
  for append only, fsynced), for an operator to keep on another disk or ship.
- :class:`GcsAnchors` writes one object per checkpoint with
  ``if_generation_match=0``: GCS refuses to overwrite it, so an anchor once
  published cannot be replaced through this path (bucket retention policies
  make that hold against the bucket's owner too).
- :class:`ChainAnchor` commits the latest ``log_hash`` on chain through the
  Commitments pallet's ``set_commitment``, at most once per ``min_interval``
  (commitments are rate-limited on chain and cost a fee); the next checkpoint
  after the interval is committed.

Reading anchors back (for the audit) is :func:`read_anchors`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import orjson
from bittensor import calls

from events.codec import canonical
from events.log_chain import Checkpoint, MalformedProof
from miners.chain_session import ChainSession

log = logging.getLogger(__name__)


class AnchorSink(Protocol):
    name: str

    async def publish(self, checkpoint: Checkpoint) -> None: ...

    async def close(self) -> None:
        """Release what the sink holds open (a bucket's client, the chain's session)."""
        ...


class FileAnchors:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = f"file://{path}"

    async def publish(self, checkpoint: Checkpoint) -> None:
        line = canonical(checkpoint.to_document()) + b"\n"
        await asyncio.to_thread(self._append, line)

    def _append(self, line: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # O_APPEND: every write lands at the end, whatever else has the file open.
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(descriptor, line)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

    async def close(self) -> None:
        """Nothing stays open between checkpoints."""


def object_name(prefix: str, checkpoint: Checkpoint) -> str:
    """One object per checkpoint; names sort in log order within a partition."""
    return f"{prefix}{checkpoint.partition:05d}/{checkpoint.position:020d}.json"


class GcsAnchors:
    def __init__(self, bucket: str, prefix: str, client: Any, timeout: float = 30.0) -> None:
        self._client = client
        self._bucket = client.bucket(bucket)
        self._prefix = prefix
        self._timeout = timeout
        self.name = f"gs://{bucket}/{prefix}"

    async def publish(self, checkpoint: Checkpoint) -> None:
        blob = self._bucket.blob(object_name(self._prefix, checkpoint))
        data = canonical(checkpoint.to_document())
        await asyncio.to_thread(self._create, blob, data)

    def _create(self, blob: Any, data: bytes) -> None:
        from google.api_core import exceptions as gexc

        # Create-only. PreconditionFailed: this checkpoint is there already (a retried
        # publish after a restart); the same position signs the same chain.
        with contextlib.suppress(gexc.PreconditionFailed):
            blob.upload_from_string(
                data,
                content_type="application/json",
                if_generation_match=0,
                timeout=self._timeout,
            )

    async def close(self) -> None:
        self._client.close()

    async def read(self) -> list[Checkpoint]:
        def listed() -> list[bytes]:
            return [
                blob.download_as_bytes(timeout=self._timeout)
                for blob in self._client.list_blobs(self._bucket, prefix=self._prefix)
            ]

        return [_parse(raw, "gcs object") for raw in await asyncio.to_thread(listed)]


def commitment_call(netuid: int, log_hash: str) -> Any:
    """The Commitments pallet call that records ``log_hash`` as a SHA-256 commitment."""
    return calls.Commitments.set_commitment(
        netuid=netuid, info={"fields": [{"Sha256": "0x" + log_hash}]}
    )


class ChainAnchor:
    """Commits the latest log hash through a bittensor ``Client``'s ``submit_call``."""

    def __init__(
        self,
        client: Any,
        wallet: Any,
        netuid: int,
        min_interval: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._wallet = wallet
        self._netuid = netuid
        self._min_interval = min_interval
        self._monotonic = monotonic
        self._last: float | None = None
        self.name = "chain"

    async def publish(self, checkpoint: Checkpoint) -> None:
        now = self._monotonic()
        if self._last is not None and now - self._last < self._min_interval:
            return
        self._last = now
        call = commitment_call(self._netuid, checkpoint.log_hash)
        client = self._client
        if isinstance(client, ChainSession):
            client = await client.client()
        result = await client.submit_call(call, self._wallet, signer="hotkey")
        log.info("committed log hash %s on chain: %s", checkpoint.log_hash, result)

    async def close(self) -> None:
        if isinstance(self._client, ChainSession):
            await self._client.close()


async def publish_all(sinks: Sequence[AnchorSink], checkpoint: Checkpoint) -> dict[str, str]:
    """Publish to every sink; one failing sink neither stops the others nor the log."""
    outcomes: dict[str, str] = {}
    for sink in sinks:
        try:
            await sink.publish(checkpoint)
            outcomes[sink.name] = "ok"
        except Exception as error:
            log.warning("anchor %s: could not publish checkpoint: %s", sink.name, error)
            outcomes[sink.name] = f"failed: {error}"
    return outcomes


def _parse(raw: bytes, where: str) -> Checkpoint:
    try:
        return Checkpoint.from_document(orjson.loads(raw))
    except orjson.JSONDecodeError as error:
        raise MalformedProof(f"{where}: not JSON: {error}") from None


def read_anchor_lines(data: bytes, where: str) -> list[Checkpoint]:
    """Checkpoints from JSON lines (an anchor file); a bad line is an error naming it."""
    found: list[Checkpoint] = []
    for number, line in enumerate(data.splitlines(), 1):
        if line.strip():
            try:
                found.append(_parse(line, f"{where} line {number}"))
            except MalformedProof as error:
                raise MalformedProof(f"{where} line {number}: {error}") from None
    return found
