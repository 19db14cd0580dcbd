"""The miner directory read from a subnet's metagraph.

Miners are the neurons serving an axon; validators are the neurons holding a
validator permit. The metagraph is fetched once on first use and then kept
fresh in the background: a caller never waits on the chain except for the
very first snapshot, and a failed refresh keeps the last good one.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from bittensor import Client, Metagraph

from miners.directory import CAPABILITIES, MinerInfo

_log = logging.getLogger(__name__)

MetagraphFetch = Callable[[], Awaitable[Metagraph]]


class DirectoryUnavailable(Exception):
    """No metagraph could be fetched yet, so there is no directory to answer from."""


@dataclass(frozen=True, slots=True)
class _Snapshot:
    block: int
    miners: tuple[MinerInfo, ...]
    validators: frozenset[str]


class MetagraphDirectory:
    """A :class:`~miners.directory.MinerDirectory` over a metagraph from ``fetch``.

    Every miner gets ``default_capabilities`` unless ``capabilities`` names
    its hotkey. ``exclude_hotkeys`` keeps served axons that are not miners
    (the proxy's own, say) out of the miner list. When a snapshot is older
    than ``refresh_seconds`` the next call starts a background refresh and
    answers from the old snapshot meanwhile; after a failed refresh the next
    attempt waits ``retry_seconds``.
    """

    def __init__(
        self,
        fetch: MetagraphFetch,
        *,
        refresh_seconds: float = 300.0,
        retry_seconds: float = 30.0,
        fetch_timeout_seconds: float = 60.0,
        default_capabilities: frozenset[str] = CAPABILITIES,
        capabilities: Mapping[str, frozenset[str]] | None = None,
        exclude_hotkeys: Iterable[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._refresh_seconds = refresh_seconds
        self._retry_seconds = retry_seconds
        self._fetch_timeout = fetch_timeout_seconds
        self._default_capabilities = default_capabilities
        self._capabilities = dict(capabilities or {})
        self._exclude = frozenset(exclude_hotkeys)
        self._clock = clock
        self._snapshot: _Snapshot | None = None
        self._last_error: str | None = None
        self._next_refresh = 0.0
        self._first_fetch = asyncio.Lock()
        self._refreshing: asyncio.Task[None] | None = None

    @property
    def block(self) -> int | None:
        """The block of the current snapshot, None before the first one."""
        return self._snapshot.block if self._snapshot else None

    async def miners(self) -> list[MinerInfo]:
        return list((await self._current()).miners)

    async def validators(self) -> frozenset[str]:
        return (await self._current()).validators

    async def refresh(self) -> None:
        """Fetch the metagraph now and replace the snapshot; raises DirectoryUnavailable."""
        try:
            async with asyncio.timeout(self._fetch_timeout):
                metagraph = await self._fetch()
        except Exception as error:
            self._next_refresh = self._clock() + self._retry_seconds
            self._last_error = f"cannot fetch the metagraph: {error!r}"
            raise DirectoryUnavailable(self._last_error) from error
        self._snapshot = self._build(metagraph)
        self._last_error = None
        self._next_refresh = self._clock() + self._refresh_seconds

    async def close(self) -> None:
        """Stop a refresh in flight."""
        if self._refreshing is not None:
            self._refreshing.cancel()
            await asyncio.gather(self._refreshing, return_exceptions=True)

    async def _current(self) -> _Snapshot:
        snapshot = self._snapshot
        if snapshot is None:
            return await self._first_snapshot()
        if self._clock() >= self._next_refresh and (
            self._refreshing is None or self._refreshing.done()
        ):
            self._refreshing = asyncio.create_task(self._refresh_in_background())
        return snapshot

    async def _first_snapshot(self) -> _Snapshot:
        # One fetch at a time; callers arriving while a recent one failed get
        # its error at once instead of each waiting out another timeout.
        async with self._first_fetch:
            if self._snapshot is None:
                if self._last_error is not None and self._clock() < self._next_refresh:
                    raise DirectoryUnavailable(self._last_error)
                await self.refresh()
            assert self._snapshot is not None
            return self._snapshot

    async def _refresh_in_background(self) -> None:
        try:
            await self.refresh()
        except DirectoryUnavailable as error:
            _log.warning("metagraph refresh failed, keeping block %s: %s", self.block, error)

    def _build(self, metagraph: Metagraph) -> _Snapshot:
        miners = []
        for neuron in metagraph.neurons:
            url = axon_url(neuron.axon)
            if url is None or neuron.hotkey in self._exclude:
                continue
            capabilities = self._capabilities.get(neuron.hotkey, self._default_capabilities)
            miners.append(
                MinerInfo(hotkey=neuron.hotkey, url=url, capabilities=capabilities, uid=neuron.uid)
            )
        validators = frozenset(n.hotkey for n in metagraph.neurons if n.validator_permit)
        return _Snapshot(block=metagraph.block, miners=tuple(miners), validators=validators)


def axon_url(axon: str | None) -> str | None:
    """``http://ip:port`` for a served axon (``ip:port`` or ``[ipv6]:port``), else None.

    Unserved axons (None, an unspecified address, port 0) and anything that
    does not parse as an address are None: they cannot take work.
    """
    if not axon:
        return None
    host, _, port_text = axon.rpartition(":")
    try:
        address = ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
        port = int(port_text)
    except ValueError:
        return None
    if address.is_unspecified or not 0 < port < 65536:
        return None
    host = f"[{address}]" if address.version == 6 else str(address)
    return f"http://{host}:{port}"


class ChainMetagraphFetch:
    """The ``fetch`` for a :class:`MetagraphDirectory` that reads a subnet from the chain.

    ``network`` is a bittensor network name (``finney``, ``test``, ``local``)
    or a ``ws(s)://`` endpoint. Connects on first use; ``close`` when done.
    """

    def __init__(self, network: str, netuid: int) -> None:
        self._client = Client(network)
        self._netuid = netuid
        self._connected = False

    async def __call__(self) -> Metagraph:
        if not self._connected:
            await self._client.connect()
            self._connected = True
        metagraph = await self._client.subnets.metagraph(self._netuid, commitments=False)
        if metagraph is None:
            raise LookupError(f"subnet {self._netuid} does not exist on {self._client.network}")
        return metagraph

    async def close(self) -> None:
        if self._connected:
            await self._client.close()
            self._connected = False
