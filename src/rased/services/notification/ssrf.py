"""SSRF guard for webhook deliveries: refuse addresses inside our own networks.

Checked at delivery time, on the addresses a name resolves to (every one of them), and the
connection goes to a checked address: aiohttp connects to what `GuardedResolver` returned,
so a DNS answer cannot change between the check and the connection. URLs naming an address
directly do not reach a resolver in aiohttp, so `check_host` checks those first.
"""

from __future__ import annotations

import ipaddress
import socket

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# NAT64 (RFC 6052) embeds an IPv4 address the translator connects to.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class BlockedTarget(Exception):
    """A webhook URL leads to an address deliveries may not reach."""


def forbidden_reason(address: IPAddress) -> str | None:
    """Return why deliveries may not go to this address, or None when it is public."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return "IPv4-mapped IPv6 address"
        embedded = (
            address.sixtofour
            or (address.teredo[1] if address.teredo else None)
            or (ipaddress.IPv4Address(int(address) & 0xFFFFFFFF) if address in _NAT64 else None)
        )
        if embedded is not None and (reason := forbidden_reason(embedded)) is not None:
            return f"IPv6 address embedding a {reason} one"
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        (
            "unique-local",
            isinstance(address, ipaddress.IPv6Address)
            and address in ipaddress.ip_network("fc00::/7"),
        ),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        # Carrier-grade NAT, benchmarking, documentation and other special-purpose ranges.
        ("non-global", not address.is_global),
    )
    for reason, matched in checks:
        if matched:
            return reason
    return None


def check_address(text: str) -> IPAddress:
    """Return the parsed address; raise BlockedTarget when deliveries may not go there."""
    address = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone id
    reason = forbidden_reason(address)
    if reason is not None:
        raise BlockedTarget(f"{reason} address {address}")
    return address


def check_host(host: str) -> None:
    """Raise BlockedTarget when `host` is an address literal deliveries may not reach."""
    literal = host.strip("[]")
    try:
        ipaddress.ip_address(literal.split("%", 1)[0])
    except ValueError:
        return  # a name: GuardedResolver checks what it resolves to
    check_address(literal)


class GuardedResolver(AbstractResolver):
    """Resolves names, then refuses the name if any of its addresses is forbidden.

    Refusing on any (not only dropping the bad ones) keeps a name that mixes public and
    internal addresses from reaching the internal ones on a retry or a happy-eyeballs race.
    """

    def __init__(self, resolver: AbstractResolver | None = None) -> None:
        self._resolver = resolver or ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Return the name's addresses, all checked; raise BlockedTarget otherwise."""
        results = await self._resolver.resolve(host, port, family)
        for result in results:
            try:
                check_address(result["host"])
            except BlockedTarget as exc:
                raise BlockedTarget(f"{host} resolves to a {exc}") from None
        return results

    async def close(self) -> None:
        """Close the wrapped resolver."""
        await self._resolver.close()
