"""Accountability wired to the backends: anchors read back, the anchored audit, receipts.

Used by ``taskledger audit --anchors/--receipts`` and ``taskledger verify-receipt``.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import orjson

from audit.anchors import AnchorAuditor, AnchorReport
from events import EventLog
from events.capabilities import LogFeatures
from events.log_chain import Checkpoint, MalformedProof, Receipt
from miners.proofs import verify_hex
from processors.anchors import GcsAnchors, read_anchor_lines


class AnchorsUnavailable(Exception):
    """The anchors named for an audit cannot be read."""


async def load_anchors(source: str) -> list[Checkpoint]:
    """Checkpoints from a file (path or file://), gs://bucket/prefix or an http(s) URL
    (a proxy's ``GET /api/v1/checkpoints``)."""
    try:
        if source.startswith("gs://"):
            return await _gcs_anchors(source)
        if source.startswith(("http://", "https://")):
            return await _http_anchors(source)
        path = Path(source.removeprefix("file://"))
        return read_anchor_lines(await asyncio.to_thread(path.read_bytes), str(path))
    except (OSError, orjson.JSONDecodeError) as error:
        raise AnchorsUnavailable(f"cannot read anchors from {source}: {error}") from error


async def _http_anchors(url: str) -> list[Checkpoint]:
    """Every page of a proxy's ``GET /api/v1/checkpoints``, following ``after``."""
    found: list[Checkpoint] = []
    base = url.split("?", 1)[0]
    while True:
        page_url = f"{base}?after={found[-1].position}" if found else url
        document = orjson.loads(await asyncio.to_thread(_http_get, page_url))
        if not isinstance(document, dict) or not isinstance(document.get("checkpoints"), list):
            raise MalformedProof(f"{page_url}: not a checkpoints document")
        page = [Checkpoint.from_document(item) for item in document["checkpoints"]]
        if not page or (found and page[-1].position <= found[-1].position):
            return found
        found += page


def _http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        data: bytes = response.read()
    return data


async def _gcs_anchors(url: str) -> list[Checkpoint]:
    import os

    import google.cloud.storage as storage
    from google.auth.credentials import AnonymousCredentials

    bucket, _, prefix = url.removeprefix("gs://").partition("/")
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    if emulator:
        client = storage.Client(
            project="taskledger",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": emulator},
        )
    else:
        client = storage.Client()
    try:
        return await GcsAnchors(bucket, _prefix(prefix), client).read()
    finally:
        client.close()


def _prefix(prefix: str) -> str:
    return (prefix.rstrip("/") + "/") if prefix else "anchors/"


async def _chain_entries(
    log: EventLog, features: LogFeatures
) -> AsyncIterator[tuple[int, int, str]]:
    """(partition, position, event hash) of every event, in log order per partition."""
    if features.hashes is not None:
        async for rows in features.hashes.hash_batches(5_000):
            for position, event_hash in rows:
                yield 0, position, event_hash
        return
    partition_of = features.partition_of
    async for batch in log.subscribe(after=None, follow=False, batch_size=2_000):
        for envelope in batch.events:
            if envelope.position is None:
                raise ValueError("the log hands out events without a position")
            yield partition_of(envelope.task_id), envelope.position, envelope.hash


async def audit_against_anchors(
    log: EventLog, features: LogFeatures, checkpoints: list[Checkpoint], proxy_ss58: str
) -> AnchorReport:
    """Verify every checkpoint's signature by ``proxy_ss58`` and fold the log against them."""

    def verify(checkpoint: Checkpoint) -> bool:
        return checkpoint.proxy_hotkey == proxy_ss58 and verify_hex(
            proxy_ss58, checkpoint.message(), checkpoint.signature
        )

    started = time.perf_counter()
    auditor = AnchorAuditor(
        checkpoints, verify, features.name, contiguous=features.hashes is not None
    )
    add = auditor.add
    async for partition, position, event_hash in _chain_entries(log, features):
        add(partition, position, event_hash)
    report = auditor.finish()
    report.seconds = time.perf_counter() - started
    return report


def read_receipts(path: Path) -> list[Receipt]:
    """Receipts from a JSON list or JSON lines; a bad entry is an error naming it."""
    raw = path.read_bytes()
    try:
        whole = orjson.loads(raw)
        items = whole if isinstance(whole, list) else [whole]
    except orjson.JSONDecodeError:
        items = []
        for number, line in enumerate(raw.splitlines(), 1):
            if line.strip():
                try:
                    items.append(orjson.loads(line))
                except orjson.JSONDecodeError as error:
                    raise MalformedProof(f"{path} line {number}: not JSON: {error}") from None
    receipts = []
    for number, item in enumerate(items, 1):
        try:
            receipts.append(Receipt.from_document(item))
        except MalformedProof as error:
            raise MalformedProof(f"{path} receipt {number}: {error}") from None
    return receipts


def receipt_is_signed(receipt: Receipt, proxy_ss58: str | None = None) -> bool:
    ss58 = proxy_ss58 or receipt.proxy_hotkey
    return receipt.proxy_hotkey == ss58 and verify_hex(ss58, receipt.message(), receipt.signature)


async def audit_receipts(
    log: EventLog, receipts: list[Receipt], proxy_ss58: str | None = None
) -> list[str]:
    """Every receipt whose signature is bad, or whose event is missing or differs in the log."""
    problems: list[str] = []
    streams: dict[str, dict[int, str]] = {}
    for receipt in receipts:
        label = f"receipt for task {receipt.task_id} sequence {receipt.sequence}"
        if not receipt_is_signed(receipt, proxy_ss58):
            problems.append(f"{label}: the signature is not the proxy hotkey's")
            continue
        hashes = streams.get(receipt.task_id)
        if hashes is None:
            hashes = streams[receipt.task_id] = {
                envelope.sequence: envelope.hash
                for envelope in await log.read_stream(receipt.task_id)
            }
        logged = hashes.get(receipt.sequence)
        if logged is None:
            problems.append(f"{label}: the event is missing from the log")
        elif logged != receipt.event_hash:
            problems.append(f"{label}: the logged event differs (hash {logged})")
    return problems
