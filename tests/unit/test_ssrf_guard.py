"""The SSRF guard of webhook deliveries: which addresses are refused, and where it is applied."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from rased.services.notification.sender import WebhookSender
from rased.services.notification.ssrf import (
    BlockedTarget,
    GuardedResolver,
    check_address,
    check_host,
    forbidden_reason,
)

pytestmark = pytest.mark.timeout(10)

FORBIDDEN = {
    "127.0.0.1": "loopback",
    "127.255.255.254": "loopback",
    "::1": "loopback",
    "10.1.2.3": "private",
    "172.16.0.9": "private",
    "192.168.1.1": "private",
    "169.254.169.254": "link-local",  # cloud metadata
    "fe80::1": "link-local",
    "fc00::1": "unique-local",
    "fd12:3456::1": "unique-local",
    "224.0.0.1": "multicast",
    "ff02::1": "multicast",
    "0.0.0.0": "unspecified",
    "::": "unspecified",
    "::ffff:127.0.0.1": "IPv4-mapped IPv6 address",
    "::ffff:8.8.8.8": "IPv4-mapped IPv6 address",
    "100.64.0.1": "non-global",  # carrier-grade NAT
    "192.0.2.10": "private",  # documentation range
    "255.255.255.255": "private",
    "2002:7f00:1::1": "IPv6 address embedding a loopback one",  # 6to4 of 127.0.0.1
    "64:ff9b::a00:1": "IPv6 address embedding a private one",  # NAT64 of 10.0.0.1
}
PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "2a00:1450:4001::1"]


@pytest.mark.parametrize(("text", "reason"), sorted(FORBIDDEN.items()))
def test_internal_addresses_are_refused(text: str, reason: str) -> None:
    assert forbidden_reason(ipaddress.ip_address(text)) == reason
    with pytest.raises(BlockedTarget, match=reason):
        check_address(text)


@pytest.mark.parametrize("text", PUBLIC)
def test_public_addresses_pass(text: str) -> None:
    assert forbidden_reason(ipaddress.ip_address(text)) is None
    assert str(check_address(text)) == text


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]", "[::ffff:10.0.0.1]", "169.254.169.254"])
def test_address_literals_in_urls_are_checked(host: str) -> None:
    with pytest.raises(BlockedTarget):
        check_host(host)


@pytest.mark.parametrize("host", ["hooks.example.com", "localhost", "8.8.8.8"])
def test_names_are_left_to_the_resolver(host: str) -> None:
    check_host(host)  # a name is checked on what it resolves to


class FixedResolver(AbstractResolver):
    """Answers every name with the same addresses (a DNS server under the test's control)."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host=a,
                port=port,
                family=socket.AF_INET6 if ":" in a else socket.AF_INET,
                proto=0,
                flags=0,
            )
            for a in self.addresses
        ]

    async def close(self) -> None:
        pass


async def test_a_name_with_any_internal_address_is_refused() -> None:
    resolver = GuardedResolver(FixedResolver("93.184.216.34", "10.0.0.5"))
    with pytest.raises(BlockedTarget, match=r"rebind\.example resolves to a private address"):
        await resolver.resolve("rebind.example", 443)


async def test_a_name_with_only_public_addresses_resolves() -> None:
    resolver = GuardedResolver(FixedResolver("93.184.216.34", "2606:4700:4700::1111"))
    found = await resolver.resolve("hooks.example", 443)
    assert [r["host"] for r in found] == ["93.184.216.34", "2606:4700:4700::1111"]


async def test_localhost_is_refused_after_real_resolution() -> None:
    with pytest.raises(BlockedTarget, match="loopback"):
        await GuardedResolver().resolve("localhost", 80)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://[::1]:9/hook",
        "http://[::ffff:127.0.0.1]:9/hook",
        "https://169.254.169.254/latest/meta-data",
    ],
)
async def test_the_sender_refuses_internal_targets_without_connecting(url: str) -> None:
    sender = WebhookSender(timeout_s=2)
    try:
        answer = await sender.send(url, {}, b"{}", allow_private=False)
    finally:
        await sender.close()
    assert answer.status_code == 0
    assert answer.error.startswith("blocked target: ")
