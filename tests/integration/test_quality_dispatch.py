"""The running dispatcher routes by quality: it learns rewards from the log as validators
evaluate, and a miner whose answers score 0 stops getting tasks."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.support.edge_system import Edge, running_edge

pytestmark = pytest.mark.slow


async def route(edge: Edge, tasks: int, scores: dict[str, float]) -> Counter[str]:
    """Submit ``tasks`` one after another; each is answered, then scored by ``scores``."""
    traffic: Counter[str] = Counter()
    for _ in range(tasks):
        task_id = (await edge.submit())["task_id"]
        document = await edge.wait_for(task_id, "DONE")
        (hotkey,) = (slot["hotkey"] for slot in document["miners"])
        traffic[hotkey] += 1
        assert (await edge.evaluate(task_id, {hotkey: scores[hotkey]})).status == 200
        await edge.wait_for(task_id, "APPROVED", "FAILED")
    return traffic


async def test_a_miner_scoring_zero_stops_getting_tasks(tmp_path: Path) -> None:
    async with running_edge(tmp_path, miners=("instant",) * 3, miners_per_task=1) as edge:
        edge.system.selector._rng.seed(3)
        wrong, *good = (miner.identity.ss58 for miner in edge.miners)
        scores = {wrong: 0.0, **dict.fromkeys(good, 0.9)}
        early = await route(edge, 24, scores)
        assert early[wrong] >= edge.system.selector.quality.min_evaluations  # it was tried
        assert edge.system.selector.stats[wrong].evaluations == early[wrong]  # learnt live
        later = await route(edge, 15, scores)
        assert later[wrong] == 0
        assert sum(later.values()) == 15
