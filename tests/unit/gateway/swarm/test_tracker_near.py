"""The tracker's nearness: same LAN, then same network, then others; the fallback unchanged."""

from __future__ import annotations

from gateway.swarm.networks import Networks
from gateway.swarm.tracker import NEAR_TRIAL_SECONDS, SINK_OFFERS, SINK_SECONDS, Tracker

T, R = "track1", "rend1"
# Two ISPs; each home's router has its own public address in its ISP's prefix.
NETWORKS = Networks({"isp-a": ["203.0.113.0/24"], "isp-b": ["198.51.100.0/24"]})


def swarm(**holders: str) -> Tracker:
    """A tracker with these holders (name -> client address), each holding chunks 0..9."""
    t = Tracker(networks=NETWORKS)
    for name, address in holders.items():
        t.join(name, 0.0, address)
        t.announce(name, T, R, range(10), 0.0)
    return t


def asked(t: Tracker, asker: str, now: float = 1.0, needed: tuple[int, ...] = (3,)) -> list[str]:
    return [c.peer_id for c in t.want(asker, T, R, list(needed), now)]


def test_near_holders_only_when_there_are_some() -> None:
    t = swarm(a1="203.0.113.1", a2="203.0.113.2", b1="198.51.100.1", b2="198.51.100.2", x="192.0.2.1")
    t.join("asker", 0.0, "203.0.113.3")
    assert sorted(asked(t, "asker")) == ["a1", "a2"]
    t.join("b-asker", 0.0, "198.51.100.9")
    assert sorted(asked(t, "b-asker")) == ["b1", "b2"]


def test_same_lan_before_same_network() -> None:
    t = swarm(net="203.0.113.1", lan="203.0.113.7")
    t.announce("net", T, R, range(10), 0.5)  # more recently seen: first in trust order
    t.join("asker", 0.0, "203.0.113.7")
    assert asked(t, "asker") == ["lan", "net"]


def test_with_no_networks_configured_the_lan_still_counts() -> None:
    t = Tracker()
    for name, address in (("office1", "192.0.2.7"), ("far", "198.51.100.1")):
        t.join(name, 0.0, address)
        t.announce(name, T, R, range(10), 0.0)
    t.join("asker", 0.0, "192.0.2.7")
    assert asked(t, "asker") == ["office1"]


def test_fallback_unchanged_when_no_near_holder_has_the_chunks() -> None:
    t = swarm(a1="203.0.113.1", b1="198.51.100.1", b2="198.51.100.2", x="192.0.2.1")
    t.leave("a1", T)
    t.announce("a1", T, R, [0], 0.0)  # holds only chunk 0
    t.join("asker", 0.0, "203.0.113.3")
    plain = Tracker()
    for name, address in (("a1", "203.0.113.1"), ("b1", "198.51.100.1"), ("b2", "198.51.100.2"),
                          ("x", "192.0.2.1"), ("asker", "203.0.113.3")):
        plain.join(name, 0.0, address)
        if name != "asker":
            plain.announce(name, T, R, [0] if name == "a1" else range(10), 0.0)
    assert asked(t, "asker") == asked(plain, "asker") == ["b1", "b2", "x"]
    # Chunk 0 is asked too: a1 holds one of the needed chunks, so only it is offered.
    assert asked(t, "asker", needed=(0, 3)) == ["a1"]


def test_a_full_near_holder_is_no_near_holder() -> None:
    t = swarm(a1="203.0.113.1", b1="198.51.100.1")
    t.set_slots("a1", t.upload_slots)
    t.join("asker", 0.0, "203.0.113.3")
    assert asked(t, "asker") == ["b1"]


def test_unknown_addresses_are_far() -> None:
    t = swarm(a1="203.0.113.1", b1="198.51.100.1")
    t.join("nowhere", 0.0, None)
    assert sorted(asked(t, "nowhere")) == ["a1", "b1"]
    t.join("shadow", 0.0)  # no address: a peer of another node
    t.announce("shadow", T, R, range(10), 0.0)
    t.join("asker", 0.0, "203.0.113.3")
    assert asked(t, "asker") == ["a1"]


def test_near_sunk_holders_do_not_cut_the_asker_off() -> None:
    # A liar on the asker's network claims everything and delivers nothing: once
    # it has sunk, the others are offered again.
    t = swarm(liar="203.0.113.66", b1="198.51.100.1")
    t.join("asker", 0.0, "203.0.113.3")
    for i in range(SINK_OFFERS):
        t.join(f"other{i}", 0.0, "192.0.2.9")
        t.want(f"other{i}", T, R, [3], float(i))
    assert asked(t, "asker", now=1.0) == ["liar"]
    assert asked(t, "asker", now=SINK_SECONDS + 1) == ["b1", "liar"]


def test_a_near_holder_that_never_delivered_to_the_asker_stops_counting() -> None:
    # Two listeners behind one carrier-grade NAT share an address, but often
    # cannot reach each other: after the trial the others are offered again.
    t = swarm(cgn="203.0.113.1", b1="198.51.100.1")
    t.join("asker", 0.0, "203.0.113.1")
    assert asked(t, "asker", now=1.0) == ["cgn"]
    t.credit("cgn", 1000, 2.0, to="b1")  # it delivers to others: proven, never sunk
    assert asked(t, "asker", now=NEAR_TRIAL_SECONDS) == ["cgn"]
    # The fallback: everyone, as without networks (cgn first: it has delivered).
    assert asked(t, "asker", now=1.0 + NEAR_TRIAL_SECONDS) == ["cgn", "b1"]
    # Re-introduced, the trial still runs from the first introduction.
    assert t.introduce("asker", "cgn", T, R, [3], 30.0) != "busy"
    assert asked(t, "asker", now=31.0) == ["cgn", "b1"]


def test_a_near_holder_that_delivered_keeps_counting() -> None:
    t = swarm(a1="203.0.113.1", b1="198.51.100.1")
    t.join("asker", 0.0, "203.0.113.3")
    assert asked(t, "asker", now=1.0) == ["a1"]
    t.credit("a1", 5000, 5.0, to="asker")
    assert asked(t, "asker", now=100.0) == ["a1"]


def test_introduce_refuses_far_holders_when_near_ones_are_there() -> None:
    t = swarm(a1="203.0.113.1", b1="198.51.100.1")
    t.join("asker", 0.0, "203.0.113.3")
    assert t.introduce("asker", "b1", T, R, [3], 1.0) == "busy"  # a neighbour named a far holder
    assert not t.introduced("asker", "b1")
    near = t.introduce("asker", "a1", T, R, [3], 1.0)
    assert not isinstance(near, str) and near.peer_id == "a1"
    # For a chunk only the far holder has, it is introduced.
    t.announce("b1", T, R, [20], 1.0)
    far = t.introduce("asker", "b1", T, R, [20], 1.0)
    assert not isinstance(far, str) and far.peer_id == "b1"


def test_credit_from_a_stranger_is_no_delivery_to_it() -> None:
    t = swarm(a1="203.0.113.1", b1="198.51.100.1")
    t.join("asker", 0.0, "203.0.113.3")
    t.credit("a1", 1000, 1.0, to="asker")  # never introduced: not evidence of a working pair
    assert asked(t, "asker", now=2.0) == ["a1"]
    assert asked(t, "asker", now=2.0 + NEAR_TRIAL_SECONDS) == ["a1", "b1"]  # the fallback: everyone


def test_forgetting_an_introduction_forgets_the_delivery() -> None:
    t = Tracker(networks=NETWORKS, max_introductions=1)
    for name, address in (("a1", "203.0.113.1"), ("a2", "203.0.113.2"), ("asker", "203.0.113.3")):
        t.join(name, 0.0, address)
    t.announce("a1", T, R, range(10), 0.0)
    assert asked(t, "asker") == ["a1"]
    t.credit("a1", 100, 1.0, to="asker")
    t.announce("a2", T, R, range(10), 0.0)
    t.set_slots("a1", t.upload_slots)
    assert asked(t, "asker", now=2.0) == ["a2"]  # introduced: a1's introduction (and delivery) forgotten
    assert t.introductions("asker") == ["a2"]
    t.set_slots("a1", 0)
    # Later a1 is untried again (near), a2 had its trial and delivered nothing.
    assert asked(t, "asker", now=50.0) == ["a1"]
