"""The tracker's trust rules: diversity of an answer, evidence of holding, sinking liars."""

from __future__ import annotations

from gateway.swarm.tracker import SINK_OFFERS, SINK_SECONDS, Tracker, address_group

T, R = "track1", "rend1"
LIAR_ADDRESS = "203.0.113.7"
HONEST = {"h1": "198.51.100.1", "h2": "192.0.2.20", "h3": "100.24.0.9"}


def poisoned(asker_address: str = "198.18.7.7") -> Tracker:
    """5 sockets from one address claiming the whole track, 3 honest partial holders."""
    t = Tracker()
    t.join("asker", 0.0, asker_address)
    for name, address in HONEST.items():
        t.join(name, 0.0, address)
        t.announce(name, T, R, range(0, 10), 0.0)
    for i in range(5):
        t.join(f"liar{i}", 0.0, LIAR_ADDRESS)
        t.announce(f"liar{i}", T, R, [], 1.0, complete=True)  # more recent than the honest ones
    return t


def test_address_groups() -> None:
    assert address_group("203.0.113.7") == address_group("203.0.113.200") == "203.0.113.0/24"
    assert address_group("::ffff:203.0.113.9") == "203.0.113.0/24"
    assert address_group("2001:db8:1:2::5") == address_group("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    assert address_group(None) is None and address_group("unknown") is None


def test_one_address_cannot_fill_an_answer() -> None:
    t = poisoned()
    for now in range(2, 40):  # every want, while the liars keep themselves fresh
        for i in range(5):
            t.touch(f"liar{i}", float(now))
        answer = [c.peer_id for c in t.want("asker", T, R, [3], float(now))]
        assert len(answer) == 5
        assert len([p for p in answer if p in HONEST]) >= 2, (now, answer)


def test_the_askers_own_network_is_exempt() -> None:
    # Listeners behind one NAT share an address: they are each other's best peers.
    t = Tracker()
    t.join("asker", 0.0, "203.0.113.50")
    for i in range(5):
        t.join(f"lan{i}", 0.0, "203.0.113.7")
        t.announce(f"lan{i}", T, R, [0], 0.5)
    t.join("far", 0.0, "198.51.100.1")
    t.announce("far", T, R, [0], 0.0)
    answer = [c.peer_id for c in t.want("asker", T, R, [0], 1.0)]
    assert set(answer) == {f"lan{i}" for i in range(5)}


def test_an_address_alone_still_gets_a_full_answer() -> None:
    t = Tracker()
    t.join("asker", 0.0, "198.51.100.1")
    for i in range(7):
        t.join(f"p{i}", 0.0, "203.0.113.7")
        t.announce(f"p{i}", T, R, [0], 0.0)
    assert len(t.want("asker", T, R, [0], 1.0)) == 5


def test_liars_that_never_deliver_sink_below_honest_holders() -> None:
    # All on one address with the asker (loopback, one NAT): diversity cannot help;
    # evidence does. Honest holders deliver (the leechers' reports credit them), liars never do.
    t = Tracker()
    t.join("asker", 0.0, "127.0.0.1")
    for name in HONEST:
        t.join(name, 0.0, "127.0.0.1")
        t.announce(name, T, R, range(10), 0.0)
    for i in range(5):
        t.join(f"liar{i}", 0.0, "127.0.0.1")
        t.announce(f"liar{i}", T, R, [], 0.0, complete=True)
    now = 1.0
    for _ in range(SINK_OFFERS):
        for i in range(5):
            t.touch(f"liar{i}", now)
        for c in t.want("asker", T, R, [3], now):
            if c.peer_id in HONEST:
                t.credit(c.peer_id, 30_000, now)
        now += 1
    now += SINK_SECONDS
    for i in range(5):
        t.touch(f"liar{i}", now)
        assert t.sunk(f"liar{i}", now)
    answer = [c.peer_id for c in t.want("asker", T, R, [3], now)]
    assert answer[:3] and set(answer[:3]) == set(HONEST), answer
    # A delivery lifts a sunk holder again.
    t.credit("liar0", 1000, now)
    assert not t.sunk("liar0", now) and t.delivered("liar0") == 1000


def test_proven_holders_come_before_unproven_claims() -> None:
    t = poisoned(asker_address="203.0.113.99")  # the asker shares the liars' /24: no cap for them
    t.credit("h2", 5000, 2.0)
    answer = [c.peer_id for c in t.want("asker", T, R, [3], 3.0)]
    assert answer[0] == "h2"


def test_no_address_behaves_as_before() -> None:
    t = Tracker()
    for p in ("a", "b", "c"):
        t.join(p, 0.0)
    t.announce("b", T, R, [0], 1.0)
    t.announce("c", T, R, [0], 2.0)
    assert [c.peer_id for c in t.want("a", T, R, [0], 3.0)] == ["c", "b"]
