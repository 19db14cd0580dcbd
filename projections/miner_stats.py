"""Per-miner statistics and the reward moving average behind validator weights."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

LATENCY_SMOOTHING = 0.2
REWARD_SMOOTHING = 0.1


@dataclass(frozen=True, slots=True)
class MinerStats:
    hotkey: str
    assigned: int = 0
    responded: int = 0
    failed: int = 0
    timed_out: int = 0
    in_flight: int = 0
    latency_ms_avg: float | None = None
    reward_avg: float = 0.0
    evaluations: int = 0

    @property
    def success_rate(self) -> float:
        settled = self.responded + self.failed + self.timed_out
        return self.responded / settled if settled else 1.0

    def on_assigned(self) -> MinerStats:
        tally = MinerTally(self)
        tally.count_assignment()
        return tally.stats()

    def on_responded(self, latency_ms: float) -> MinerStats:
        tally = MinerTally(self)
        tally.count_response(latency_ms)
        return tally.stats()

    def on_failed(self) -> MinerStats:
        tally = MinerTally(self)
        tally.count_failure()
        return tally.stats()

    def on_timed_out(self) -> MinerStats:
        tally = MinerTally(self)
        tally.count_timeout()
        return tally.stats()

    def on_rewarded(self, reward: float) -> MinerStats:
        tally = MinerTally(self)
        tally.count_reward(reward)
        return tally.stats()

    def to_doc(self) -> dict[str, Any]:
        return {
            "hotkey": self.hotkey,
            "assigned": self.assigned,
            "responded": self.responded,
            "failed": self.failed,
            "timed_out": self.timed_out,
            "in_flight": self.in_flight,
            "latency_ms_avg": self.latency_ms_avg,
            "reward_avg": self.reward_avg,
            "evaluations": self.evaluations,
            "success_rate": self.success_rate,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> MinerStats:
        return cls(
            hotkey=doc["hotkey"],
            assigned=doc["assigned"],
            responded=doc["responded"],
            failed=doc["failed"],
            timed_out=doc["timed_out"],
            in_flight=doc["in_flight"],
            latency_ms_avg=doc["latency_ms_avg"],
            reward_avg=doc["reward_avg"],
            evaluations=doc["evaluations"],
        )


class MinerTally:
    """One miner's statistics while a batch is folded: changed in place, one event at a time.

    The projector counts a whole batch's miner events on one tally per miner
    and makes a :class:`MinerStats` of it once, at the end, rather than a new
    frozen value per event.
    """

    __slots__ = (
        "assigned",
        "evaluations",
        "failed",
        "hotkey",
        "in_flight",
        "latency_ms_avg",
        "responded",
        "reward_avg",
        "timed_out",
    )

    def __init__(self, stats: MinerStats) -> None:
        self.hotkey = stats.hotkey
        self.assigned = stats.assigned
        self.responded = stats.responded
        self.failed = stats.failed
        self.timed_out = stats.timed_out
        self.in_flight = stats.in_flight
        self.latency_ms_avg = stats.latency_ms_avg
        self.reward_avg = stats.reward_avg
        self.evaluations = stats.evaluations

    def count_assignment(self) -> None:
        self.assigned += 1
        self.in_flight += 1

    def count_response(self, latency_ms: float) -> None:
        average = self.latency_ms_avg
        self.latency_ms_avg = (
            latency_ms if average is None else average + LATENCY_SMOOTHING * (latency_ms - average)
        )
        self.responded += 1
        self._settled()

    def count_failure(self) -> None:
        self.failed += 1
        self._settled()

    def count_timeout(self) -> None:
        self.timed_out += 1
        self._settled()

    def count_reward(self, reward: float) -> None:
        self.reward_avg += REWARD_SMOOTHING * (reward - self.reward_avg)
        self.evaluations += 1

    def _settled(self) -> None:
        self.in_flight = max(0, self.in_flight - 1)

    def stats(self) -> MinerStats:
        return MinerStats(
            self.hotkey,
            self.assigned,
            self.responded,
            self.failed,
            self.timed_out,
            self.in_flight,
            self.latency_ms_avg,
            self.reward_avg,
            self.evaluations,
        )


CountKind = Literal["assigned", "responded", "failed", "timed_out", "rewarded"]


@dataclass(frozen=True, slots=True)
class MinerCount:
    """What one event of a task changes in one miner's statistics.

    The store applies it in the same transaction that writes the task, and only when
    the task's stored version is below ``sequence`` (the event was not applied yet):
    so a redelivered event, or one another writer folded first, counts once.
    """

    task_id: str
    sequence: int
    hotkey: str
    kind: CountKind
    value: float = 0.0


def tally(stored: Mapping[str, MinerStats], counts: Iterable[MinerCount]) -> list[MinerStats]:
    """The statistics of the counted miners: what ``stored`` holds, plus ``counts`` in order.

    The moving averages (latency, reward) depend on the order of the counts; the
    counters do not.
    """
    tallies: dict[str, MinerTally] = {}
    for count in counts:
        tally = tallies.get(count.hotkey)
        if tally is None:
            tally = tallies[count.hotkey] = MinerTally(
                stored.get(count.hotkey) or MinerStats(count.hotkey)
            )
        match count.kind:
            case "assigned":
                tally.count_assignment()
            case "responded":
                tally.count_response(count.value)
            case "failed":
                tally.count_failure()
            case "timed_out":
                tally.count_timeout()
            case "rewarded":
                tally.count_reward(count.value)
    return [tally.stats() for tally in tallies.values()]


def normalised_weights(stats: list[MinerStats]) -> dict[str, float]:
    """Reward moving averages scaled to sum 1, ready for ``set_weights``."""
    total = sum(max(0.0, miner.reward_avg) for miner in stats)
    if total <= 0:
        return {}
    return {
        miner.hotkey: max(0.0, miner.reward_avg) / total for miner in stats if miner.reward_avg > 0
    }
