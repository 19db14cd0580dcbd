"""MetagraphDirectory over real bittensor ``Metagraph`` objects, built without a chain."""

import asyncio
import socket
import time
from collections.abc import Callable

import pytest
from bittensor import Balance, Metagraph, MetagraphNeuron

from miners.directory import CAPABILITIES, MinerInfo
from miners.metagraph_directory import (
    ChainMetagraphFetch,
    DirectoryUnavailable,
    MetagraphDirectory,
    axon_url,
)

ALICE = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
BOB = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"
CHARLIE = "5FLSigC9HGRKVhB9FiEo4Y3koPsNmBmLJbpXg2mp1hXcS59Y"
DAVE = "5DAAnrj7VHTznn2AWBemMuyBwZWs6FNFjdyVXUeYum3PTXFy"
EVE = "5HGjWAeFDfFCWPsjFQdVV2Msvz2XtMktvgocEZcCj68kUMaw"


def _neuron(uid: int, hotkey: str, axon: str | None, *, permit: bool = False) -> MetagraphNeuron:
    zero = Balance.from_rao(0)
    return MetagraphNeuron(
        uid=uid,
        hotkey=hotkey,
        coldkey=hotkey,
        active=True,
        validator_permit=permit,
        last_update=0,
        block_at_registration=0,
        rank=0.0,
        trust=0.0,
        consensus=0.0,
        incentive=0.0,
        dividends=0.0,
        pruning_score=0.0,
        emission=zero,
        alpha_stake=zero,
        tao_stake=zero,
        total_stake=zero,
        axon=axon,
        identity=None,
        commitment=None,
    )


def _metagraph(block: int, neurons: list[MetagraphNeuron]) -> Metagraph:
    return Metagraph(
        netuid=7,
        mechid=0,
        name="taskledger-test",
        symbol="t",
        block=block,
        tempo=360,
        last_step=0,
        blocks_since_last_step=0,
        owner_hotkey=ALICE,
        owner_coldkey=ALICE,
        network_registered_at=0,
        num_uids=len(neurons),
        max_uids=256,
        price=None,
        moving_price=None,
        identity=None,
        neurons=neurons,
        commitments={},
        unregistered_commitments={},
        raw={},
    )


SUBNET = _metagraph(
    100,
    [
        _neuron(0, ALICE, "10.0.0.1:8091"),
        _neuron(1, BOB, None, permit=True),  # validator serving nothing
        _neuron(2, CHARLIE, "0.0.0.0:8091"),  # registered, not served
        _neuron(3, DAVE, "[2001:db8::7]:9000", permit=True),
        _neuron(4, EVE, "10.0.0.5:0"),
    ],
)


class Fetcher:
    """A ``fetch`` answering from a script of metagraphs and failures."""

    def __init__(self, *answers: Metagraph | Exception) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def __call__(self) -> Metagraph:
        self.calls += 1
        await asyncio.sleep(0)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _eventually(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(2):
        while not condition():
            await asyncio.sleep(0.001)


async def test_miners_are_the_served_axons_and_validators_the_permits() -> None:
    directory = MetagraphDirectory(Fetcher(SUBNET))

    assert await directory.miners() == [
        MinerInfo(ALICE, "http://10.0.0.1:8091", CAPABILITIES, uid=0),
        MinerInfo(DAVE, "http://[2001:db8::7]:9000", CAPABILITIES, uid=3),
    ]
    assert await directory.validators() == frozenset({BOB, DAVE})
    assert directory.block == 100


async def test_configured_capabilities_and_exclusions() -> None:
    directory = MetagraphDirectory(
        Fetcher(SUBNET),
        default_capabilities=frozenset({"summarization"}),
        capabilities={DAVE: frozenset({"tts"})},
        exclude_hotkeys=[ALICE],
    )
    assert await directory.miners() == [
        MinerInfo(DAVE, "http://[2001:db8::7]:9000", frozenset({"tts"}), uid=3)
    ]


@pytest.mark.parametrize(
    ("axon", "url"),
    [
        ("1.2.3.4:8091", "http://1.2.3.4:8091"),
        ("[::1]:80", "http://[::1]:80"),
        (None, None),
        ("", None),
        ("0.0.0.0:8091", None),
        ("[::]:8091", None),
        ("1.2.3.4:0", None),
        ("1.2.3.4:70000", None),
        ("miner.example.org:8091", None),
        ("1.2.3.4", None),
    ],
)
def test_axon_url(axon: str | None, url: str | None) -> None:
    assert axon_url(axon) == url


def test_axon_format_matches_what_bittensor_decodes_from_the_chain() -> None:
    # Pins our parser to bittensor's own decoding of runtime axon records
    # (integer IPs), through its private builder: if this breaks, the format
    # of MetagraphNeuron.axon changed.
    from bittensor.metagraph import _build

    graph = {
        "hotkeys": [ALICE, BOB, CHARLIE],
        "coldkeys": [ALICE, BOB, CHARLIE],
        "axons": [
            {"ip": 0x0A000001, "port": 8091, "ip_type": 4},
            {"ip": 1, "port": 9000, "ip_type": 6},
            {"ip": 0, "port": 0, "ip_type": 4},
        ],
        "validator_permit": [False, True, False],
        "block": 5,
        "tempo": 360,
        "last_step": 0,
        "blocks_since_last_step": 0,
        "owner_hotkey": ALICE,
        "owner_coldkey": ALICE,
        "network_registered_at": 0,
    }
    metagraph = _build(7, graph, {})
    assert [axon_url(n.axon) for n in metagraph.neurons] == [
        "http://10.0.0.1:8091",
        "http://[::1]:9000",
        None,
    ]


async def test_concurrent_first_callers_share_one_fetch() -> None:
    fetch = Fetcher(SUBNET)
    directory = MetagraphDirectory(fetch)
    results = await asyncio.gather(*(directory.miners() for _ in range(10)))
    assert fetch.calls == 1
    assert all(result == results[0] for result in results)


async def test_refreshes_in_the_background_after_refresh_seconds() -> None:
    newer = _metagraph(200, [_neuron(0, EVE, "10.0.0.9:1")])
    fetch, clock = Fetcher(SUBNET, newer), Clock()
    directory = MetagraphDirectory(fetch, refresh_seconds=60, clock=clock)
    await directory.miners()

    clock.now += 59
    await directory.miners()
    assert fetch.calls == 1

    clock.now += 1
    # The stale snapshot answers at once; the refresh happens behind it.
    assert [m.hotkey for m in await directory.miners()] == [ALICE, DAVE]
    await _eventually(lambda: directory.block == 200)
    assert [m.hotkey for m in await directory.miners()] == [EVE]
    assert await directory.validators() == frozenset()
    assert fetch.calls == 2
    await directory.close()


async def test_failed_refresh_keeps_the_last_snapshot_and_retries_later() -> None:
    newer = _metagraph(200, [])
    fetch, clock = Fetcher(SUBNET, OSError("rpc down"), newer), Clock()
    directory = MetagraphDirectory(fetch, refresh_seconds=60, retry_seconds=5, clock=clock)
    await directory.miners()

    clock.now += 60
    await directory.miners()
    await _eventually(lambda: fetch.calls == 2)
    await asyncio.sleep(0.01)
    assert directory.block == 100
    assert len(await directory.miners()) == 2  # within retry_seconds: no new fetch
    assert fetch.calls == 2

    clock.now += 5
    await directory.miners()
    await _eventually(lambda: directory.block == 200)
    await directory.close()


async def test_no_snapshot_yet_is_unavailable_and_does_not_hammer_the_chain() -> None:
    fetch, clock = Fetcher(ConnectionRefusedError("nope"), SUBNET), Clock()
    directory = MetagraphDirectory(fetch, retry_seconds=5, clock=clock)

    with pytest.raises(DirectoryUnavailable, match="ConnectionRefusedError"):
        await directory.miners()
    with pytest.raises(DirectoryUnavailable):
        await directory.validators()
    assert fetch.calls == 1

    clock.now += 5
    assert await directory.validators() == frozenset({BOB, DAVE})


async def test_a_hanging_fetch_times_out() -> None:
    async def hang() -> Metagraph:
        await asyncio.sleep(60)
        raise AssertionError("unreachable")

    directory = MetagraphDirectory(hang, fetch_timeout_seconds=0.05)
    started = time.monotonic()
    with pytest.raises(DirectoryUnavailable, match="TimeoutError"):
        await directory.miners()
    assert time.monotonic() - started < 1


async def test_chain_fetch_without_a_reachable_chain_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    fetch = ChainMetagraphFetch(f"ws://127.0.0.1:{port}", netuid=7)
    directory = MetagraphDirectory(fetch, fetch_timeout_seconds=10)
    with pytest.raises(DirectoryUnavailable, match="connect"):
        await directory.miners()
    await fetch.close()
