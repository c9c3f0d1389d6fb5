"""``ztream_peer_bytes_total{scope}``: how near each reported source was to its reporter."""

from __future__ import annotations

import itertools

from gateway.swarm.hub import MAX_DEPARTED, PEER_BYTES, Count, Output, SwarmHub
from gateway.swarm.networks import Networks
from gateway.swarm.tracker import Tracker
from protocol.messages import Have, Stats, Want
from protocol.values import ChunkSet

T, R = "track1", "rend1"
NETWORKS = Networks({"isp-a": ["203.0.113.0/24"], "isp-b": ["198.51.100.0/24"]})


def make_hub() -> SwarmHub:
    counter = itertools.count(1)
    return SwarmHub(Tracker(networks=NETWORKS), new_id=lambda: f"peer{next(counter)}")


def by_scope(out: list[Output]) -> dict[str, float]:
    found: dict[str, float] = {}
    for o in out:
        if isinstance(o, Count) and o.metric == PEER_BYTES:
            (label, value), = o.labels
            assert label == "scope"
            found[value] = found.get(value, 0) + o.n
    return found


def holder(hub: SwarmHub, address: str) -> str:
    peer, _ = hub.open(0.0, address)
    hub.receive(peer, Have(T, R, ChunkSet.of(range(10))), 0.0)
    return peer


def introduced(hub: SwarmHub, address: str, *holders: str) -> str:
    """A listener at ``address`` introduced to ``holders`` (each the only holder when it asks)."""
    peer, _ = hub.open(0.0, address)
    for h in holders:
        hub.tracker.introduce(peer, h, T, R, [], 0.0)
    return peer


def test_each_source_counts_at_its_scope() -> None:
    hub = make_hub()
    far = holder(hub, "198.51.100.1")
    me = introduced(hub, "203.0.113.7", far)  # before any near holder came (then it would be refused)
    lan, net = holder(hub, "203.0.113.7"), holder(hub, "203.0.113.8")
    for h in (lan, net):
        hub.tracker.introduce(me, h, T, R, [], 0.0)
    out = hub.receive(me, Stats(p2p_down_bytes=7000, sources=((lan, 4000), (net, 2000), (far, 1000))), 1.0)
    assert by_scope(out) == {"same_lan": 4000, "same_network": 2000, "other": 1000}


def test_what_no_introduced_source_accounts_for_is_unknown() -> None:
    hub = make_hub()
    lan, stranger = holder(hub, "203.0.113.7"), holder(hub, "203.0.113.8")
    me = introduced(hub, "203.0.113.7", lan)
    # The stranger was never introduced; 500 bytes are named by nobody.
    out = hub.receive(me, Stats(p2p_down_bytes=3500, sources=((lan, 2000), (stranger, 1000))), 1.0)
    assert by_scope(out) == {"same_lan": 2000, "unknown": 1500}


def test_sources_count_no_more_than_was_credited() -> None:
    hub = make_hub()
    far = holder(hub, "198.51.100.1")
    me = introduced(hub, "203.0.113.7", far)
    out = hub.receive(me, Stats(p2p_down_bytes=100, sources=((far, 10_000),)), 1.0)
    assert by_scope(out) == {"other": 100}


def test_a_source_that_left_keeps_its_place() -> None:
    hub = make_hub()
    net = holder(hub, "203.0.113.8")
    me = introduced(hub, "203.0.113.7", net)
    hub.close(net, 0.5)  # its bytes arrive in the next report, after it left
    out = hub.receive(me, Stats(p2p_down_bytes=1000, sources=((net, 1000),)), 1.0)
    assert by_scope(out) == {"same_network": 1000}


def test_departed_places_are_bounded() -> None:
    hub = make_hub()
    first = holder(hub, "203.0.113.8")
    hub.close(first, 0.0)
    for _ in range(MAX_DEPARTED):
        hub.close(holder(hub, "198.51.100.1"), 0.0)
    me = introduced(hub, "203.0.113.7")
    assert by_scope(hub.receive(me, Stats(p2p_down_bytes=10, sources=((first, 10),)), 1.0)) == {"unknown": 10}


def test_a_peer_with_no_address_reports_unknown() -> None:
    hub = make_hub()
    far = holder(hub, "198.51.100.1")
    me, _ = hub.open(0.0)  # no client address (a Unix socket)
    hub.receive(me, Want(T, R, (3,)), 0.0)
    out = hub.receive(me, Stats(p2p_down_bytes=10, sources=((far, 10),)), 1.0)
    assert by_scope(out) == {"unknown": 10}
