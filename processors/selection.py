"""Choosing miners for a task: capability, health, then validated quality beside in-flight
load, latency and success rate (see :mod:`processors.quality`)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from miners.directory import MinerInfo
from processors.quality import Candidate, QualityPolicy, is_new, pick, score
from projections import MinerStats


@dataclass(frozen=True, slots=True)
class SelectionPolicy:
    max_in_flight: int = 256
    # A miner whose success rate has fallen below this, over at least
    # `min_samples` settled assignments, is left out while others are available.
    unhealthy_below: float = 0.2
    min_samples: int = 5


class MinerSelector:
    """Picks miners for a task by score: quality (rewards), load, latency, success.

    In-flight counts are kept here, from the assignments this process makes
    and the settlements it observes, seeded from the read model at start; the
    miners' statistics likewise, then learnt from the log as the dispatcher reads it.
    """

    def __init__(
        self,
        policy: SelectionPolicy | None = None,
        *,
        quality: QualityPolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.policy = policy or SelectionPolicy()
        self.quality = quality or QualityPolicy()
        self.in_flight: Counter[str] = Counter()
        self.stats: dict[str, MinerStats] = {}
        self._rng = rng or random.Random()

    def seed(self, stats: Iterable[MinerStats]) -> None:
        for miner in stats:
            self.stats[miner.hotkey] = miner
            self.in_flight[miner.hotkey] = miner.in_flight

    def update_stats(self, stats: Iterable[MinerStats]) -> None:
        for miner in stats:
            self.stats[miner.hotkey] = miner

    def learn(self, event_type: str, data: Mapping[str, Any]) -> None:
        """Keep a miner's statistics current from one event of the log, as the read model
        does (the same moving averages)."""
        if event_type == "TaskEvaluated":
            for hotkey, reward in dict(data.get("rewards") or {}).items():
                self._update(hotkey, lambda s, r=float(reward): s.on_rewarded(r))
        elif event_type == "MinerResponded":
            latency = float(data.get("latency_ms") or 0.0)
            self._update(str(data["hotkey"]), lambda s: s.on_responded(latency))
        elif event_type == "MinerFailed":
            self._update(str(data["hotkey"]), MinerStats.on_failed)
        elif event_type == "MinerTimedOut":
            self._update(str(data["hotkey"]), MinerStats.on_timed_out)

    def _update(self, hotkey: str, change: Any) -> None:
        self.stats[hotkey] = change(self.stats.get(hotkey) or MinerStats(hotkey))

    def assigned(self, hotkey: str) -> None:
        self.in_flight[hotkey] += 1

    def settled(self, hotkey: str) -> None:
        if self.in_flight[hotkey] > 0:
            self.in_flight[hotkey] -= 1

    def healthy(self, hotkey: str) -> bool:
        stats = self.stats.get(hotkey)
        if stats is None:
            return True
        settled = stats.responded + stats.failed + stats.timed_out
        return (
            settled < self.policy.min_samples or stats.success_rate >= self.policy.unhealthy_below
        )

    def choose(
        self,
        miners: Iterable[MinerInfo],
        task_type: str,
        count: int,
        exclude: Iterable[str] = (),
    ) -> list[MinerInfo]:
        excluded = set(exclude)
        candidates = [
            miner
            for miner in miners
            if task_type in miner.capabilities
            and miner.hotkey not in excluded
            and self.in_flight[miner.hotkey] < self.policy.max_in_flight
        ]
        healthy = [miner for miner in candidates if self.healthy(miner.hotkey)]
        pool = (
            healthy
            if len(healthy) >= count
            else healthy + [miner for miner in candidates if miner not in healthy]
        )
        by_hotkey = {miner.hotkey: miner for miner in pool}
        scored = [
            Candidate(
                miner.hotkey,
                score(
                    self.stats.get(miner.hotkey),
                    self.in_flight[miner.hotkey] / max(1, self.policy.max_in_flight),
                    self.quality,
                ),
                is_new(self.stats.get(miner.hotkey), self.quality),
            )
            for miner in pool
        ]
        return [by_hotkey[h] for h in pick(scored, count, self._rng, self.quality)]
