"""The dashboard's own arithmetic and the key registry's counting, without a server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from aggregates import TaskState
from http_edge.admin_stats import WINDOW, figures, percentile
from http_edge.key_store.manage import create_key
from http_edge.key_store.registry import KeyRegistry, rate_window
from http_edge.key_store.sqlite import SqliteKeyStore

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.99)) == (50.0, 99.0)
    assert percentile([7.0], 0.99) == 7.0
    assert percentile([], 0.5) is None


def test_rate_windows_allow_the_rate_or_one_request_per_window() -> None:
    assert rate_window(5.0, 100.7) == (100, 5)
    assert rate_window(2.5, 100.2) == (100, 3)
    assert rate_window(0.5, 100.0) == (50, 1)  # one request in each two seconds
    assert rate_window(0.5, 101.9) == (50, 1)


def _task(n: int, status: str, created: datetime, updated: datetime) -> TaskState:
    return TaskState(
        task_id=f"t{n}",
        status=status,
        task_type="summarization",
        created_at=created,
        updated_at=updated,
        error={"code": "no_responses", "message": "no miner answered"}
        if status == "FAILED"
        else None,
    )


def test_figures_bucket_by_minute_and_measure_from_intake() -> None:
    approved = [
        _task(
            n,
            "APPROVED",
            NOW - timedelta(minutes=2),
            NOW - timedelta(minutes=2) + timedelta(milliseconds=100 * (n + 1)),
        )
        for n in range(4)
    ]
    old = _task(9, "APPROVED", NOW - WINDOW - timedelta(minutes=1), NOW - timedelta(minutes=14))
    failed = [_task(5, "FAILED", NOW - timedelta(seconds=30), NOW - timedelta(seconds=10))]
    document = figures(NOW, {"APPROVED": [*approved, old], "FAILED": failed}, sampled=False)
    minutes = document["throughput"]["per_minute"]
    assert len(minutes) == 15
    assert sum(m["approved"] for m in minutes) == 5
    assert sum(m["created"] for m in minutes) == 5  # the old one was created before the window
    assert minutes[-1]["failed"] == 1 and minutes[-1]["created"] == 1
    assert minutes[13]["approved"] == 4  # two minutes ago
    latency = document["latency_ms"]["approved"]
    assert latency["count"] == 5 and latency["p50"] == 300.0
    assert document["failures"] == [
        {
            "task_id": "t5",
            "type": "summarization",
            "failed_at": "2026-12-03T11:59:50.000000Z",
            "reason": "no miner answered",
        }
    ]
    assert document["latency_ms"]["first_response"]["count"] == 0


async def test_the_registry_sees_a_key_made_elsewhere_at_its_next_reload(tmp_path: Path) -> None:
    here = SqliteKeyStore(tmp_path / "keys.db")
    elsewhere = SqliteKeyStore(tmp_path / "keys.db")
    registry = KeyRegistry(here, lambda: NOW, {"env": "env-key"}, refresh_seconds=60)
    assert registry.client_for("env-key") == "env"  # before the store is read
    await registry.start()
    made = await create_key(elsewhere, "late", NOW, quota_per_day=1)
    assert registry.client_for(made.key) is None
    await registry.reload()
    assert registry.client_for(made.key) == "late"
    assert await registry.charge("late") and not await registry.charge("late")
    assert await registry.exhausted("late")
    assert await registry.charge("env") and await registry.charge("env")
    await registry.refund("env")
    await registry.flush()
    assert await elsewhere.usage("2026-12-03") == {"late": 1, "env": 1}
    await elsewhere.revoke("env", NOW)
    await registry.reload()
    assert registry.client_for("env-key") is None
    await registry.stop()
    await here.close()
    await elsewhere.close()
