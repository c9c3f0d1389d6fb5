"""The hub's trust rules: forged stats, corroborated credit, TURN on request."""

from __future__ import annotations

import itertools
from typing import Any

from gateway.swarm.hub import (
    CONNECTIONS_BURST,
    LISTEN_BURST_BYTES,
    LISTEN_BYTES_PER_SECOND,
    LIVE_PEER_BYTES,
    P2P_CONNECTIONS,
    PEER_BYTES,
    PEER_RELAY_BYTES,
    Count,
    Output,
    Send,
    SwarmHub,
)
from gateway.swarm.tracker import Tracker
from protocol.limits import MAX_REPORT_BYTES, STATS_BURST, TURN_BURST, TURN_PER_SECOND
from protocol.messages import Error, Have, Stats, Turn, TurnServers, Want
from protocol.values import ChunkSet
from tests.unit.gateway.swarm.test_control_socket import connect, metrics

T, R = "t1", "r1"


def make_hub(*, turn: bool = True) -> SwarmHub:
    counter = itertools.count(1)
    grant = lambda peer: ([{"urls": ["turn:198.51.100.1:3478"], "username": f"600:{peer}", "credential": "x"}], 600)  # noqa: E731
    return SwarmHub(Tracker(), new_id=lambda: f"peer{next(counter)}", turn=grant if turn else None)


def counted(out: list[Output], metric: str) -> float:
    return sum(o.n for o in out if isinstance(o, Count) and o.metric == metric)


def test_forged_stats_cannot_move_the_peer_bytes() -> None:
    hub = make_hub()
    liar, _ = hub.open(0.0, "203.0.113.7")
    total = 0.0
    for _ in range(STATS_BURST):  # 4 reports adding 4 x 2^30 bytes: 4.29e9 before
        total += counted(hub.receive(liar, Stats(p2p_down_bytes=MAX_REPORT_BYTES, p2p_relay_down_bytes=5), 0.0),
                         PEER_BYTES)
    assert total <= LISTEN_BURST_BYTES
    # An hour of reports moves it by no more than an hour of listening.
    for second in range(2, 3600, 2):
        total += counted(hub.receive(liar, Stats(p2p_down_bytes=MAX_REPORT_BYTES), float(second)), PEER_BYTES)
    assert total <= LISTEN_BURST_BYTES + 3600 * LISTEN_BYTES_PER_SECOND


def test_an_honest_total_arrives_whole() -> None:
    hub = make_hub()
    p, _ = hub.open(0.0, "198.51.100.1")
    # A track fetched ahead in a burst: 20 MB reported at once, then quiet reports.
    out = hub.receive(p, Stats(p2p_down_bytes=20_000_000, p2p_relay_down_bytes=1000), 0.0)
    first = counted(out, PEER_BYTES)
    assert first == LISTEN_BURST_BYTES and counted(out, PEER_RELAY_BYTES) == 1000
    later = sum(counted(hub.receive(p, Stats(), float(t)), PEER_BYTES) for t in range(10, 200, 10))
    assert first + later == 20_000_000


def test_live_peer_bytes_are_the_believed_part_of_a_report() -> None:
    hub = make_hub()
    p, _ = hub.open(0.0, "198.51.100.1")
    out = hub.receive(p, Stats(p2p_down_bytes=3000, p2p_live_down_bytes=2000), 0.0)
    assert counted(out, PEER_BYTES) == 3000 and counted(out, LIVE_PEER_BYTES) == 2000
    # A live share over the whole report, or over what was believed of it, is cut to that.
    out = hub.receive(p, Stats(p2p_down_bytes=100, p2p_live_down_bytes=5000), 2.0)
    assert counted(out, LIVE_PEER_BYTES) == 100
    liar, _ = hub.open(0.0, "203.0.113.7")
    live = sum(counted(hub.receive(liar, Stats(p2p_down_bytes=MAX_REPORT_BYTES, p2p_live_down_bytes=MAX_REPORT_BYTES),
                                   0.0), LIVE_PEER_BYTES) for _ in range(STATS_BURST))
    assert live <= LISTEN_BURST_BYTES
    assert counted(hub.receive(p, Stats(p2p_down_bytes=500), 4.0), LIVE_PEER_BYTES) == 0


def test_forged_connection_outcomes_are_bounded_by_introductions() -> None:
    hub = make_hub()
    liar, _ = hub.open(0.0, "203.0.113.7")
    out = []
    for _ in range(STATS_BURST):  # 4,000 srflx connections before
        out += hub.receive(liar, Stats(connections=(("srflx", 1000),)), 0.0)
    assert counted(out, P2P_CONNECTIONS) == CONNECTIONS_BURST
    # Introduced to three holders: three more outcomes are vouched for.
    holders = [hub.open(0.0, f"198.51.100.{i}")[0] for i in range(3)]
    for h in holders:
        hub.receive(h, Have(T, R, ChunkSet.of([0])), 1.0)
    hub.receive(liar, Want(T, R, (0,)), 1.0)
    out = hub.receive(liar, Stats(connections=(("srflx", 1000),)), 3.0)
    assert counted(out, P2P_CONNECTIONS) == 3
    # And each holder, dialled, may report its side.
    assert counted(hub.receive(holders[0], Stats(connections=(("host", 1),)), 3.0), P2P_CONNECTIONS) == 1


def test_sources_credit_only_introduced_holders_within_the_credited_bytes() -> None:
    hub = make_hub()
    leecher, _ = hub.open(0.0, "198.51.100.1")
    honest, _ = hub.open(0.0, "192.0.2.1")
    stranger, _ = hub.open(0.0, "192.0.2.2")
    hub.receive(honest, Have(T, R, ChunkSet.of(range(10))), 0.0)
    hub.receive(leecher, Want(T, R, (0,)), 0.0)
    hub.receive(leecher, Stats(p2p_down_bytes=5000, sources=((honest, 4000), (stranger, 1000))), 1.0)
    assert hub.tracker.delivered(honest) == 4000
    assert hub.tracker.delivered(stranger) == 0  # never introduced: a vouch for a stranger is nothing
    # No more credit than the report's own believed bytes.
    hub.receive(leecher, Stats(p2p_down_bytes=10, sources=((honest, 10_000),)), 2.0)
    assert hub.tracker.delivered(honest) == 4010


def test_welcome_carries_no_turn_credentials_and_a_request_gets_them() -> None:
    hub = make_hub()
    peer, out = hub.open(0.0, "198.51.100.1")
    welcome = [o for o in out if isinstance(o, Send)][0].message
    assert "turn" not in str(welcome)
    (answer,) = hub.receive(peer, Turn(), 0.0)
    assert isinstance(answer, Send) and isinstance(answer.message, TurnServers)
    assert answer.message.ttl_seconds == 600 and answer.message.ice_servers[0]["username"] == f"600:{peer}"


def test_a_burst_of_turn_requests_from_one_address_is_refused_past_the_limit() -> None:
    hub = make_hub()
    sockets = [hub.open(0.0, "203.0.113.7")[0] for _ in range(20)]
    other, _ = hub.open(0.0, "198.51.100.1")
    answers = [hub.receive(p, Turn(), 0.5)[0] for p in sockets]
    granted = [a for a in answers if isinstance(a, Send) and isinstance(a.message, TurnServers)]
    refused = [a for a in answers if isinstance(a, Send) and isinstance(a.message, Error)
               and a.message.code == "rate_limited" and a.message.for_type == "turn"]
    assert len(granted) == TURN_BURST and len(refused) == 20 - TURN_BURST
    # Another address is not affected; the refused address gets one more per refill.
    assert isinstance(hub.receive(other, Turn(), 0.5)[0].message, TurnServers)  # type: ignore[union-attr]
    later = 0.5 + 1 / TURN_PER_SECOND
    assert isinstance(hub.receive(sockets[0], Turn(), later)[0].message, TurnServers)  # type: ignore[union-attr]
    assert hub.receive(sockets[1], Turn(), later)[0].message.code == "rate_limited"  # type: ignore[union-attr]
    # Budgets refilled to full are forgotten (bounded memory).
    hub.tick(later + TURN_BURST / TURN_PER_SECOND)
    assert not hub._turn_budgets


def test_no_turn_configured_is_an_answer_not_a_strike() -> None:
    hub = make_hub(turn=False)
    peer, _ = hub.open(0.0)
    for _ in range(80):
        (answer,) = hub.receive(peer, Turn(), 0.0 + _ * 0.1)
        assert isinstance(answer, Send) and isinstance(answer.message, Error) and answer.message.code == "no_turn"


async def test_forged_stats_over_a_real_socket_leave_the_offload_figure_alone(make_gateway: Any) -> None:
    gw = await make_gateway(library=None, p2p={"stun_port": 0})
    p = await connect(gw)
    before = await metrics(gw)
    for _ in range(4):
        await p.send({"type": "stats", "p2p_down_bytes": MAX_REPORT_BYTES, "connections": {"srflx": 1000}})
    assert await p.ask({"type": "ping"}) == {"type": "pong"}
    after = await metrics(gw)
    # 4.29e9 before; now the burst and what the budget refilled in the few seconds this took.
    assert after["ztream_peer_bytes_total"] - before["ztream_peer_bytes_total"] <= LISTEN_BURST_BYTES + 5 * LISTEN_BYTES_PER_SECOND
    text = await (await gw.get("/metrics")).text()
    # Every connected series, whatever the pair's labels (a bare "srflx" counts with both ends unknown).
    connected = [float(line.split()[-1]) for line in text.splitlines()
                 if line.startswith("ztream_p2p_connections_total{") and 'result="connected"' in line]
    assert connected and 0 < sum(connected) <= CONNECTIONS_BURST, connected
