"""The client's address, once: trusted proxies, the forwarding headers, and the admin lockout behind real nginx."""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.config import ConfigError, config_from_dict
from gateway.http.client_address import TrustedProxies, client_address, parse_forwarded
from tests.support.cluster import NginxEdge
from tests.support.gateway import GatewayProcess

TOKEN = "admin-token-behind-nginx-7f3k"
NGINX = TrustedProxies(["127.0.0.1/32", "::1/128"])


# -- the pure helper -------------------------------------------------------------------


def test_no_trusted_proxy_means_the_peer_whatever_the_headers() -> None:
    headers = {"X-Forwarded-For": "203.0.113.9", "Forwarded": "for=198.51.100.1"}
    assert client_address("127.0.0.1", headers, TrustedProxies()) == "127.0.0.1"
    # An untrusted peer cannot name someone else either.
    assert client_address("192.0.2.7", headers, NGINX) == "192.0.2.7"


def test_the_rightmost_untrusted_hop_is_the_client() -> None:
    # nginx appends the real peer after whatever the client forged.
    headers = {"X-Forwarded-For": "203.0.113.9, 192.0.2.44"}
    assert client_address("127.0.0.1", headers, NGINX) == "192.0.2.44"
    # A chain of trusted proxies is walked past.
    two = TrustedProxies(["127.0.0.1/32", "10.0.0.0/8"])
    assert client_address("127.0.0.1", {"X-Forwarded-For": "192.0.2.44, 10.1.2.3"}, two) == "192.0.2.44"
    # Every hop trusted: the leftmost is as far as the chain goes.
    assert client_address("127.0.0.1", {"X-Forwarded-For": "10.9.9.9, 10.1.2.3"}, two) == "10.9.9.9"
    # No header from the trusted proxy: the proxy itself.
    assert client_address("127.0.0.1", {}, NGINX) == "127.0.0.1"
    # An entry that is not an address stops the walk at the last one known.
    assert client_address("127.0.0.1", {"X-Forwarded-For": "192.0.2.1, unknown"}, NGINX) == "127.0.0.1"


def test_forwarded_rfc7239_wins_and_parses_ports_quotes_ipv6() -> None:
    assert parse_forwarded('for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8:cafe::17]:4711", by=x') == [
        ip_address("192.0.2.60"), ip_address("2001:db8:cafe::17"), None,
    ]
    headers = {"Forwarded": 'for="[2001:db8:cafe::17]:4711"', "X-Forwarded-For": "192.0.2.1"}
    assert client_address("::1", headers, NGINX) == "2001:db8:cafe::17"
    assert client_address("127.0.0.1", {"Forwarded": "for=192.0.2.60:8080"}, NGINX) == "192.0.2.60"
    assert client_address("127.0.0.1", {"Forwarded": "for=_hidden"}, NGINX) == "127.0.0.1"
    # An IPv4-mapped peer is the IPv4 address, trusted as such.
    assert client_address("::ffff:127.0.0.1", {"X-Forwarded-For": "192.0.2.5"}, NGINX) == "192.0.2.5"


def test_trusted_proxies_must_be_addresses_or_cidrs() -> None:
    assert config_from_dict({"server": {"trusted_proxies": ["127.0.0.1", "10.0.0.0/8", "::1/128"]}})
    with pytest.raises(ConfigError, match=r"server.trusted_proxies\[0\]"):
        config_from_dict({"server": {"trusted_proxies": ["nginx.local"]}})


# -- behind the shipped nginx ------------------------------------------------------------


@pytest.fixture
def behind_nginx(gateway_factory: Any, tmp_path: Path) -> Iterator[tuple[GatewayProcess, NginxEdge]]:
    gw: GatewayProcess = gateway_factory(
        library=None, server={"trusted_proxies": ["127.0.0.1/32"]}, admin={"token": TOKEN}
    )
    edge = NginxEdge(tmp_path, [gw.port])
    edge.start()
    yield gw, edge
    edge.stop()


async def _admin(url: str, source: str, token: str, forged: str | None = None) -> int:
    connector = aiohttp.TCPConnector(local_addr=(source, 0), force_close=True)
    headers = {"Authorization": f"Bearer {token}"}
    if forged is not None:
        headers["X-Forwarded-For"] = forged
    async with aiohttp.ClientSession(connector=connector) as session, \
            session.get(f"{url}/v1/admin/stats", headers=headers) as r:
        await r.read()
        return r.status


async def test_admin_lockout_behind_nginx_is_per_client_address(behind_nginx: tuple[GatewayProcess, NginxEdge]) -> None:
    _gw, edge = behind_nginx
    for i in range(10):
        # A forged X-Forwarded-For does not make the attacker someone else: nginx
        # appends the real address and only nginx is trusted.
        assert await _admin(edge.url, "127.0.0.2", "wrong", forged=f"198.51.100.{i}") == 403
    assert await _admin(edge.url, "127.0.0.2", TOKEN) == 429  # locked out, even with the right token
    assert await _admin(edge.url, "127.0.0.2", TOKEN, forged="198.51.100.200") == 429
    # Another client behind the same nginx still signs in.
    assert await _admin(edge.url, "127.0.0.3", TOKEN) == 200


async def test_forged_forwarding_headers_are_ignored_from_an_untrusted_peer(
    behind_nginx: tuple[GatewayProcess, NginxEdge],
) -> None:
    gw, _edge = behind_nginx
    # Straight to the gateway from 127.0.0.4 (not a trusted proxy): its headers count for nothing.
    for i in range(10):
        assert await _admin(gw.url, "127.0.0.4", "wrong", forged=f"203.0.113.{i}") == 403
    assert await _admin(gw.url, "127.0.0.4", TOKEN, forged="203.0.113.99") == 429
