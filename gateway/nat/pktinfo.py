"""Which local address a datagram was sent to, and how to answer from it; pure.

A UDP socket bound to the wildcard address receives datagrams sent to any of
the host's addresses, but a plain ``sendto`` lets the kernel pick the source
of the answer from the route back: on a host with several addresses (a
service address on loopback, several interfaces, IPv4 and IPv6 under one
name) the answer to a request sent to A leaves from B. A NAT has no mapping
for B and drops it, and a STUN client would ignore it anyway. So the shell
(``gateway.nat.udp``) asks the kernel for each datagram's destination
(``IP_PKTINFO`` / ``IPV6_RECVPKTINFO``, ancillary data of ``recvmsg``) and
sends the answer with that address as its source (the same ancillary data
on ``sendmsg``). This module only reads and builds those records.

An IPv6 socket that also receives IPv4 (``IPV6_V6ONLY`` off) reports an IPv4
destination as an IPv4-mapped IPv6 address, and Linux accepts that mapped
address back as the source of an IPv4 answer.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

__all__ = ["ANCILLARY_BYTES", "IP_PKTINFO", "Destination", "destination", "source_ancillary"]

# Linux's value; CPython does not export IP_PKTINFO on every build.
IP_PKTINFO: int = getattr(socket, "IP_PKTINFO", 8)

# struct in_pktinfo { int ipi_ifindex; struct in_addr ipi_spec_dst; struct in_addr ipi_addr; }
_IN_PKTINFO = struct.Struct("=i4s4s")
# struct in6_pktinfo { struct in6_addr ipi6_addr; unsigned int ipi6_ifindex; }
_IN6_PKTINFO = struct.Struct("=16sI")

ANCILLARY_BYTES = socket.CMSG_SPACE(_IN6_PKTINFO.size) + socket.CMSG_SPACE(_IN_PKTINFO.size)

Ancillary = list[tuple[int, int, bytes]]
# The address a datagram was sent to, and the interface it came in by.
Destination = tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]


def destination(ancdata: Ancillary) -> Destination | None:
    """The destination address and arrival interface in ``recvmsg``'s ancillary data, if any."""
    for level, kind, data in ancdata:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= _IN_PKTINFO.size:
            # ipi_spec_dst, not ipi_addr: the local address the datagram is
            # for (the same for unicast; an interface's own for a broadcast).
            ifindex, spec_dst, _addr = _IN_PKTINFO.unpack_from(data)
            return ipaddress.IPv4Address(spec_dst), ifindex
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO and len(data) >= _IN6_PKTINFO.size:
            addr6, ifindex6 = _IN6_PKTINFO.unpack_from(data)
            return ipaddress.IPv6Address(addr6), ifindex6
    return None


def source_ancillary(local: Destination | None) -> Ancillary:
    """Ancillary data for ``sendmsg`` that makes ``local``'s address the answer's source.

    Nothing for an unknown destination or one no answer may come from
    (multicast, broadcast, unspecified): the kernel then chooses, as before.
    The interface is left to the routing table (0), except for IPv6
    link-local addresses, which mean nothing without it.
    """
    if local is None:
        return []
    address, ifindex = local
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else address
    if _no_source(address) or (mapped is not None and _no_source(mapped)):
        return []
    if isinstance(address, ipaddress.IPv4Address):
        return [(socket.IPPROTO_IP, IP_PKTINFO, _IN_PKTINFO.pack(0, address.packed, bytes(4)))]
    oif = ifindex if address.is_link_local else 0
    return [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, _IN6_PKTINFO.pack(address.packed, oif))]


def _no_source(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return address.is_multicast or address.is_unspecified or address == ipaddress.IPv4Address("255.255.255.255")
