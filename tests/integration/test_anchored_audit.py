"""The anchored audit on a real events.db: the attack of issue 15 fails it.

A log is written through the embedded commands, the real checkpointer signs
checkpoints of it with a real sr25519 key and publishes them to an anchor
file, and then the file is attacked the way the issue describes. The plain
audit cannot see a consistent rewrite; ``taskledger audit --anchors --proxy``
must.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from events.log_chain import Checkpoint
from events.sqlite_log import SqliteEventLog
from miners.identity import Identity
from processors.anchors import FileAnchors
from processors.checkpointer import Checkpointer
from taskledger.anchoring import resume_for
from taskledger.deployments.embedded import log_features
from tests.support.anchor_signer import EVERY, PROXY
from tests.support.lifecycle_log import write_lifecycles
from tests.support.rewrites import delete_task, rewrite_task

FIXTURE = Path(__file__).parent.parent / "fixtures" / "v1-log.db"


def taskledger(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskledger.cli", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
    )


async def checkpoint(database: Path, anchors: Path, signer: Identity = PROXY) -> list[Checkpoint]:
    """Run the real checkpointer over the log until it has signed all it will."""
    log = SqliteEventLog(database)
    checkpointer = Checkpointer(
        log,
        log,
        signer.signer,
        log_name=log.log_name,
        partition_of=lambda task_id: 0,
        resume=resume_for(log_features(log)),
        hashes=log,
        every_events=EVERY,
        every_seconds=3600.0,
        sinks=[FileAnchors(anchors)],
        clock=lambda: datetime.now(UTC),
    )
    due = await log.head_position() // EVERY * EVERY
    running = asyncio.create_task(checkpointer.run())
    try:
        async with asyncio.timeout(20):
            while checkpointer.latest is None or checkpointer.latest.position < due:
                await asyncio.sleep(0.01)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    kept = await log.log_checkpoints()
    await log.close()
    return kept


@pytest.fixture
def anchored(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    data_dir, anchors = tmp_path / "data", tmp_path / "elsewhere" / "anchors.jsonl"
    data_dir.mkdir()
    ids = asyncio.run(write_lifecycles(data_dir, 5))
    kept = asyncio.run(checkpoint(data_dir / "events.db", anchors))
    assert [c.position for c in kept] == [16, 32]
    return data_dir, anchors, ids


def audit(data_dir: Path, anchors: Path, proxy: str = PROXY.ss58) -> tuple[int, dict[str, object]]:
    result = taskledger(
        "audit",
        "--data-dir",
        str(data_dir),
        "--workers",
        "1",
        "--anchors",
        str(anchors),
        "--proxy",
        proxy,
        "--json",
    )
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def test_the_attack_before_an_anchored_checkpoint_fails_the_audit(
    anchored: tuple[Path, Path, list[str]],
) -> None:
    data_dir, anchors, ids = anchored
    database = data_dir / "events.db"
    assert audit(data_dir, anchors)[0] == 0
    deleted = delete_task(database, ids[1])  # positions 9..16
    rewrite_task(database, ids[3])  # positions 25..32
    # The task chains alone are fooled: every hash and head was recomputed.
    plain = taskledger("audit", "--data-dir", str(data_dir), "--workers", "1")
    assert plain.returncode == 0 and "clean" in plain.stdout, plain.stdout
    code, report = audit(data_dir, anchors)
    assert code == 1 and report["clean"] is False
    findings = report["anchors"]["findings"]  # type: ignore[index]
    assert [(f["kind"], f["position"]) for f in findings] == [("log_rewritten", deleted[0])]
    assert f"position {deleted[0]} is missing" in findings[0]["message"]


def test_a_rewrite_alone_names_the_stretch_it_lies_in(
    anchored: tuple[Path, Path, list[str]],
) -> None:
    data_dir, anchors, ids = anchored
    rewritten = rewrite_task(data_dir / "events.db", ids[3])
    code, report = audit(data_dir, anchors)
    assert code == 1
    (finding,) = report["anchors"]["findings"]  # type: ignore[index]
    assert finding["kind"] == "log_rewritten"
    # Only the chain's end is anchored at 32: the first difference is somewhere after 16.
    assert finding["position"] == 17 and 17 <= rewritten[0] <= 32
    assert "checkpoint at position 32" in finding["message"]


def test_the_same_rewrite_after_the_last_checkpoint_is_reported_unanchored(
    anchored: tuple[Path, Path, list[str]],
) -> None:
    data_dir, anchors, ids = anchored
    rewrite_task(data_dir / "events.db", ids[4])  # positions 33..40, after the last checkpoint
    code, report = audit(data_dir, anchors)
    assert code == 0
    anchors_report = report["anchors"]
    assert anchors_report["findings"] == []  # type: ignore[index]
    assert anchors_report["unanchored"]["events"] == 8  # type: ignore[index]
    text = taskledger(
        "audit", "--data-dir", str(data_dir), "--anchors", str(anchors), "--proxy", PROXY.ss58
    )
    assert "unanchored: 8 event(s) after the last checkpoint" in text.stdout


def test_a_forged_checkpoint_signature_fails_the_audit(
    anchored: tuple[Path, Path, list[str]],
) -> None:
    data_dir, anchors, _ = anchored
    lines = anchors.read_text().splitlines()
    forged = json.loads(lines[1])
    forged["log_hash"] = "f" * 64  # claims another history, keeps the old signature
    anchors.write_text("\n".join([lines[0], json.dumps(forged)]) + "\n")
    code, report = audit(data_dir, anchors)
    assert code == 1
    kinds = [(f["kind"], f["position"]) for f in report["anchors"]["findings"]]  # type: ignore[index]
    assert kinds == [("forged_checkpoint", 32)]


def test_checkpoints_by_another_key_are_not_the_proxys(
    anchored: tuple[Path, Path, list[str]],
) -> None:
    data_dir, anchors, _ = anchored
    other = Identity.from_seed(b"someone-else-entirely-signing!!!", "other")
    code, report = audit(data_dir, anchors, proxy=other.ss58)
    assert code == 1
    assert {f["kind"] for f in report["anchors"]["findings"]} == {"forged_checkpoint"}  # type: ignore[index]


def test_the_v1_log_without_checkpoints_audits_with_every_event_unanchored(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shutil.copy(FIXTURE, data_dir / "events.db")
    anchors = tmp_path / "anchors.jsonl"
    anchors.write_text("")
    code, report = audit(data_dir, anchors)
    assert code == 0, report
    assert report["anchors"]["checkpoints"] == 0  # type: ignore[index]
    assert report["anchors"]["unanchored"]["events"] == report["events"] > 0  # type: ignore[index]


def test_anchors_without_a_proxy_address_are_refused(
    anchored: tuple[Path, Path, list[str]],
) -> None:
    data_dir, anchors, _ = anchored
    result = taskledger("audit", "--data-dir", str(data_dir), "--anchors", str(anchors))
    assert result.returncode == 2
    assert "--proxy" in result.stderr
