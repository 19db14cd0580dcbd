"""Weights on chain, tested up to bittensor's own ``Client.execute`` (no chain is reachable).

The stand-in client answers the two reads the setter makes (the metagraph and
the subnet's hyperparameters) and records every intent handed to ``execute``:
what would have been signed and sent.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from bittensor.intents.weights import SetWeights

from audit.log_audit import audit_log
from events.ledger import WEIGHTS_STREAM, WeightsSubmitted, ledger_payload
from events.sqlite_log import SqliteEventLog
from miners.weights import Skipped, WeightsSetter
from processors.weights import WeightsProcessor
from projections import Projector, rebuild
from projections.sqlite_store import SqliteReadModelStore
from tests.support.chain_client import (
    BLOCK,
    NETUID,
    VALIDATOR,
    Metagraph,
    Neuron,
    RecordingClient,
    Subnets,
)


def chain(last_update: int = 0, rate_limit: int = 100) -> RecordingClient:
    neurons = [
        Neuron(0, "5Owner"),
        Neuron(3, "5MinerA"),
        Neuron(7, "5MinerB"),
        Neuron(9, VALIDATOR.ss58, last_update),
    ]
    return RecordingClient(Subnets(Metagraph(neurons), rate_limit))


WEIGHTS = {"5MinerB": 0.3, "5MinerA": 0.5, "5Stranger": 0.2}


async def test_hotkeys_map_to_their_uids_and_the_unregistered_are_dropped() -> None:
    client = chain()
    setter = WeightsSetter(client, VALIDATOR.signer, NETUID, version_key=42)
    outcome = await setter.submit(WEIGHTS)
    ((intent, wallet),) = client.executed
    assert isinstance(intent, SetWeights) and wallet is VALIDATOR.signer
    assert (intent.netuid, intent.uids, intent.weights) == (NETUID, [3, 7], [0.5, 0.3])
    assert intent.version_key == 42
    assert isinstance(outcome, WeightsSubmitted)
    assert outcome.dropped == ["5Stranger"] and outcome.hotkeys == ["5MinerA", "5MinerB"]
    assert (outcome.success, outcome.block, outcome.extrinsic_id) == (True, BLOCK + 1, "5001-3")


@pytest.mark.parametrize(("since", "submitted"), [(10, False), (99, False), (100, True)])
async def test_the_subnets_weights_rate_limit_is_respected(since: int, submitted: bool) -> None:
    client = chain(last_update=BLOCK - since, rate_limit=100)
    outcome = await WeightsSetter(client, VALIDATOR.signer, NETUID, 0).submit(WEIGHTS)
    assert bool(client.executed) is submitted
    if not submitted:
        assert isinstance(outcome, Skipped) and "100 blocks" in outcome.reason


async def test_nothing_registered_means_nothing_sent() -> None:
    client = chain()
    outcome = await WeightsSetter(client, VALIDATOR.signer, NETUID, 0).submit({"5Nobody": 1.0})
    assert isinstance(outcome, Skipped) and client.executed == []


class FixedWeights:
    def __init__(self, weights: dict[str, float]) -> None:
        self._weights = weights

    async def weights(self) -> dict[str, float]:
        return dict(self._weights)


async def test_each_submission_and_its_outcome_is_an_event_the_audit_and_projections_accept(
    tmp_path: Path,
) -> None:
    log = SqliteEventLog(tmp_path / "events.db")
    client = chain()
    setter = WeightsSetter(client, VALIDATOR.signer, NETUID, 1)
    processor = WeightsProcessor(
        log,
        FixedWeights(WEIGHTS),
        setter,
        lambda: datetime.now(UTC),  # type: ignore[arg-type]
    )
    assert isinstance(await processor.tick(), WeightsSubmitted)
    client.refuse = RuntimeError("Custom error: 12 (SettingWeightsTooFast)")
    failed = await processor.tick()
    assert isinstance(failed, WeightsSubmitted) and not failed.success
    assert "SettingWeightsTooFast" in failed.message

    stream = await log.read_stream(WEIGHTS_STREAM)
    assert [e.type for e in stream] == ["WeightsSubmitted"] * 2
    events = [ledger_payload(e) for e in stream]
    assert [getattr(e, "success", None) for e in events] == [True, False]
    assert stream[0].version == WeightsSubmitted.VERSION

    report = await audit_log(log)
    assert report.clean, [str(v) for v in report.violations]
    store = SqliteReadModelStore(tmp_path / "readmodels.db")
    await rebuild(log, Projector(store))
    assert await store.get_tasks([WEIGHTS_STREAM]) == {}
    await store.close()
    await log.close()


async def test_a_real_client_is_connected_once_before_its_first_call() -> None:
    from miners.chain_session import ChainSession

    client = chain()
    setter = WeightsSetter(ChainSession(client), VALIDATOR.signer, NETUID, 0)
    await setter.submit(WEIGHTS)
    await setter.submit(WEIGHTS)
    assert client.connects == 1 and len(client.executed) == 2
