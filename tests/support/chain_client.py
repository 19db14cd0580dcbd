"""A stand-in for ``bittensor.Client`` (no chain is reachable in tests): it answers the two reads
the weights setter makes (the metagraph and the subnet's hyperparameters) and records every
intent handed to ``execute``: what would have been signed and sent."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bittensor.result import ExtrinsicResult

from miners.identity import Identity

VALIDATOR = Identity.from_seed(b"weights-validator-hotkey-32bytes", "validator")


NETUID = 11


BLOCK = 5_000


@dataclass
class Neuron:
    uid: int
    hotkey: str
    last_update: int = 0


@dataclass
class Metagraph:
    neurons: list[Neuron]
    block: int = BLOCK

    def by_hotkey(self, hotkey: str) -> Neuron | None:
        return next((n for n in self.neurons if n.hotkey == hotkey), None)


@dataclass
class Subnets:
    metagraph_now: Metagraph
    rate_limit: int

    async def metagraph(self, netuid: int, *, commitments: bool = True) -> Metagraph:
        assert netuid == NETUID and commitments is False
        return self.metagraph_now

    async def subnet_hyperparameters(self, netuid: int) -> dict[str, Any]:
        return {"weights_rate_limit": self.rate_limit, "tempo": 360}


@dataclass
class RecordingClient:
    """``bittensor.Client`` as far as the setter uses it; ``execute`` records and answers."""

    subnets: Subnets
    executed: list[tuple[Any, Any]] = field(default_factory=list)
    refuse: Exception | None = None
    connects: int = 0

    async def connect(self) -> RecordingClient:
        self.connects += 1
        return self

    async def execute(self, intent: Any, wallet: Any) -> ExtrinsicResult:
        self.executed.append((intent, wallet))
        if self.refuse is not None:
            raise self.refuse
        return ExtrinsicResult(
            success=True, message="included", block_hash="0xabc", extrinsic_id=f"{BLOCK + 1}-3"
        )
