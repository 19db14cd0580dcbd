"""Per-miner statistics and the reward moving average behind validator weights."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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

    # Each update builds the next value in full: dataclasses.replace costs
    # several times as much, and the projector makes one per miner event.
    def on_assigned(self) -> MinerStats:
        return MinerStats(
            self.hotkey,
            self.assigned + 1,
            self.responded,
            self.failed,
            self.timed_out,
            self.in_flight + 1,
            self.latency_ms_avg,
            self.reward_avg,
            self.evaluations,
        )

    def on_responded(self, latency_ms: float) -> MinerStats:
        average = (
            latency_ms
            if self.latency_ms_avg is None
            else self.latency_ms_avg + LATENCY_SMOOTHING * (latency_ms - self.latency_ms_avg)
        )
        return MinerStats(
            self.hotkey,
            self.assigned,
            self.responded + 1,
            self.failed,
            self.timed_out,
            max(0, self.in_flight - 1),
            average,
            self.reward_avg,
            self.evaluations,
        )

    def on_failed(self) -> MinerStats:
        return MinerStats(
            self.hotkey,
            self.assigned,
            self.responded,
            self.failed + 1,
            self.timed_out,
            max(0, self.in_flight - 1),
            self.latency_ms_avg,
            self.reward_avg,
            self.evaluations,
        )

    def on_timed_out(self) -> MinerStats:
        return MinerStats(
            self.hotkey,
            self.assigned,
            self.responded,
            self.failed,
            self.timed_out + 1,
            max(0, self.in_flight - 1),
            self.latency_ms_avg,
            self.reward_avg,
            self.evaluations,
        )

    def on_rewarded(self, reward: float) -> MinerStats:
        average = self.reward_avg + REWARD_SMOOTHING * (reward - self.reward_avg)
        return MinerStats(
            self.hotkey,
            self.assigned,
            self.responded,
            self.failed,
            self.timed_out,
            self.in_flight,
            self.latency_ms_avg,
            average,
            self.evaluations + 1,
        )

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


def normalised_weights(stats: list[MinerStats]) -> dict[str, float]:
    """Reward moving averages scaled to sum 1, ready for ``set_weights``."""
    total = sum(max(0.0, miner.reward_avg) for miner in stats)
    if total <= 0:
        return {}
    return {
        miner.hotkey: max(0.0, miner.reward_avg) / total for miner in stats if miner.reward_avg > 0
    }
