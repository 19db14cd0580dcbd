"""Which network addresses the proxy may send work to.

Miner URLs come from the metagraph, which anyone registered writes. A URL
pointing at loopback, a private network, link-local (cloud metadata) or any
other address that is not globally routable would make the proxy a client
inside its own network, so by default only global addresses are used; a
deployment on one machine (``taskledger dev``) allows the others.

The check is made on the addresses a name resolves to, at connect time, so
a name that resolves to 127.0.0.1 is refused like the literal.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver


class AddressRefused(aiohttp.ClientConnectionError):
    """A peer's address is not one the proxy may connect to."""


def is_global(host: str) -> bool:
    """True for a literal IP address that is globally routable (and not multicast)."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def refuse_literal(host: str) -> None:
    """AddressRefused for an IP literal that is not global (names are checked on resolving)."""
    if is_ip_literal(host) and not is_global(host):
        raise AddressRefused(f"{host} is not a global address")


async def global_address(host: str, port: int) -> str:
    """The first global address ``host`` resolves to, for a TCP connection; else AddressRefused."""
    if is_ip_literal(host):
        refuse_literal(host)
        return host
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as error:
        raise AddressRefused(f"cannot resolve {host}: {error}") from error
    for info in infos:
        address = str(info[4][0])
        if is_global(address):
            return address
    raise AddressRefused(f"{host} resolves to no global address")


class GlobalOnlyResolver(AbstractResolver):
    """aiohttp's default resolver, keeping only global addresses."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = [result for result in results if is_global(result["host"])]
        if not allowed:
            raise OSError(f"{host} resolves to no global address")
        return allowed

    async def close(self) -> None:
        await self._inner.close()
