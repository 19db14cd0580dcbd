"""Routing by quality, over a few hundred tasks with miners of known quality and latency.

The selector learns as the dispatcher makes it learn: from the log's MinerResponded and
TaskEvaluated, one event at a time; everything else is the seeded RNG.
"""

from __future__ import annotations

import random
from collections import Counter

from miners.directory import MinerInfo
from processors.quality import Candidate, QualityPolicy, pick
from processors.selection import MinerSelector

# hotkey: (latency ms, the reward a validator gives its answers)
MINERS = {
    "fast-but-wrong": (50.0, 0.0),
    "good-a": (200.0, 0.9),
    "good-b": (400.0, 0.8),
    "fair": (800.0, 0.5),
    "slow-good": (1500.0, 0.85),
}
PER_TASK = 2


def infos(hotkeys: list[str]) -> list[MinerInfo]:
    return [MinerInfo(h, f"http://{h}", frozenset({"summarization"})) for h in hotkeys]


Fleet = dict[str, tuple[float, float]]


def run(selector: MinerSelector, tasks: int, miners: Fleet) -> Counter[str]:
    """Route ``tasks`` tasks; each chosen miner answers and is rewarded as it deserves."""
    traffic: Counter[str] = Counter()
    fleet = infos(list(miners))
    for _ in range(tasks):
        chosen = selector.choose(fleet, "summarization", PER_TASK)
        rewards = {}
        for miner in chosen:
            traffic[miner.hotkey] += 1
            latency, reward = miners[miner.hotkey]
            selector.learn("MinerResponded", {"hotkey": miner.hotkey, "latency_ms": latency})
            rewards[miner.hotkey] = reward
        selector.learn("TaskEvaluated", {"validator": "v", "scores": rewards, "rewards": rewards})
    return traffic


def test_a_fast_miner_that_scores_zero_loses_its_traffic() -> None:
    even_share = 300 * PER_TASK / len(MINERS)
    # Blind to quality (no miner ever counts as scored), speed wins: it gets the most.
    blind = MinerSelector(rng=random.Random(7), quality=QualityPolicy(min_evaluations=10**9))
    run(blind, 30, MINERS)
    unscored = run(blind, 300, MINERS)
    assert unscored["fast-but-wrong"] > 1.4 * even_share
    # Weighing quality, the same seed and miners: once scored it gets a sliver.
    selector = MinerSelector(rng=random.Random(7))
    early = run(selector, 30, MINERS)
    later = run(selector, 300, MINERS)
    assert early["fast-but-wrong"] > 0  # it was tried
    assert later["fast-but-wrong"] < 0.1 * even_share
    assert later["good-a"] > later["fair"] and later["good-b"] > later["fair"]
    assert later["good-a"] > even_share


def test_a_new_miner_gets_a_bounded_share_until_it_has_a_score() -> None:
    selector = MinerSelector(rng=random.Random(11))
    run(selector, 200, MINERS)
    # A newcomer that turns out as good as the best is found and then kept...
    joined = {**MINERS, "newcomer": (300.0, 0.95)}
    traffic = run(selector, 300, joined)
    assert traffic["newcomer"] > 300 * PER_TASK / len(joined)
    # ...one that turns out useless is tried, then left.
    selector = MinerSelector(rng=random.Random(11))
    run(selector, 200, MINERS)
    useless = {**MINERS, "newcomer": (300.0, 0.0)}
    tried = run(selector, 300, useless)
    assert 0 < tried["newcomer"] < 0.1 * 300 * PER_TASK / len(useless)
    assert selector.stats["newcomer"].evaluations >= selector.quality.min_evaluations


def test_exploration_takes_at_most_its_share_of_places() -> None:
    policy = QualityPolicy(explore_share=0.1)
    candidates = [Candidate(f"known-{n}", 1.0, False) for n in range(4)] + [
        Candidate("new", 1e-6, True)
    ]
    rng = random.Random(3)
    picked_new = sum("new" in pick(candidates, 1, rng, policy) for _ in range(2000))
    # Only exploration picks it (its score keeps it out of the top share): about 10%.
    assert 120 < picked_new < 280


def test_the_same_seed_routes_the_same_way() -> None:
    first = run(MinerSelector(rng=random.Random(5)), 100, MINERS)
    again = run(MinerSelector(rng=random.Random(5)), 100, MINERS)
    other = run(MinerSelector(rng=random.Random(6)), 100, MINERS)
    assert first == again
    assert first != other
