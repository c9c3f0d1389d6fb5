"""Who is asking: the client's address, decided once, for every limit, lockout, log line and metric.

A gateway behind a reverse proxy (deploy/nginx/ztream.conf) sees every
client as the proxy's address. The proxy says who it forwarded for in
``X-Forwarded-For`` or ``Forwarded`` (RFC 7239), but so can anyone else:
those headers are believed only as far as they were written by a proxy the
operator trusts (``server.trusted_proxies``).

``client_address(peer, headers, trusted)`` is pure. It starts from the TCP
peer; while that hop is a trusted proxy, it steps one entry to the left in
the forwarding chain (each proxy appends the address it received the
connection from, so the rightmost entries are the most trustworthy). The
first hop that is not a trusted proxy is the client; when the chain runs
out, or an entry does not parse, the last address reached is the client.
So a client that forges ``X-Forwarded-For: 1.2.3.4`` through nginx is still
seen as itself: nginx appends the real address after the forged one, and
only nginx is trusted.

``Forwarded`` wins over ``X-Forwarded-For`` when a request has both. With no
trusted proxies (the default) the headers are never read.

``request_client(request)`` is the shell: the address for an aiohttp
request, cached on the request.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

from aiohttp import web

__all__ = ["TRUSTED_PROXIES", "TrustedProxies", "client_address", "parse_forwarded", "request_client"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class TrustedProxies:
    """The CIDRs of ``server.trusted_proxies``; ``in`` tells whether an address is one of them."""

    __slots__ = ("networks",)

    def __init__(self, cidrs: Iterable[str] = ()) -> None:
        self.networks: tuple[_Network, ...] = tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            return False
        address = _unmapped(address)
        return any(address.version == n.version and address in n for n in self.networks)


def _unmapped(address: _Address) -> _Address:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _parse_node(node: str) -> _Address | None:
    """One hop: ``1.2.3.4``, ``1.2.3.4:80``, ``[2001:db8::1]:80``, ``2001:db8::1``, quoted or not."""
    node = node.strip().strip('"').strip()
    if node.startswith("["):
        end = node.find("]")
        if end < 0:
            return None
        node = node[1:end]
    elif node.count(":") == 1:  # IPv4 with a port
        node = node.split(":", 1)[0]
    node = node.split("%", 1)[0]  # a zone id says nothing about who asked
    try:
        return _unmapped(ipaddress.ip_address(node))
    except ValueError:
        return None  # "unknown", an obfuscated identifier, junk


def parse_forwarded(value: str) -> list[_Address | None]:
    """The ``for=`` of each element of a ``Forwarded`` header (RFC 7239), left to right.

    An element without ``for=`` or with one that is not an address gives ``None``.
    """
    hops: list[_Address | None] = []
    for element in value.split(","):
        found: _Address | None = None
        for pair in element.split(";"):
            name, _, val = pair.partition("=")
            if name.strip().lower() == "for":
                found = _parse_node(val)
        hops.append(found)
    return hops


def _chain(headers: Mapping[str, str]) -> list[_Address | None] | None:
    forwarded = headers.get("Forwarded")
    if forwarded is not None:
        return parse_forwarded(forwarded)
    xff = headers.get("X-Forwarded-For")
    if xff is not None:
        return [_parse_node(part) for part in xff.split(",")]
    return None


def client_address(peer: str | None, headers: Mapping[str, str], trusted: TrustedProxies) -> str:
    """The client's address for a connection from ``peer`` that sent ``headers``.

    ``peer`` is the TCP peer's address (``None`` or junk: ``"unknown"``).
    """
    if peer is None:
        return "unknown"
    try:
        current = _unmapped(ipaddress.ip_address(peer.split("%", 1)[0]))
    except ValueError:
        return peer  # a Unix socket path or the like: nothing to resolve
    if not trusted or current not in trusted:
        return str(current)
    chain = _chain(headers)
    if not chain:
        return str(current)
    for hop in reversed(chain):
        if hop is None:
            break  # an entry we cannot read: trust stops at the last address known
        current = hop
        if current not in trusted:
            break
    return str(current)


TRUSTED_PROXIES = web.AppKey("trusted_proxies", TrustedProxies)
_CLIENT = web.RequestKey("client_address", str)


def request_client(request: web.BaseRequest) -> str:
    """The client address of ``request`` (computed once per request)."""
    if _CLIENT in request:
        return request[_CLIENT]
    # config_dict: the app's keys and its parents' (a sub-application sees the root's).
    # Before routing (aiohttp's own error answers) there is no app to ask: the peer it is.
    trusted = None
    if isinstance(request, web.Request) and request.match_info is not None:
        trusted = request.config_dict.get(TRUSTED_PROXIES)
    address = client_address(request.remote, request.headers, trusted or _NONE)
    request[_CLIENT] = address
    return address


_NONE = TrustedProxies()
