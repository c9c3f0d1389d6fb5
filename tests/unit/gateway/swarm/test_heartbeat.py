"""HeartbeatWheel, driven with exact time: when sockets are pinged, when they are dead."""

from __future__ import annotations

import pytest

from gateway.swarm.heartbeat import SLOTS, TICK, HeartbeatWheel, ticks


class Sock:
    __slots__ = ("name", "beat_slot", "beat_state", "beat_every")

    def __init__(self, name: str) -> None:
        self.name = name
        self.beat_slot = 0
        self.beat_state = 0
        self.beat_every = 0

    def __repr__(self) -> str:
        return self.name


def at(tick: float) -> float:
    """The middle of tick ``tick``: clear of float rounding at the edges."""
    return (tick + 0.5) * TICK


def run(wheel: HeartbeatWheel[Sock], start: int, end: int, answer: frozenset[Sock] | set[Sock] = frozenset()
        ) -> list[tuple[int, str, str]]:
    """Advance one tick at a time; the sockets in ``answer`` answer every ping at once."""
    events: list[tuple[int, str, str]] = []
    for t in range(start, end + 1):
        ping, dead = wheel.advance(at(t))
        for s in ping:
            events.append((t, "ping", s.name))
            if s in answer:
                wheel.heard(s)
        events += [(t, "dead", s.name) for s in dead]
    return events


def test_pinged_every_period_while_it_answers() -> None:
    wheel: HeartbeatWheel[Sock] = HeartbeatWheel()
    a = Sock("a")
    wheel.add(a, 10, at(0))
    assert run(wheel, 1, 35, answer={a}) == [(10, "ping", "a"), (20, "ping", "a"), (30, "ping", "a")]
    assert len(wheel) == 1


def test_silent_after_a_ping_is_dead_half_a_period_later_and_off_the_wheel() -> None:
    wheel: HeartbeatWheel[Sock] = HeartbeatWheel()
    a = Sock("a")
    wheel.add(a, 10, at(0))
    assert run(wheel, 1, 40) == [(10, "ping", "a"), (15, "dead", "a")]
    assert len(wheel) == 0
    wheel.remove(a)  # the socket's own end, later: nothing to do


def test_any_frame_answers_even_one_just_before_the_deadline() -> None:
    wheel: HeartbeatWheel[Sock] = HeartbeatWheel()
    a = Sock("a")
    wheel.add(a, 10, at(0))
    assert run(wheel, 1, 14) == [(10, "ping", "a")]
    wheel.heard(a)
    assert run(wheel, 15, 24) == [(20, "ping", "a")]
    assert run(wheel, 25, 25) == [(25, "dead", "a")]  # that ping, unanswered


def test_heard_while_idle_does_not_skip_the_deadline() -> None:
    wheel: HeartbeatWheel[Sock] = HeartbeatWheel()
    a = Sock("a")
    wheel.add(a, 10, at(0))
    wheel.heard(a)  # before any ping: not an answer to the next one
    assert run(wheel, 1, 16) == [(10, "ping", "a"), (15, "dead", "a")]


def test_removed_sockets_are_never_pinged() -> None:
    wheel: HeartbeatWheel[Sock] = HeartbeatWheel()
    a, b = Sock("a"), Sock("b")
    wheel.add(a, 10, at(0))
    wheel.add(b, 12, at(0))
    wheel.remove(a)
    assert run(wheel, 1, 12) == [(12, "ping", "b")]
    wheel.remove(b)  # pinged, its deadline pending: gone all the same
    assert run(wheel, 13, 40) == []
    assert len(wheel) == 0


def test_periods_are_per_socket() -> None:
    wheel: HeartbeatWheel[Sock] = HeartbeatWheel()
    socks = [Sock(str(every)) for every in (10, 11, 15)]
    for s in socks:
        wheel.add(s, int(s.name), at(0))
    pings = sorted(e for e in run(wheel, 1, 30, answer=set(socks)) if e[1] == "ping")
    assert pings == [(10, "ping", "10"), (11, "ping", "11"), (15, "ping", "15"), (20, "ping", "10"),
                     (22, "ping", "11"), (30, "ping", "10"), (30, "ping", "15")]


def test_late_advances_catch_up_in_order() -> None:
    wheel: HeartbeatWheel[Sock] = HeartbeatWheel()
    a = Sock("a")
    wheel.add(a, 10, at(0))
    ping, dead = wheel.advance(at(12))  # the loop was busy: ticks 1 to 12 at once
    assert (ping, dead) == ([a], [])
    ping, dead = wheel.advance(at(17))
    assert (ping, dead) == ([], [a])  # half a period from when the ping went out


def test_a_ping_is_never_judged_in_the_advance_that_sends_it() -> None:
    wheel: HeartbeatWheel[Sock] = HeartbeatWheel()
    a = Sock("a")
    wheel.add(a, 10, at(0))
    assert wheel.advance(at(40)) == ([a], [])
    assert run(wheel, 41, 45) == [(45, "dead", "a")]


def test_a_stall_longer_than_the_wheel_handles_each_socket_once() -> None:
    wheel: HeartbeatWheel[Sock] = HeartbeatWheel()
    a = Sock("a")
    wheel.add(a, 10, at(0))
    ping, dead = wheel.advance(at(3 * SLOTS))
    assert (ping, dead) == ([a], [])  # pinged, and given its half period to answer
    wheel.heard(a)
    assert run(wheel, 3 * SLOTS + 1, 3 * SLOTS + 10) == [(3 * SLOTS + 10, "ping", "a")]


def test_ticks() -> None:
    assert ticks(20.0) == round(20.0 / TICK)
    assert ticks(0.0) == 2  # a ping, then its deadline
    with pytest.raises(ValueError):
        ticks(SLOTS * TICK)
