"""A live track in the Python peer's core: the twin of client/p2p.js's live handling
(HAVE expansion floored at the window, stats.live_latency_seconds from the totals)."""

from __future__ import annotations

from peer.core import Control, Effect, P2PCore, PeerHave, expand_ranges
from protocol.messages import Limits, Stats, Welcome
from protocol.wire import Have, encode

FIRST = 58_000_000


def controls(effects: list[Effect], kind: type) -> list[object]:
    return [e.msg for e in effects if isinstance(e, Control) and isinstance(e.msg, kind)]


def test_expansion_starts_at_the_floor() -> None:
    assert expand_ranges([(0, 10)], 8, 5) == [5, 6, 7]
    assert expand_ranges([(FIRST - 5, FIRST + 2), (FIRST + 1, FIRST + 9)], FIRST + 4, FIRST) == list(range(FIRST, FIRST + 4))


def test_a_hostile_have_from_zero_costs_only_the_window() -> None:
    c = P2PCore()
    c.on_control(Welcome("me", (), Limits()), 0)
    c.start_session("t", "r", range(FIRST, FIRST + 60), 0)
    c._new_neighbour("nb", "offerer", 0)
    c.channel_open("nb", 0)
    out = c.on_frame("nb", encode(Have(((0, 0xFFFFFFFF),))), 1)
    (have,) = [e for e in out if isinstance(e, PeerHave)]
    # from the window's oldest chunk to the newest plus the live slack, not from 0
    assert have.have == tuple(range(FIRST, FIRST + 60 + c.settings.live_slack))


def test_stats_carry_the_live_latency_to_the_millisecond_within_the_bound() -> None:
    c = P2PCore()
    c.on_control(Welcome("me", (), Limits(stats_interval=5)), 0)
    (stats,) = controls(c.tick(10, {"httpBytes": 100, "liveLatency": 3.14159}), Stats)
    assert isinstance(stats, Stats) and stats.live_latency_seconds == 3.142
    (stats,) = controls(c.tick(20, {"httpBytes": 200, "liveLatency": 900.0}), Stats)
    assert isinstance(stats, Stats) and stats.live_latency_seconds == 600.0  # more would refuse the report
    (stats,) = controls(c.tick(30, {"httpBytes": 300}), Stats)
    assert isinstance(stats, Stats) and stats.live_latency_seconds is None
