"""Receipts and checkpoints over real HTTP: what a miner and an auditor can hold the proxy to."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from events.log_chain import Checkpoint, Receipt
from miners.identity import Identity
from miners.proofs import verify_hex
from taskledger.accountability import audit_receipts, load_anchors
from taskledger.accountability_settings import AccountabilitySettings
from tests.support.edge_system import running_edge

pytestmark = pytest.mark.slow


def taskledger(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskledger.cli", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_receipts_checkpoints_and_a_dropped_response(tmp_path: Path) -> None:
    anchors = tmp_path / "anchors" / "anchors.jsonl"
    receipts_file = tmp_path / "miner" / "receipts.jsonl"
    receipts_file.parent.mkdir()
    settings = AccountabilitySettings(checkpoint_events=2, anchors=(f"file://{anchors}",))
    async with running_edge(tmp_path, accountability=settings) as edge:
        receipts = []
        for _ in range(2):
            task_id = str((await edge.submit("summarization"))["task_id"])
            await edge.miners[0].next_work()
            await edge.wait_for(task_id, "DISTRIBUTED")
            reply = await edge.answer(edge.miners[0], task_id)
            assert reply.status == 200, reply.json
            receipt = Receipt.from_document(reply.json["receipt"])
            assert receipt.proxy_hotkey == edge.hotkey
            assert verify_hex(edge.hotkey, receipt.message(), receipt.signature)
            logged = {e.sequence: e for e in await edge.system.log.read_stream(task_id)}
            assert logged[receipt.sequence].type == "MinerResponded"
            assert logged[receipt.sequence].hash == receipt.event_hash
            receipts.append(receipt)
        receipts_file.write_text("".join(json.dumps(r.to_document()) + "\n" for r in receipts))
        assert await audit_receipts(edge.system.log, receipts, edge.hotkey) == []

        async with aiohttp.ClientSession() as session:
            # Checkpoints: public, oldest first, signed by the proxy, paged by position.
            async with session.get(f"{edge.url}/api/v1/checkpoints") as response:
                assert response.status == 200
                documents = (await response.json())["checkpoints"]
                listed = [Checkpoint.from_document(c) for c in documents]
            assert listed and [c.position for c in listed] == sorted(c.position for c in listed)
            for checkpoint in listed:
                assert verify_hex(edge.hotkey, checkpoint.message(), checkpoint.signature)
            # What an auditor saves from the proxy: every page of it, as the audit reads it.
            saved = await load_anchors(f"{edge.url}/api/v1/checkpoints")
            assert saved[: len(listed)] == listed
            after = listed[0].position
            async with session.get(f"{edge.url}/api/v1/checkpoints?after={after}") as response:
                later = (await response.json())["checkpoints"]
            # The checkpointer keeps going (the task's other miners still settle), so a
            # checkpoint may have been added since the first read: the page starts with
            # the listed ones after `after`, and holds nothing at or before it.
            positions = [c["position"] for c in later]
            assert positions[: len(listed) - 1] == [c.position for c in listed[1:]]
            assert all(position > after for position in positions)
            for bad in ("abc", "-1", "1e3", "9" * 40):
                async with session.get(f"{edge.url}/api/v1/checkpoints?after={bad}") as response:
                    assert response.status == 400
                    assert (await response.json())["error"]["code"] == "invalid_request"
        data_dir = edge.data_dir

    published = [json.loads(line) for line in anchors.read_text().splitlines()]
    assert {c.position for c in listed} <= {c["position"] for c in published}

    verified = taskledger("verify-receipt", str(receipts_file), "--proxy", receipts[0].proxy_hotkey)
    assert verified.returncode == 0 and verified.stdout.count("valid:") == 2, verified.stdout
    own = taskledger("verify-receipt", str(receipts_file))
    assert own.returncode == 0 and "the receipt's own proxy_hotkey" in own.stdout
    other = Identity.from_seed(b"not-the-proxy-at-all-not-at-all!", "other").ss58
    assert taskledger("verify-receipt", str(receipts_file), "--proxy", other).returncode == 1

    # The proxy drops the second response from its log: the miner's receipt says so.
    dropped = receipts[1]
    with sqlite3.connect(data_dir / "events.db") as db:
        db.execute(
            "DELETE FROM events WHERE task_id = ? AND sequence >= ?",
            (dropped.task_id, dropped.sequence),
        )
    result = taskledger("audit", "--data-dir", str(data_dir), "--receipts", str(receipts_file))
    assert result.returncode == 1
    problems = [line for line in result.stdout.splitlines() if line.startswith("RECEIPT")]
    assert problems == [
        f"RECEIPT receipt for task {dropped.task_id} sequence {dropped.sequence}: "
        "the event is missing from the log"
    ]


async def test_validator_set_weights_submits_the_proxys_weights_and_records_them(
    tmp_path: Path,
) -> None:
    from audit.log_audit import audit_log
    from events.ledger import WEIGHTS_STREAM, WeightsSubmitted
    from events.sqlite_log import SqliteEventLog
    from miners.validator_weights import set_weights_once
    from miners.weights import WeightsSetter
    from tests.support.chain_client import Metagraph, Neuron, RecordingClient, Subnets
    from tests.support.edge_system import VALIDATOR

    async with running_edge(tmp_path) as edge:
        task_id = await edge.done_task()
        miner = edge.miners[0].identity.ss58
        assert (await edge.evaluate(task_id, {miner: 0.9})).status == 200
        chain = RecordingClient(
            Subnets(
                Metagraph([Neuron(0, "5Owner"), Neuron(4, miner), Neuron(5, VALIDATOR.ss58)]), 0
            )
        )
        ledger = SqliteEventLog(tmp_path / "ledger" / "events.db")
        setter = WeightsSetter(chain, VALIDATOR.signer, 11, version_key=3)
        async with asyncio.timeout(10):
            while True:  # the weights follow the evaluation once it is projected
                outcome = await set_weights_once(
                    edge.peer(VALIDATOR), edge.url, edge.hotkey, setter, ledger
                )
                if isinstance(outcome, WeightsSubmitted):
                    break
                await asyncio.sleep(0.05)
        ((intent, _),) = chain.executed
        assert (intent.uids, intent.weights, intent.version_key) == ([4], [1.0], 3)
        (recorded,) = await ledger.read_stream(WEIGHTS_STREAM)
        assert recorded.data["uids"] == [4] and recorded.actor == VALIDATOR.ss58
        assert (await audit_log(ledger)).clean
        await ledger.close()
