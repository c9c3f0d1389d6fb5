"""The NAT test topology behaves like the routers listeners sit behind.

Checked with the gateway's own STUN responder in the public namespace: an
endpoint-independent NAT maps one source port to one public port whatever
the destination; a symmetric one does not; nobody reaches a LAN unsolicited.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest
from aioice import stun

from gateway.nat.udp import start_stun, stun_socket
from tests.support.nat import PUBLIC_ADDRESS, PUBLIC_ADDRESS6, TOPOLOGIES, NatTopology
from tests.support.netns import require_netns

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

