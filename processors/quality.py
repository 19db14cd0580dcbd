"""Routing by quality: how much a miner deserves the next task, and picking miners by it.

A miner's score weighs its validated quality — the moving average of its rewards, the
same figure the weights are made of — beside its load, latency and success rate:

    score = (floor + quality) * success / (1 + latency/scale) / (1 + 4 * load)

so a miner that answers fast but scores 0 is worth a few percent of a good one however
fast it is. Until a miner has ``min_evaluations`` rewards its quality is a neutral prior;
after, its reward average corrected for having started at 0 (the moving average of n
rewards, divided by 1 - (1 - smoothing)^n), so a good newcomer is not judged by the zeros
its average started from.

Picking follows SN19's organic routing: rank the candidates by score, keep the top share
(never fewer than the task needs), and draw among them at random, weighted by score, so
traffic follows quality without sending everything to one miner. Besides, with probability
``explore_share`` one place of a task goes to a miner still earning its score (new or
rarely evaluated), drawn uniformly: new miners get a bounded share of traffic, enough to be
scored, and no more.

Pure: the same candidates and the same seeded RNG give the same choice.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from projections import MinerStats
from projections.miner_stats import REWARD_SMOOTHING


@dataclass(frozen=True, slots=True)
class QualityPolicy:
    top_share: float = 0.5
    explore_share: float = 0.1
    min_evaluations: int = 3
    prior_quality: float = 0.5
    quality_floor: float = 0.02
    latency_scale_ms: float = 1000.0


@dataclass(frozen=True, slots=True)
class Candidate:
    hotkey: str
    score: float
    new: bool  # still earning a score: fewer than min_evaluations rewards


def is_new(stats: MinerStats | None, policy: QualityPolicy) -> bool:
    return stats is None or stats.evaluations < policy.min_evaluations


def quality_of(stats: MinerStats | None, policy: QualityPolicy) -> float:
    """The miner's validated quality: its reward average, unbiased; the prior while new."""
    if stats is None or is_new(stats, policy):
        return policy.prior_quality
    started_at_zero = 1.0 - (1.0 - REWARD_SMOOTHING) ** stats.evaluations
    return stats.reward_avg / started_at_zero


def score(stats: MinerStats | None, load: float, policy: QualityPolicy) -> float:
    """How much the miner deserves the next task; ``load`` is in-flight over the cap (0..1)."""
    quality = quality_of(stats, policy)
    success = stats.success_rate if stats is not None else 1.0
    latency = stats.latency_ms_avg if stats is not None and stats.latency_ms_avg else 0.0
    return (
        (policy.quality_floor + max(0.0, quality))
        * success
        / (1.0 + min(latency, 600_000.0) / policy.latency_scale_ms)
        / (1.0 + 4.0 * max(0.0, load))
    )


def pick(
    candidates: Sequence[Candidate], count: int, rng: random.Random, policy: QualityPolicy
) -> list[str]:
    """``count`` hotkeys (fewer if there are fewer candidates), best first."""
    if count <= 0 or not candidates:
        return []
    chosen: list[str] = []
    new = [c for c in candidates if c.new]
    if new and rng.random() < policy.explore_share:
        chosen.append(rng.choice(new).hotkey)
    # Shuffled first, so that miners of equal score share the top places in turn.
    others = [c for c in candidates if c.hotkey not in chosen]
    rng.shuffle(others)
    ranked = sorted(others, key=lambda c: -c.score)
    top = ranked[: max(count, math.ceil(len(candidates) * policy.top_share))]
    while len(chosen) < count and top:
        weights = [max(c.score, 1e-9) for c in top]
        index = rng.choices(range(len(top)), weights=weights)[0]
        chosen.append(top.pop(index).hotkey)
    return chosen
