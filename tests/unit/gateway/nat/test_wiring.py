"""The gateway's NAT traversal, wired: STUN on UDP beside HTTP, the ice
servers in ``welcome``, TURN credentials per peer, ``min_listeners`` and the
connection outcomes players report (docs/p2p.md).

A real app on loopback (aiohttp's TestServer), a real UDP STUN client
(aioice's codec), the real /metrics.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import socket
import time
from typing import Any

import pytest
from aioice import stun

from gateway.config import ConfigError
from gateway.nat.service import IcePlan, stun_port
from protocol.limits import TURN_BURST

# make_gateway is test_control's fixture (a bare app, no sources); pytest finds it by name here.
from tests.unit.gateway.swarm.test_control_socket import connect

T, R = "track1", "rend1"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def binding(port: int) -> tuple[str, int]:
    """One STUN Binding request to 127.0.0.1:``port``; the XOR-MAPPED-ADDRESS answered."""
    loop = asyncio.get_running_loop()
    got: asyncio.Future[bytes] = loop.create_future()

    class Receiver(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: object) -> None:
            if not got.done():
                got.set_result(data)

    client, _ = await loop.create_datagram_endpoint(Receiver, local_addr=("127.0.0.1", 0))
    try:
        request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST,
                               transaction_id=os.urandom(12))
        client.sendto(bytes(request), ("127.0.0.1", port))
        reply = stun.parse_message(await asyncio.wait_for(got, 5))
        assert reply.transaction_id == request.transaction_id
        assert len(bytes(reply)) <= len(bytes(request)) + 12, "the answer may outgrow the request by 12 bytes at most"
        mapped: tuple[str, int] = reply.attributes["XOR-MAPPED-ADDRESS"]
        assert mapped == client.get_extra_info("sockname")
        return mapped
    finally:
        client.close()


async def test_the_gateway_answers_stun_and_advertises_it(make_gateway: Any) -> None:
    port = free_udp_port()
    gw = await make_gateway(library=None, p2p={"stun_port": port})
    peer = await connect(gw)
    assert peer.welcome["ice_servers"] == [{"urls": [f"stun:127.0.0.1:{port}"]}]
    await binding(port)
    await binding(port)
    text = await (await gw.get("/metrics")).text()
    assert 'ztream_stun_requests_total{result="ok"} 2.0' in text
    assert 'ztream_stun_requests_total{result="ignored"} 0.0' in text


async def test_the_default_stun_port_is_the_http_ports_number(make_config: Any) -> None:
    config = make_config(server={"port": 8123})
    assert config.p2p.stun_port == -1 and stun_port(config) == 8123
    assert stun_port(make_config(server={"port": 8123}, p2p={"stun_port": 0})) == 0


async def test_public_url_host_is_advertised(make_config: Any) -> None:
    plan = IcePlan(make_config(server={"public_url": "https://radio.example.org"}))
    plan.stun_listening(3478)
    assert plan.for_peer("p") == ({"urls": ["stun:radio.example.org:3478"]},)
    v6 = IcePlan(make_config(server={"host": "::1", "port": 9000}))
    v6.stun_listening(9000)
    assert v6.for_peer("p") == ({"urls": ["stun:[::1]:9000"]},)


async def test_configured_ice_servers_replace_the_built_in_stun(make_gateway: Any) -> None:
    port = free_udp_port()
    ice = [{"urls": "stun:stun.example.org:3478"}]
    gw = await make_gateway(library=None, p2p={"stun_port": port, "ice_servers": ice})
    assert (await connect(gw)).welcome["ice_servers"] == ice


async def test_stun_port_zero_is_off(make_gateway: Any) -> None:
    gw = await make_gateway(library=None, p2p={"stun_port": 0})
    assert (await connect(gw)).welcome["ice_servers"] == []


async def test_a_stun_port_in_use_is_not_advertised_and_the_gateway_serves(make_gateway: Any) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        gw = await make_gateway(library=None, p2p={"stun_port": taken.getsockname()[1]})
        assert (await connect(gw)).welcome["ice_servers"] == []
        assert (await gw.get("/healthz")).status == 200


async def test_turn_credentials_are_minted_per_peer_on_request(make_gateway: Any) -> None:
    port = free_udp_port()
    urls = ["turn:198.18.0.1:3478?transport=udp"]
    gw = await make_gateway(library=None, p2p={"stun_port": port}, **{"p2p.turn": {"urls": urls, "secret": "s3cret", "ttl_seconds": 600}})
    a, b = await connect(gw), await connect(gw)
    credentials = []
    for peer in (a, b):
        # The welcome never carries credentials: only a peer that needs a relay asks.
        assert peer.welcome["ice_servers"] == [{"urls": [f"stun:127.0.0.1:{port}"]}]
        answer = await peer.ask({"type": "turn"})
        assert answer["type"] == "turn" and answer["ttl_seconds"] == 600
        (turn,) = answer["ice_servers"]
        assert turn["urls"] == urls
        expiry, _, who = turn["username"].partition(":")
        assert who == peer.id
        assert abs(int(expiry) - (time.time() + 600)) < 5
        expected = base64.b64encode(hmac.new(b"s3cret", turn["username"].encode(), hashlib.sha1).digest()).decode()
        assert turn["credential"] == expected
        credentials.append(turn["credential"])
    assert credentials[0] != credentials[1]


async def test_turn_requests_in_a_burst_are_refused_past_the_limit(make_gateway: Any) -> None:
    gw = await make_gateway(library=None, p2p={"stun_port": 0},
                            **{"p2p.turn": {"urls": ["turn:198.18.0.1:3478"], "secret": "s3cret"}})
    # 20 sockets from one address, each asking once, then again: the address has one budget.
    peers = [await connect(gw) for _ in range(20)]
    answers = [await p.ask({"type": "turn"}) for p in peers] + [await p.ask({"type": "turn"}) for p in peers[:5]]
    granted = [a for a in answers if a["type"] == "turn"]
    refused = [a for a in answers if a.get("error") == "rate_limited" and a.get("for") == "turn"]
    assert len(granted) == TURN_BURST and len(refused) == len(answers) - TURN_BURST
    assert all(g["ttl_seconds"] <= 3600 for g in granted)


async def test_no_turn_server_is_said_without_a_strike(make_gateway: Any) -> None:
    gw = await make_gateway(library=None, p2p={"stun_port": 0})
    p = await connect(gw)
    for _ in range(60):  # more than the strikes a peer has: none is taken
        assert (await p.ask({"type": "turn"}))["error"] == "no_turn"
    assert await p.ask({"type": "ping"}) == {"type": "pong"}


def test_turn_credentials_live_minutes_by_default(make_config: Any) -> None:
    config = make_config(**{"p2p.turn": {"urls": ["turn:x:3478"], "secret": "s"}})
    assert config.p2p.turn.ttl_seconds == 600
    servers, ttl = IcePlan(config, wall=lambda: 1_700_000_000.0).turn_for("peerA")
    assert ttl == 600 and servers[0]["username"] == "1700000600:peerA"
    assert IcePlan(config).for_peer("peerA") == ()  # no STUN listening, and never TURN


@pytest.mark.parametrize(
    "turn, key",
    [
        ({"urls": ["turn:x:3478"]}, "p2p.turn"),
        ({"secret": "s"}, "p2p.turn"),
        ({"urls": ["stun:x:3478"], "secret": "s"}, "p2p.turn.urls[0]"),
        ({"urls": ["turn:x"], "secret": "s", "ttl_seconds": 10}, "p2p.turn.ttl_seconds"),
        ({"urls": ["turn:x"], "secret": "s", "ttl_seconds": 86400}, "p2p.turn.ttl_seconds"),
    ],
)
def test_bad_turn_config_names_the_key(make_config: Any, turn: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as refused:
        make_config(**{"p2p.turn": turn})
    assert str(refused.value).startswith(key), str(refused.value)
    assert "s3cret" not in str(refused.value)


def test_bad_p2p_numbers_name_the_key(make_config: Any) -> None:
    for values, key in (({"stun_port": -2}, "p2p.stun_port"), ({"stun_port": 70000}, "p2p.stun_port"),
                        ({"min_listeners": -1}, "p2p.min_listeners")):
        with pytest.raises(ConfigError) as refused:
            make_config(p2p=values)
        assert key in str(refused.value)


async def test_min_listeners_holds_introductions_back(make_gateway: Any) -> None:
    gw = await make_gateway(library=None, p2p={"stun_port": 0, "min_listeners": 3})
    a, b = await connect(gw), await connect(gw)
    await a.send({"type": "have", "track": T, "rendition": R, "chunks": [0, 1]})
    answer = await b.ask({"type": "want", "track": T, "rendition": R, "chunks": [0]})
    assert answer == {"type": "peers", "track": T, "rendition": R, "peers": []}
    # b learnt nothing, so it may not signal a either
    refused = await b.ask({"type": "signal", "to": a.id, "data": {"x": 1}})
    assert refused["error"] == "not_introduced"
    c = await connect(gw)
    await c.send({"type": "have", "track": T, "rendition": R, "chunks": [1]})
    answer = await b.ask({"type": "want", "track": T, "rendition": R, "chunks": [0, 1]})
    assert {p["peer_id"] for p in answer["peers"]} == {a.id, c.id}
    # other tracks count their own listeners
    lonely = await b.ask({"type": "want", "track": "other", "rendition": R, "chunks": [0]})
    assert lonely["peers"] == []


async def test_connection_outcomes_reach_the_metrics(make_gateway: Any) -> None:
    gw = await make_gateway(library=None, p2p={"stun_port": 0})
    p = await connect(gw)
    await p.send({"type": "stats", "p2p_down_bytes": 5000, "p2p_relay_down_bytes": 2000,
                  "connections": {"srflx/prflx": 2, "host/relay": 1, "failed": 1, "timeout": 3,
                                  "srflx": 1}})  # a bare type: an older player's, its ends unknown
    await p.send({"type": "stats", "connections": {"lan": 1}})  # refused whole, after its rate: counted nothing
    deadline = asyncio.get_running_loop().time() + 2
    while True:
        text = await (await gw.get("/metrics")).text()
        if 'ztream_p2p_connections_total{candidate="prflx",local="srflx",remote="prflx",result="connected"} 2.0' in text:
            break
        assert asyncio.get_running_loop().time() < deadline, text
        await asyncio.sleep(0.05)
    for line in (
        'ztream_p2p_connections_total{candidate="relay",local="host",remote="relay",result="connected"} 1.0',
        'ztream_p2p_connections_total{candidate="unknown",local="unknown",remote="unknown",result="connected"} 1.0',
        'ztream_p2p_connections_total{candidate="host",local="host",remote="host",result="connected"} 0.0',
        'ztream_p2p_connections_total{candidate="none",local="none",remote="none",result="failed"} 1.0',
        'ztream_p2p_connections_total{candidate="none",local="none",remote="none",result="timeout"} 3.0',
        "ztream_peer_relay_bytes_total 2000.0",
        'ztream_peer_bytes_total{scope="unknown"} 5000.0',  # no source named
    ):
        assert line in text, line


async def test_peers_without_neighbours_are_a_gauge(make_gateway: Any) -> None:
    gw = await make_gateway(library=None, p2p={"stun_port": 0})
    a, b = await connect(gw), await connect(gw)

    async def alone() -> str:
        text = await (await gw.get("/metrics")).text()
        return next(line for line in text.splitlines() if line.startswith("ztream_peers_without_neighbours "))

    await a.send({"type": "stats", "neighbours": 0})
    await b.send({"type": "stats", "neighbours": 0})
    await a.ask({"type": "ping"})
    await b.ask({"type": "ping"})
    assert await alone() == "ztream_peers_without_neighbours 2.0"
    await a.send({"type": "stats", "neighbours": 3})
    await a.ask({"type": "ping"})
    assert await alone() == "ztream_peers_without_neighbours 1.0"
    await b.ws.close()
    deadline = asyncio.get_running_loop().time() + 2
    while await alone() != "ztream_peers_without_neighbours 0.0":
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
