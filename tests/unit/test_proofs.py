"""Checkpoints, receipts and the chain anchor: the signed texts, parsing, rate limits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from bittensor import calls

from audit.anchors import AnchorAuditor
from events import GENESIS_HASH
from events.log_chain import ChainHead, Checkpoint, MalformedProof, Receipt, link
from miners.identity import Identity
from miners.proofs import sign_hex, verify_hex
from miners.receipts import ReceiptBook
from processors.anchors import ChainAnchor, commitment_call
from taskledger.settings import SettingsError, from_environment

PROXY = Identity.from_seed(b"unit-test-proxy-hotkey-32-bytes!", "proxy")


def signed_checkpoint(position: int, events: int, log_hash: str) -> Checkpoint:
    unsigned = Checkpoint("sqlite", 0, position, events, log_hash, "2026-12-03T06:00:00Z", "", "")
    return Checkpoint(
        **{
            **unsigned.to_document(),
            "proxy_hotkey": PROXY.ss58,
            "signature": sign_hex(PROXY.signer, unsigned.message()),
        }
    )


def test_the_signed_texts_are_exactly_the_contracts() -> None:
    checkpoint = signed_checkpoint(7, 7, "a" * 64)
    assert checkpoint.message() == (
        b"taskledger-checkpoint/1\nsqlite\n0\n7\n7\n" + b"a" * 64 + b"\n2026-12-03T06:00:00Z"
    )
    receipt = Receipt("t-1", 3, "b" * 64, PROXY.ss58, "")
    assert receipt.message() == b"taskledger-receipt/1\nt-1\n3\n" + b"b" * 64
    assert verify_hex(PROXY.ss58, checkpoint.message(), checkpoint.signature)
    assert not verify_hex(PROXY.ss58, receipt.message(), checkpoint.signature)


def test_the_log_chain_is_one_hash_per_event_in_order() -> None:
    head = ChainHead()
    head.add(1, "1" * 64)
    head.add(2, "2" * 64)
    assert head.log_hash == link(link(GENESIS_HASH, "1" * 64), "2" * 64)
    assert head.log_hash != link(link(GENESIS_HASH, "2" * 64), "1" * 64)
    assert (head.position, head.events) == (2, 2)


@pytest.mark.parametrize(
    "document",
    [
        [],
        {"log": "sqlite"},
        {**signed_checkpoint(1, 1, "c" * 64).to_document(), "position": "1"},
        {**signed_checkpoint(1, 1, "c" * 64).to_document(), "events": True},
        {**signed_checkpoint(1, 1, "c" * 64).to_document(), "log_hash": "not hex"},
    ],
)
def test_a_malformed_checkpoint_is_refused_with_a_reason(document: Any) -> None:
    with pytest.raises(MalformedProof):
        Checkpoint.from_document(document)


def test_the_anchor_audit_reports_conflicting_signed_checkpoints() -> None:
    first, second = signed_checkpoint(2, 2, "d" * 64), signed_checkpoint(2, 2, "e" * 64)
    auditor = AnchorAuditor(
        [first, second],
        lambda c: verify_hex(PROXY.ss58, c.message(), c.signature),
        "sqlite",
        contiguous=True,
    )
    auditor.add(0, 1, "1" * 64)
    auditor.add(0, 2, "2" * 64)
    report = auditor.finish()
    assert [f.kind for f in report.findings] == ["conflicting_checkpoints", "log_rewritten"]


def test_a_log_that_ends_before_its_checkpoint_names_the_first_missing_position() -> None:
    head = ChainHead()
    for position in (1, 2, 3):
        head.add(position, f"{position}" * 64)
    checkpoint = signed_checkpoint(3, 3, head.log_hash)
    auditor = AnchorAuditor([checkpoint], lambda c: True, "sqlite", contiguous=True)
    auditor.add(0, 1, "1" * 64)
    (finding,) = auditor.finish().findings
    assert (finding.kind, finding.position) == ("log_rewritten", 2)


def test_a_miner_keeps_only_receipts_its_proxy_signed(tmp_path: Path) -> None:
    book = ReceiptBook(tmp_path / "receipts.jsonl")
    unsigned = Receipt("t-1", 3, "b" * 64, PROXY.ss58, "")
    good = {**unsigned.to_document(), "signature": sign_hex(PROXY.signer, unsigned.message())}
    assert book.keep(good, PROXY.ss58) is not None
    assert book.keep({**good, "sequence": 4}, PROXY.ss58) is None
    assert book.keep(good, Identity.from_uri("//Mallory").ss58) is None
    assert book.keep({"nonsense": 1}, PROXY.ss58) is None
    kept = [json.loads(line) for line in book.path.read_text().splitlines()]
    assert kept == [good]


class RecordingClient:
    """Stands in for ``bittensor.Client`` at its submission boundary and records calls."""

    def __init__(self) -> None:
        self.submitted: list[tuple[Any, Any, dict[str, Any]]] = []

    async def submit_call(self, call: Any, wallet: Any, **kwargs: Any) -> str:
        self.submitted.append((call, wallet, kwargs))
        return "included"


async def test_the_chain_anchor_commits_the_log_hash_at_most_once_per_interval() -> None:
    client, now = RecordingClient(), [1000.0]
    anchor = ChainAnchor(client, PROXY.signer, 7, min_interval=600.0, monotonic=lambda: now[0])
    await anchor.publish(signed_checkpoint(10, 10, "a" * 64))
    now[0] += 599
    await anchor.publish(signed_checkpoint(20, 20, "b" * 64))  # too soon: skipped
    now[0] += 2
    await anchor.publish(signed_checkpoint(30, 30, "c" * 64))
    assert [kwargs for _, _, kwargs in client.submitted] == [{"signer": "hotkey"}] * 2
    calls_made = [call for call, _, _ in client.submitted]
    assert calls_made == [commitment_call(7, "a" * 64), commitment_call(7, "c" * 64)]
    expected = calls.Commitments.set_commitment(
        netuid=7, info={"fields": [{"Sha256": "0x" + "c" * 64}]}
    )
    assert calls_made[1] == expected
    assert (expected.module, expected.function) == ("Commitments", "set_commitment")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TASKLEDGER_CHECKPOINT_EVENTS", "0"),
        ("TASKLEDGER_CHECKPOINT_EVENTS", "1.5"),
        ("TASKLEDGER_CHECKPOINT_SECONDS", "soon"),
        ("TASKLEDGER_ANCHORS", "s3://bucket"),
        ("TASKLEDGER_SET_WEIGHTS", "yes"),
        ("TASKLEDGER_WEIGHTS_VERSION_KEY", "-1"),
    ],
)
def test_bad_accountability_settings_are_named(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        from_environment({name: value})


def test_the_weights_processor_is_accepted_on_kafka() -> None:
    # Its events reach the weights stream's owner through the command bus
    # (tests/integration/test_kafka_anchors.py runs it on the broker).
    env = {"TASKLEDGER_SET_WEIGHTS": "on", "TASKLEDGER_EVENT_LOG": "kafka://127.0.0.1:9092"}
    assert from_environment(env).accountability.set_weights


def test_accountability_settings_defaults_and_values() -> None:
    defaults = from_environment({}).accountability
    assert (defaults.checkpoint_events, defaults.checkpoint_seconds) == (10_000, 60.0)
    assert defaults.anchors == () and defaults.set_weights is False
    given = from_environment(
        {
            "TASKLEDGER_ANCHORS": "file:///var/anchors.jsonl, gs://b/p ,chain",
            "TASKLEDGER_SET_WEIGHTS": "on",
            "TASKLEDGER_WEIGHTS_VERSION_KEY": "42",
        }
    ).accountability
    assert given.anchors == ("file:///var/anchors.jsonl", "gs://b/p", "chain")
    assert given.set_weights and given.weights_version_key == 42


async def test_the_latest_checkpoint_is_there_for_the_operators_page(tmp_path: Path) -> None:
    from events.sqlite_log import SqliteEventLog
    from taskledger.deployments.embedded import log_features

    log = SqliteEventLog(tmp_path / "events.db")
    latest_checkpoint = log_features(log).latest_checkpoint
    assert await latest_checkpoint() is None
    for position in (5, 9, 7):
        await log.save_log_checkpoint(signed_checkpoint(position, position, "a" * 64))
    latest = await latest_checkpoint()
    assert latest is not None and latest.position == 9
    assert [c.position for c in await log.log_checkpoints(after=5, limit=1)] == [7]
    await log.close()


async def test_the_operators_page_gets_the_latest_checkpoint(tmp_path: Path) -> None:
    from events.capabilities import LogFeatures
    from events.sqlite_log import SqliteEventLog
    from http_edge.checkpoints import anchors_status
    from taskledger.deployments.embedded import log_features

    log = SqliteEventLog(tmp_path / "events.db")
    features = log_features(log)
    assert (await anchors_status(features))["status"] == "no checkpoint yet"
    await log.save_log_checkpoint(signed_checkpoint(12, 12, "b" * 64))
    status = await anchors_status(features)
    assert status["configured"] and status["latest"]["position"] == 12
    assert (await anchors_status(LogFeatures(name="memory")))["configured"] is False
    await log.close()
