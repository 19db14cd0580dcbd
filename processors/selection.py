"""Choosing miners for a task: capability, health, in-flight load, latency, success rate."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from miners.directory import MinerInfo
from projections import MinerStats


@dataclass(frozen=True, slots=True)
class SelectionPolicy:
    max_in_flight: int = 256
    # A miner whose success rate has fallen below this, over at least
    # `min_samples` settled assignments, is left out while others are available.
    unhealthy_below: float = 0.2
    min_samples: int = 5


class MinerSelector:
    """Ranks candidate miners; the least loaded, fastest, most reliable come first.

    In-flight counts are kept here, from the assignments this process makes
    and the settlements it observes, seeded from the read model at start.
    """

    def __init__(self, policy: SelectionPolicy | None = None) -> None:
        self.policy = policy or SelectionPolicy()
        self.in_flight: Counter[str] = Counter()
        self.stats: dict[str, MinerStats] = {}
        self._turn = itertools.count()

    def seed(self, stats: Iterable[MinerStats]) -> None:
        for miner in stats:
            self.stats[miner.hotkey] = miner
            self.in_flight[miner.hotkey] = miner.in_flight

    def update_stats(self, stats: Iterable[MinerStats]) -> None:
        for miner in stats:
            self.stats[miner.hotkey] = miner

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
        # Rotate the starting point so equally good miners share the work.
        turn = next(self._turn)
        ranked = sorted(
            enumerate(pool),
            key=lambda item: (self._cost(item[1].hotkey), (item[0] - turn) % max(1, len(pool))),
        )
        return [miner for _, miner in ranked[:count]]

    def _cost(self, hotkey: str) -> float:
        stats = self.stats.get(hotkey)
        latency = stats.latency_ms_avg if stats and stats.latency_ms_avg is not None else 0.0
        success = stats.success_rate if stats else 1.0
        load = self.in_flight[hotkey] / self.policy.max_in_flight
        return load * 4.0 + (1.0 - success) * 2.0 + min(latency, 60_000.0) / 60_000.0
