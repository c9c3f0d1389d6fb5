"""Nearness across cluster nodes: a holder of another node keeps the place its node gave it."""

from __future__ import annotations

import json

from gateway.cluster.swarm import _place
from gateway.cluster.tracker import ClusterTracker, RemoteHolding
from gateway.swarm.networks import UNKNOWN_PLACE, Networks, Place

T, R = "track1", "rend1"
NETWORKS = Networks({"isp-a": ["203.0.113.0/24"], "isp-b": ["198.51.100.0/24"]})


def remote(peer: str, place: Place = UNKNOWN_PLACE) -> RemoteHolding:
    return RemoteHolding(peer, "node2", ((0, 9),), False, 0, 0.5, place)


def test_a_remote_holder_near_the_asker_is_preferred() -> None:
    t = ClusterTracker("node1", networks=NETWORKS)
    t.join("asker", 0.0, "203.0.113.3")
    t.join("local-far", 0.0, "198.51.100.1")
    t.announce("local-far", T, R, range(10), 0.0)
    t.adopt(T, R, [remote("remote-near", NETWORKS.place("203.0.113.9")), remote("remote-unknown")], 1.0, 600)
    assert [c.peer_id for c in t.want("asker", T, R, [3], 1.0)] == ["remote-near"]
    assert t.place("remote-near") == Place("203.0.113.9", "net:isp-a")
    assert t.place("remote-unknown") == UNKNOWN_PLACE
    # An entry without a place (an older node's) leaves the place known.
    t.adopt(T, R, [remote("remote-near")], 2.0, 600)
    assert t.place("remote-near").network == "net:isp-a"


def test_places_from_redis_entries() -> None:
    assert _place(json.loads('{"l": "203.0.113.9", "w": "net:isp-a"}')) == Place("203.0.113.9", "net:isp-a")
    assert _place({"l": "2001:db8:1:2::/64"}) == Place("2001:db8:1:2::/64", None)
    assert _place({}) == _place({"l": 5}) == _place({"l": ""}) == _place({"l": "x" * 65}) == UNKNOWN_PLACE
    assert _place({"l": "203.0.113.9", "w": ["odd"]}) == Place("203.0.113.9", None)
