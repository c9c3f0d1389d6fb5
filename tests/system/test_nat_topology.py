"""The NAT test topologies behave like the routers listeners sit behind.

Checked with the gateway's own STUN responder in the public namespace: an
endpoint-independent NAT maps one source port to one public port whatever
the destination; a symmetric one does not; nobody reaches a LAN unsolicited.
In every topology (``TOPOLOGIES``). Then what only ``office`` (one router,
one public address, no hairpinning) and ``two-isps`` (two access networks)
promise.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterator

import pytest
from aioice import stun

from gateway.nat.udp import start_stun, stun_socket
from tests.support.nat import NETWORKS, PUBLIC_ADDRESS, PUBLIC_ADDRESS6, TOPOLOGIES, NatTopology
from tests.support.netns import NetNamespace, require_netns

pytestmark = [pytest.mark.timeout(60)]


@pytest.fixture(params=TOPOLOGIES)
def topology(request: pytest.FixtureRequest) -> Iterator[NatTopology]:
    require_netns()
    topo = NatTopology(2, nat=["eim", "symmetric"], kind=request.param)
    yield topo
    topo.close()


def mapped_addresses(listener_ns: object, ports: list[int], server: str = PUBLIC_ADDRESS) -> list[tuple[str, int]]:
    """From one UDP socket inside a listener, ask each STUN port what it sees."""

    def ask() -> list[tuple[str, int]]:
        out = []
        family = socket.AF_INET6 if ":" in server else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.settimeout(3)
            for port in ports:
                request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
                s.sendto(bytes(request), (server, port))
                data, source = s.recvfrom(2048)
                assert source[0] == server, f"answered from {source[0]}, asked at {server}"
                reply = stun.parse_message(data)
                out.append(reply.attributes["XOR-MAPPED-ADDRESS"])
        return out

    return listener_ns.run_inside(ask)  # type: ignore[attr-defined, no-any-return]


async def test_eim_keeps_the_mapping_symmetric_does_not_and_lans_are_unreachable(topology: NatTopology) -> None:
    loop = asyncio.get_running_loop()
    results: list[str] = []
    # Two responders in the public namespace, bound as the gateway binds there
    # (the wildcard where it has several addresses), from a thread inside it:
    # the sockets keep the namespace they were made in.
    socks = topology.public.run_inside(lambda: [stun_socket(topology.gateway_host, 0) for _ in range(2)])
    transports = [await start_stun("", 0, results.append, sock=sock) for sock in socks]
    ports = [s.getsockname()[1] for s in socks]
    try:
        eim, symmetric = topology.listeners
        a = await loop.run_in_executor(None, mapped_addresses, eim.ns, ports)
        assert a[0] == a[1] and a[0][0] == eim.wan_address  # one public port for both destinations
        b = await loop.run_in_executor(None, mapped_addresses, symmetric.ns, ports)
        assert b[0][0] == b[1][0] == symmetric.wan_address and b[0][1] != b[1][1]
        assert results.count("ok") == 4
        if topology.kind == "dualstack":
            # IPv6: no NAT, the home's own address, answered from the one asked
            six = await loop.run_in_executor(None, mapped_addresses, eim.ns, ports, PUBLIC_ADDRESS6)
            assert six[0] == six[1] and six[0][0] == eim.address6
        # The public side cannot open anything towards a listener's LAN, nor its router.
        def probe() -> bool:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.settimeout(1)
                try:
                    s.connect((eim.wan_address, 9))
                except (TimeoutError, OSError):
                    return False
                return True

        assert topology.public.run_inside(probe) is False
    finally:
        for t in transports:
            t.close()



def udp_socket(ns: NetNamespace) -> socket.socket:
    """A UDP socket made inside ``ns`` (it keeps that namespace), bound to a free port."""

    def make() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", 0))
        s.settimeout(1)
        return s

    return ns.run_inside(make)


def mapped(s: socket.socket, port: int) -> tuple[str, int]:
    """What the STUN responder on PUBLIC_ADDRESS:``port`` sees of ``s``."""
    s.sendto(bytes(stun.Message(stun.Method.BINDING, stun.Class.REQUEST)), (PUBLIC_ADDRESS, port))
    data, _ = s.recvfrom(2048)
    address: tuple[str, int] = stun.parse_message(data).attributes["XOR-MAPPED-ADDRESS"]
    return address


def arrives(sender: socket.socket, receiver: socket.socket, to: tuple[str, int]) -> bool:
    """Does a datagram ``sender`` sends to ``to`` reach ``receiver``? (a few tries, 1 s each)"""
    for _ in range(3):
        sender.sendto(b"hello", to)
        try:
            data, _ = receiver.recvfrom(64)
        except TimeoutError:
            continue
        if data == b"hello":
            return True
    return False


async def responder(topology: NatTopology) -> tuple[int, asyncio.DatagramTransport]:
    sock = topology.public.run_inside(lambda: stun_socket(topology.gateway_host, 0))
    transport = await start_stun("", 0, lambda _result: None, sock=sock)
    return sock.getsockname()[1], transport


async def test_office_listeners_share_one_address_and_reach_each_other_only_on_the_lan() -> None:
    """One router for the office: one public address, each listener its own port;
    a datagram to a colleague's public mapping is dropped (no hairpinning), one
    to its LAN address arrives."""
    require_netns()
    topology = NatTopology(3, kind="office")
    port, transport = await responder(topology)
    socks: list[socket.socket] = []
    try:
        socks = [udp_socket(listener.ns) for listener in topology.listeners]
        maps = await asyncio.to_thread(lambda: [mapped(s, port) for s in socks])
        wan = topology.listeners[0].wan_address
        assert {address for address, _ in maps} == {wan}
        assert {listener.wan_address for listener in topology.listeners} == {wan}
        assert len({p for _, p in maps}) == 3, maps
        a, b = socks[0], socks[1]
        lan_b = (topology.listeners[1].lan_address, b.getsockname()[1])
        # b opened its mapping towards the STUN responder; an EIM mapping would take a
        # packet from anywhere outside, but a's comes from inside: no hairpin.
        assert not await asyncio.to_thread(arrives, a, b, maps[1])
        assert await asyncio.to_thread(arrives, a, b, lan_b)
        assert len({listener.lan_address for listener in topology.listeners}) == 3
    finally:
        for s in socks:
            s.close()
        transport.close()
        topology.close()


async def test_two_isps_number_homes_from_their_networks_and_route_between_them() -> None:
    """Homes alternate between the two ISPs, each home's public address in its ISP's
    prefix and in a /24 of its own; two homes of different ISPs punch a hole to each
    other through the exchange (the public namespace)."""
    require_netns()
    topology = NatTopology(4, kind="two-isps")
    port, transport = await responder(topology)
    socks: list[socket.socket] = []
    try:
        assert [listener.network for listener in topology.listeners] == ["isp-a", "isp-b", "isp-a", "isp-b"]
        assert topology.networks == {name: [prefix] for name, (prefix, _) in NETWORKS.items()}
        for listener in topology.listeners:
            assert listener.network is not None
            assert ipaddress.ip_address(listener.wan_address) in ipaddress.ip_network(NETWORKS[listener.network][0])
        assert len({listener.wan_address.rsplit(".", 1)[0] for listener in topology.listeners}) == 4
        socks = [udp_socket(listener.ns) for listener in topology.listeners]
        maps = await asyncio.to_thread(lambda: [mapped(s, port) for s in socks])
        assert [address for address, _ in maps] == [listener.wan_address for listener in topology.listeners]
        a, b = socks[0], socks[1]
        # Unsolicited, b's router drops a's datagram; once b has sent towards a's
        # mapping (opening its own), a's next one arrives: hole punching, across ISPs.
        assert not await asyncio.to_thread(arrives, a, b, maps[1])
        b.sendto(b"punch", maps[0])
        assert await asyncio.to_thread(arrives, a, b, maps[1])
    finally:
        for s in socks:
            s.close()
        transport.close()
        topology.close()
