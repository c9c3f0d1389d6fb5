"""The STUN responder answers from the address it was asked at.

On a host with several addresses, a UDP socket bound to the wildcard gets
requests sent to any of them; an answer sent with a plain ``sendto`` leaves
from whatever address the route back picks, and a NAT (or the STUN client)
drops it. Here: the pure reading and building of the ``IP_PKTINFO`` /
``IPV6_PKTINFO`` records (``gateway.nat.pktinfo``), then the real shell in
two namespaces that reproduce the multi-homed server: a service address on
the server's loopback, reached from a client namespace over a link whose
server end has another address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
from collections.abc import Iterator

import pytest
from aioice import stun

from gateway.nat.pktinfo import IP_PKTINFO, destination, source_ancillary
from gateway.nat.udp import start_stun
from tests.support.netns import IP, NetNamespace, require_netns

pytestmark = [pytest.mark.timeout(60)]

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address


# -- pure ---------------------------------------------------------------------------

def test_ipv4_destination_is_the_local_address_of_the_packet() -> None:
    record = struct.pack("=i4s4s", 7, V4("198.19.0.1").packed, V4("198.19.0.1").packed)
    assert destination([(socket.IPPROTO_IP, IP_PKTINFO, record)]) == (V4("198.19.0.1"), 7)
    # a broadcast's ipi_addr is the broadcast; ipi_spec_dst, the interface's own address, is the one to answer from
    record = struct.pack("=i4s4s", 7, V4("198.19.1.1").packed, V4("198.19.1.255").packed)
    assert destination([(socket.IPPROTO_IP, IP_PKTINFO, record)]) == (V4("198.19.1.1"), 7)


def test_ipv6_destination_and_a_mapped_ipv4_one() -> None:
    record = V6("2001:db8:18::1").packed + struct.pack("=I", 3)
    assert destination([(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, record)]) == (V6("2001:db8:18::1"), 3)
    mapped = V6("::ffff:198.19.0.1").packed + struct.pack("=I", 3)
    assert destination([(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, mapped)]) == (V6("::ffff:198.19.0.1"), 3)


def test_no_or_short_or_other_records_give_no_destination() -> None:
    assert destination([]) is None
    assert destination([(socket.IPPROTO_IP, IP_PKTINFO, b"\0" * 8)]) is None
    assert destination([(socket.SOL_SOCKET, 29, b"\0" * 16)]) is None  # SO_TIMESTAMP
    assert destination([(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, b"\0" * 16)]) is None


def test_the_answer_carries_the_destination_as_its_source_and_lets_routing_pick_the_interface() -> None:
    assert source_ancillary((V4("198.19.0.1"), 7)) == [
        (socket.IPPROTO_IP, IP_PKTINFO, struct.pack("=i4s4s", 0, V4("198.19.0.1").packed, bytes(4)))]
    assert source_ancillary((V6("2001:db8:18::1"), 3)) == [
        (socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, V6("2001:db8:18::1").packed + struct.pack("=I", 0))]
    assert source_ancillary((V6("::ffff:198.19.0.1"), 3)) == [
        (socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, V6("::ffff:198.19.0.1").packed + struct.pack("=I", 0))]
    # a link-local address means nothing without its interface
    assert source_ancillary((V6("fe80::1"), 3)) == [
        (socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, V6("fe80::1").packed + struct.pack("=I", 3))]


def test_no_chosen_source_when_unknown_or_not_an_address_to_answer_from() -> None:
    assert source_ancillary(None) == []
    for address in (V4("224.0.0.1"), V4("255.255.255.255"), V4("0.0.0.0"), V6("ff02::1"), V6("::"),
                    V6("::ffff:224.0.0.1")):
        assert source_ancillary((address, 1)) == [], address


# -- the shell, in two namespaces ---------------------------------------------------------

SERVICE4, SERVICE6 = "198.19.0.1", "2001:db8:19::1"


def _run(*argv: str) -> None:
    import subprocess
    subprocess.run(list(argv), check=True, capture_output=True, timeout=15)


@pytest.fixture
def multihomed() -> Iterator[tuple[NetNamespace, NetNamespace]]:
    """(server, client): the service addresses on the server's loopback; the
    link between them is 198.19.1.1 / 2001:db8:1::1 on the server's end."""
    require_netns()
    server, client = NetNamespace("zsrv"), NetNamespace("zcli")
    try:
        _run(IP, "-n", server.name, "addr", "add", f"{SERVICE4}/32", "dev", "lo")
        _run(IP, "-n", server.name, "addr", "add", f"{SERVICE6}/128", "dev", "lo")
        _run(IP, "-n", server.name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", client.name)
        for ns, v4, v6 in ((server, "198.19.1.1", "2001:db8:1::1"), (client, "198.19.1.2", "2001:db8:1::2")):
            _run(IP, "-n", ns.name, "addr", "add", f"{v4}/24", "dev", "eth0")
            _run(IP, "-n", ns.name, "addr", "add", f"{v6}/64", "dev", "eth0", "nodad")
            _run(IP, "-n", ns.name, "link", "set", "eth0", "up")
        _run(IP, "-n", client.name, "route", "add", f"{SERVICE4}/32", "via", "198.19.1.1")
        _run(IP, "-n", client.name, "-6", "route", "add", f"{SERVICE6}/128", "via", "2001:db8:1::1")
        yield server, client
    finally:
        client.close()
        server.close()


def _wildcard(family: socket.AddressFamily) -> socket.socket:
    """A socket on the wildcard, as a server with one port for all its addresses has
    (the IPv6 one dual-stack); made here, not by the code under test."""
    s = socket.socket(family, socket.SOCK_DGRAM)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
    return s


def _ask(family: socket.AddressFamily, service: str, port: int) -> tuple[str, tuple[str, int]]:
    """One Binding request to ``service``: (the answer's source address, XOR-MAPPED-ADDRESS)."""
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.sendto(bytes(stun.Message(stun.Method.BINDING, stun.Class.REQUEST)), (service, port))
        data, source = s.recvfrom(2048)
        mapped: tuple[str, int] = stun.parse_message(data).attributes["XOR-MAPPED-ADDRESS"]
        return str(source[0]), mapped


@pytest.mark.parametrize(("socket_family", "family", "service"), [
    (socket.AF_INET, socket.AF_INET, SERVICE4),
    (socket.AF_INET6, socket.AF_INET, SERVICE4),
    (socket.AF_INET6, socket.AF_INET6, SERVICE6),
], ids=["ipv4", "dual-stack-ipv4", "dual-stack-ipv6"])
async def test_a_request_to_the_service_address_is_answered_from_it(
        multihomed: tuple[NetNamespace, NetNamespace], socket_family: socket.AddressFamily,
        family: socket.AddressFamily, service: str) -> None:
    server, client = multihomed
    results: list[str] = []
    sock = server.run_inside(lambda: _wildcard(socket_family))
    responder = await start_stun("", 0, results.append, sock=sock)
    port = sock.getsockname()[1]
    try:
        source, mapped = await asyncio.get_running_loop().run_in_executor(
            None, client.run_inside, lambda: _ask(family, service, port))
    finally:
        responder.close()
    assert source == service, f"the answer to {service} came from {source}"
    assert mapped[0] == ("198.19.1.2" if family == socket.AF_INET else "2001:db8:1::2")
    assert results == ["ok"]
