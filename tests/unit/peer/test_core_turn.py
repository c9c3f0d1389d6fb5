"""TURN on request and stats sources in the Python peer's core (the twin of tests/js/p2p-turn.test.mjs)."""

from __future__ import annotations

from peer.core import Control, Effect, Open, P2PCore
from protocol.messages import Error, Introduce, Limits, Peers, Stats, Turn, TurnServers, Want, Welcome
from protocol.values import Candidate

STUN = {"urls": "stun:example"}
TURN = {"urls": ["turn:198.51.100.1:3478"], "username": "600:me", "credential": "x"}


def welcome() -> Welcome:
    return Welcome("me", (STUN,), Limits(stats_interval=5))


def controls(effects: list[Effect], kind: type) -> list[object]:
    return [e.msg for e in effects if isinstance(e, Control) and isinstance(e.msg, kind)]


def test_a_relay_only_peer_asks_at_welcome_and_renews_halfway() -> None:
    c = P2PCore()
    c.needs_relay = True
    out = c.on_control(welcome(), 0)
    assert isinstance(out[0], Control) and out[0].msg == Turn()
    assert c.ice_servers == (STUN,)
    c.on_control(TurnServers((TURN,), 600), 1)
    assert c.ice_servers == (STUN, TURN)
    assert controls(c.tick(200), Turn) == []
    assert controls(c.tick(301), Turn) == [Turn()]
    assert controls(c.tick(302), Turn) == []


def test_others_ask_after_a_failure_and_never_after_no_turn() -> None:
    c = P2PCore()
    assert controls(c.on_control(welcome(), 0), Turn) == []
    assert controls(c.need_relay(1), Turn) == [Turn()]
    assert c.need_relay(1) == []
    c.on_control(Error("no_turn", "none", "turn"), 2)
    assert c.need_relay(3) == []


def test_a_rate_limited_request_is_asked_again_later() -> None:
    c = P2PCore()
    c.on_control(welcome(), 0)
    c.need_relay(0)
    c.on_control(Error("rate_limited", "slow down", "turn"), 1)
    assert c.need_relay(2) == []
    assert controls(c.need_relay(1 + c.settings.max_want_interval), Turn) == [Turn()]


def test_stats_name_the_neighbours_that_delivered() -> None:
    c = P2PCore()
    c.on_control(welcome(), 0)
    c.delivered_by("a", 1000)
    c.delivered_by("b", 3000)
    c.delivered_by("a", 500)
    (stats,) = controls(c.tick(10, {"peerBytes": 4500}), Stats)
    assert isinstance(stats, Stats) and stats.sources == (("b", 3000), ("a", 1500))
    (later,) = controls(c.tick(20, {"peerBytes": 4600}), Stats)
    assert isinstance(later, Stats) and later.sources == ()


def test_a_neighbour_not_reached_directly_is_dialled_again_once_turn_comes() -> None:
    c = P2PCore()
    c.on_control(welcome(), 0)
    c.start_session("t", "r", [0, 1, 2], 0)
    holder = Peers("t", "r", (Candidate("a", (0, 1, 2), True),))
    assert any(isinstance(e, Open) and e.peer == "a" for e in c.on_control(holder, 1))
    c.channel_closed("a", 6)  # ICE failed: cooled down for retry_cooldown
    assert controls(c.need_relay(6), Turn) == [Turn()]
    granted = c.on_control(TurnServers((TURN,), 600), 7)
    # Not retry_cooldown (30 s) later: it looks for holders now (an overlay round, or a want).
    assert len(controls(granted, Introduce)) + len(controls(granted, Want)) == 1, granted
    assert any(isinstance(e, Open) and e.peer == "a" for e in c.on_control(holder, 8))
    # A renewal is not a new relay.
    renewed = c.on_control(TurnServers((TURN,), 600), 310)
    assert controls(renewed, Introduce) + controls(renewed, Want) == []
