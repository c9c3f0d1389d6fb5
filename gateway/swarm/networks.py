"""Where a listener is: its LAN and its network, from its client address.

Theory of operation
-------------------

Peers in one network are each other's cheapest sources: bytes between two
listeners of one ISP (or one campus, one office) never cross a transit
link, and bytes between two listeners behind one NAT never leave the
building. So the tracker prefers candidates near the asker
(``gateway/swarm/tracker.py``), and the metrics say how much P2P traffic
stayed near (``scope``, docs/metrics.md). This module only classifies; it
keeps no state and does no I/O once built.

A listener's ``Place`` has two keys, each ``None`` when unknown:

- ``lan``: the client address itself (IPv4, an IPv4-mapped IPv6 address
  unmapped), or its IPv6 /64. Listeners behind one NAT (a household, an
  office, a campus) share their public IPv4 address; IPv6 has no NAT, and a
  home's hosts share its /64 instead.
- ``network``: the operator's name for the most specific prefix of
  ``[p2p.networks]`` that holds the address (``"net:<name>"``), else its
  autonomous system from the ASN database (``"as:<number>"``), else
  ``None``. Configured prefixes win over the database: the operator knows
  their own networks (a campus inside a national research network's AS, a
  customer prefix announced by its ISP's AS).

``scope(a, b)`` of two places is ``same_lan`` (the same ``lan`` key),
``same_network`` (the same ``network``), ``other``, or ``unknown`` when
either place is unknown (no address: a shadow peer of another cluster node,
a Unix socket).

The ASN database is a MaxMind DB file (GeoLite2-ASN, DB-IP's ASN Lite and
compatible ones, whose records carry ``autonomous_system_number``; IPinfo's
``asn: "AS123"`` too), read with ``maxminddb`` (``MMDB_MODE_AUTO``: memory
mapped, or the C extension). It is opened once at start-up and never
downloaded: the operator updates the file and restarts. ``AsnDatabase``
is the only place that library's exceptions are seen: a file that cannot
be opened is a ``ConfigError`` at start-up; a lookup that fails (a corrupt
record) is no network.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..metrics import PEER_SCOPES

__all__ = ["Place", "Networks", "AsnDatabase", "SCOPES", "UNKNOWN_PLACE", "scope", "lan_key", "parse_address"]

# ``ztream_peer_bytes_total{scope}``'s values, nearest first.
SCOPES = PEER_SCOPES

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Place:
    """A listener's LAN key and network key (see the module docstring)."""

    lan: str | None
    network: str | None = None


UNKNOWN_PLACE = Place(None, None)


def scope(a: Place, b: Place) -> str:
    """How near ``b`` is to ``a``: one of ``SCOPES``."""
    if a.lan is None or b.lan is None:
        return "unknown"
    if a.lan == b.lan:
        return "same_lan"
    if a.network is not None and a.network == b.network:
        return "same_network"
    return "other"


def parse_address(address: str | None) -> _Address | None:
    """An address as the network layer sees it (zone dropped, IPv4-mapped IPv6 as IPv4); None if unreadable."""
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def lan_key(address: str | None) -> str | None:
    """The LAN key of a client address: the IPv4 address, or the IPv6 /64; None if unreadable."""
    ip = parse_address(address)
    if ip is None:
        return None
    if ip.version == 4:
        return str(ip)
    return str(ipaddress.ip_network(f"{ip}/64", strict=False))


class Networks:
    """The classifier: ``place(address)``.

    ``prefixes``: network name -> CIDRs (``[p2p.networks]``); ``asn``: a
    function from an address to its AS number or None (``AsnDatabase.asn``),
    or None for no database.
    """

    __slots__ = ("_lengths", "_asn")

    def __init__(self, prefixes: Mapping[str, Iterable[str]] | None = None,
                 asn: Callable[[_Address], int | None] | None = None) -> None:
        # (version, prefix length) -> {network: name}, most specific first: a
        # look-up costs one dict probe per prefix length in use, however many
        # prefixes an operator lists (an ISP's customer ranges run to thousands).
        tables: dict[tuple[int, int], dict[_Network, str]] = {}
        for name in sorted(prefixes or {}):
            for cidr in (prefixes or {})[name]:
                net = ipaddress.ip_network(cidr, strict=False)
                # A prefix under two names belongs to the first name in order.
                tables.setdefault((net.version, net.prefixlen), {}).setdefault(net, name)
        self._lengths = tuple(sorted(tables.items(), key=lambda kv: -kv[0][1]))
        self._asn = asn

    def __bool__(self) -> bool:
        """Whether any network can be told apart (prefixes or a database)."""
        return bool(self._lengths) or self._asn is not None

    def place(self, address: str | None) -> Place:
        """Where a client at ``address`` is; ``UNKNOWN_PLACE`` for no address or one unreadable."""
        ip = parse_address(address)
        if ip is None:
            return UNKNOWN_PLACE
        return Place(lan_key(str(ip)), self.network(ip))

    def network(self, ip: _Address) -> str | None:
        """The network key of ``ip`` (``net:<name>``, ``as:<number>``), or None."""
        for (version, length), table in self._lengths:
            if version == ip.version:
                name = table.get(ipaddress.ip_network(f"{ip}/{length}", strict=False))
                if name is not None:
                    return f"net:{name}"
        if self._asn is not None:
            number = self._asn(ip)
            if number is not None:
                return f"as:{number}"
        return None


def _asn_of(record: Any) -> int | None:
    """An AS number from one database record, whichever vendor's shape it has."""
    if not isinstance(record, dict):
        return None
    number = record.get("autonomous_system_number")
    if isinstance(number, int) and not isinstance(number, bool) and number > 0:
        return number
    text = record.get("asn")  # IPinfo: "AS13335"
    if isinstance(text, str) and text[:2].upper() == "AS" and text[2:].isdigit():
        return int(text[2:])
    return None


class AsnDatabase:
    """A MaxMind DB file of autonomous systems, opened once (``p2p.asn_database``).

    Raises ``ValueError`` (with the path) when the file cannot be opened or
    is not a MaxMind DB.
    """

    def __init__(self, path: str | Path) -> None:
        import maxminddb  # only a gateway configured with a database needs the library loaded

        self.path = Path(path).expanduser()
        try:
            self._reader = maxminddb.open_database(str(self.path))
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            raise ValueError(f"{self.path}: not a readable MaxMind DB file ({exc})") from None
        self.database_type: str = self._reader.metadata().database_type
        self._errors: tuple[type[Exception], ...] = (maxminddb.InvalidDatabaseError, ValueError)

    def asn(self, ip: _Address) -> int | None:
        """The AS number of ``ip``, or None (not in the database, or a record unreadable)."""
        try:
            record = self._reader.get(ip)
        except self._errors:
            return None
        return _asn_of(record)

    def close(self) -> None:
        self._reader.close()
