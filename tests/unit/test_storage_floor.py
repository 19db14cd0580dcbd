"""The storage floor of ``bench engine`` does the work it is compared with, and only that."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import orjson
import pytest

from bench.storage_floor import recompute_hashes, run_floor
from events.codec import GENESIS_HASH


def test_the_floor_chains_appends_and_folds_every_lifecycle(tmp_path: Path) -> None:
    figures = run_floor(10, tmp_path, batch=4)  # batches of 4, 4 and 2 lifecycles
    assert (figures.tasks, figures.events) == (10, 80)
    log = sqlite3.connect(tmp_path / "floor-events.db")
    rows = log.execute("SELECT task_id, sequence, body, hash FROM events ORDER BY position")
    previous: dict[str, str] = {}
    for task_id, sequence, body, stored in rows:
        event = orjson.loads(body)
        assert body == orjson.dumps(event, option=orjson.OPT_SORT_KEYS)
        assert event["prev_hash"] == previous.get(task_id, GENESIS_HASH)
        assert (event["task_id"], event["sequence"]) == (task_id, sequence)
        assert hashlib.sha256(body).hexdigest() == stored
        previous[task_id] = stored
    heads = dict(log.execute("SELECT task_id, head_hash FROM streams").fetchall())
    assert heads == previous
    models = sqlite3.connect(tmp_path / "floor-readmodels.db")
    statuses = models.execute("SELECT status, version, count(*) FROM tasks GROUP BY 1, 2")
    assert statuses.fetchall() == [("APPROVED", 8, 10)]
    assert models.execute("SELECT checkpoint FROM checkpoints").fetchall() == [("80",)]


def test_the_hash_loop_recomputes_every_hash(tmp_path: Path) -> None:
    run_floor(3, tmp_path)
    path = tmp_path / "floor-events.db"
    assert recompute_hashes(path)[0] == 24
    with sqlite3.connect(path) as log:
        log.execute("UPDATE events SET body = CAST('{}' AS BLOB) WHERE position = 5")
    with pytest.raises(RuntimeError, match="event 5 does not match"):
        recompute_hashes(path)
