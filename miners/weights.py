"""Weights on chain: hotkey weights to UIDs, submitted with bittensor 11's ``SetWeights``.

The seam is a bittensor ``Client``: ``client.subnets.metagraph`` (hotkey -> UID,
the block, our own last update), ``client.subnets.subnet_hyperparameters``
(the weights rate limit) and ``client.execute(SetWeights(...), signer)``, the
SDK's policy-gated choke point. ``SetWeights`` itself conforms the weights to
the subnet (clipping, u16 quantisation) and picks plain or commit-reveal.

Hotkeys without a UID are dropped and reported. The subnet's rate limit is
respected before asking the chain: a submission sooner than
``weights_rate_limit`` blocks after our last update is skipped (the chain
would refuse it and charge nothing, but a refused extrinsic is noise).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from bittensor.intents.weights import SetWeights

from events.ledger import WeightsSubmitted

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MappedWeights:
    uids: list[int]
    weights: list[float]
    hotkeys: list[str]
    dropped: list[str]


def map_to_uids(weights: dict[str, float], metagraph: Any) -> MappedWeights:
    """Each hotkey's weight at its UID; hotkeys not on the subnet dropped, in sorted order."""
    uid_of = {neuron.hotkey: int(neuron.uid) for neuron in metagraph.neurons}
    uids, values, hotkeys, dropped = [], [], [], []
    for hotkey in sorted(weights):
        uid = uid_of.get(hotkey)
        if uid is None:
            dropped.append(hotkey)
        else:
            uids.append(uid)
            values.append(float(weights[hotkey]))
            hotkeys.append(hotkey)
    return MappedWeights(uids, values, hotkeys, dropped)


@dataclass(frozen=True, slots=True)
class Skipped:
    """No submission: why (rate limit, nothing to submit)."""

    reason: str


class WeightsSetter:
    def __init__(self, client: Any, signer: Any, netuid: int, version_key: int) -> None:
        self._client = client
        self._signer = signer
        self._netuid = netuid
        self._version_key = version_key

    @property
    def hotkey(self) -> str:
        return str(self._signer.ss58_address)

    async def submit(self, weights: dict[str, float]) -> WeightsSubmitted | Skipped:
        """Submit ``weights`` (hotkey -> weight), or say why not."""
        metagraph = await self._client.subnets.metagraph(self._netuid, commitments=False)
        if metagraph is None:
            raise LookupError(f"subnet {self._netuid} does not exist")
        own = metagraph.by_hotkey(self.hotkey)
        hyperparameters = await self._client.subnets.subnet_hyperparameters(self._netuid) or {}
        rate_limit = int(hyperparameters.get("weights_rate_limit") or 0)
        if own is not None and own.last_update > 0 and rate_limit:
            since = int(metagraph.block) - int(own.last_update)
            if since < rate_limit:
                return Skipped(
                    f"weights were set {since} blocks ago; the subnet allows one "
                    f"submission every {rate_limit} blocks"
                )
        mapped = map_to_uids(weights, metagraph)
        if mapped.dropped:
            log.warning(
                "hotkeys not registered on subnet %s dropped: %s", self._netuid, mapped.dropped
            )
        if not mapped.uids or sum(mapped.weights) <= 0:
            return Skipped(f"no registered hotkey has weight (dropped: {mapped.dropped})")
        intent = SetWeights(
            netuid=self._netuid,
            uids=mapped.uids,
            weights=mapped.weights,
            version_key=self._version_key,
        )
        try:
            result = await self._client.execute(intent, self._signer)
        except Exception as error:  # the chain's refusal, or the way there
            return self._event(
                mapped, int(metagraph.block), False, f"{type(error).__name__}: {error}"
            )
        return self._event(
            mapped,
            _block_of(result, int(metagraph.block)),
            bool(getattr(result, "success", False)),
            str(getattr(result, "message", "")),
            block_hash=getattr(result, "block_hash", None),
            extrinsic_id=getattr(result, "extrinsic_id", None),
        )

    def _event(
        self,
        mapped: MappedWeights,
        block: int | None,
        success: bool,
        message: str,
        *,
        block_hash: str | None = None,
        extrinsic_id: str | None = None,
    ) -> WeightsSubmitted:
        return WeightsSubmitted(
            netuid=self._netuid,
            version_key=self._version_key,
            uids=mapped.uids,
            weights=mapped.weights,
            hotkeys=mapped.hotkeys,
            dropped=mapped.dropped,
            submitted_by=self.hotkey,
            success=success,
            message=message,
            block=block,
            block_hash=block_hash,
            extrinsic_id=extrinsic_id,
        )


def _block_of(result: Any, fallback: int) -> int:
    """The including block from ``extrinsic_id`` ("block-index"), else the metagraph's."""
    extrinsic_id = getattr(result, "extrinsic_id", None)
    if isinstance(extrinsic_id, str) and extrinsic_id.partition("-")[0].isdigit():
        return int(extrinsic_id.partition("-")[0])
    return fallback
