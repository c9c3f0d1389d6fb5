"""``ClusterTracker``: the tracker, knowing of holders connected to other nodes.

Theory of operation
-------------------

Still pure (no I/O, ``now`` passed in): a peer of another node appears here
as a *shadow*, a tracker peer like any other (its holdings, its slots in
use, when it was last seen) plus the node it is connected to. The cluster
shell (``swarm.py``) feeds shadows in from Redis just before a ``want`` is
answered (``adopt``), and when another node introduces one of ours
(``meet``). So ``want`` ranks local and remote holders by the same rule, and
an introduction between nodes is an ordinary introduction on both sides.

What the hub needs on top of a tracker: ``elsewhere(peer)`` (a signal to a
shadow is relayed, not refused as ``unknown_peer``) and the introductions
just made with shadows (``take_introductions``), which the shell tells the
shadows' nodes about. Shadows expire as peers do (``expire``), their age
being what Redis said.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from protocol.limits import MAX_CANDIDATES
from protocol.values import BadChunks, Candidate, ChunkSet

from ..swarm.networks import UNKNOWN_PLACE, Place
from ..swarm.tracker import Tracker, TrackerError

__all__ = ["ClusterTracker", "RemoteHolding"]


@dataclass(frozen=True, slots=True)
class RemoteHolding:
    """One holder of a swarm as Redis has it."""

    peer: str
    node: str
    ranges: tuple[tuple[int, int], ...]
    complete: bool
    in_use: int
    age: float  # seconds since it was last seen
    # Its LAN and network as its own node classified them (nearness works across nodes).
    place: Place = UNKNOWN_PLACE


class ClusterTracker(Tracker):
    def __init__(self, node_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.node_id = node_id
        self.shadows: dict[str, str] = {}  # peer id -> node id
        self._introduced_out: list[tuple[str, str, str]] = []

    # -- what the hub asks -------------------------------------------------

    def elsewhere(self, peer: str) -> bool:
        return peer in self.shadows

    def node_of(self, peer: str) -> str | None:
        return self.shadows.get(peer)

    def local_peers(self) -> int:
        return len(self) - len(self.shadows)

    def want(
        self, peer: str, track: str, rendition: str, needed: Sequence[int], now: float,
        limit: int = MAX_CANDIDATES,
    ) -> list[Candidate]:
        chosen = super().want(peer, track, rendition, needed, now, limit)
        for candidate in chosen:
            node = self.shadows.get(candidate.peer_id)
            if node is not None:
                self._introduced_out.append((node, candidate.peer_id, peer))
        return chosen

    def take_introductions(self) -> list[tuple[str, str, str]]:
        """(node, its peer, our peer) for each introduction made with a shadow since the last call."""
        out, self._introduced_out = self._introduced_out, []
        return out

    def remove(self, peer: str) -> None:
        super().remove(peer)
        self.shadows.pop(peer, None)

    def held(self, peer: str, track: str, rendition: str) -> tuple[ChunkSet, bool] | None:
        """(chunks, complete) of the peer's holding, or ``None``."""
        p = self._peers.get(peer)
        h = p.holdings.get((track, rendition)) if p is not None else None
        return (h.chunks, h.complete) if h is not None else None

    def local_ids(self) -> list[str]:
        return [p for p in self._peers if p not in self.shadows]

    def drop_shadows(self) -> None:
        """Forget every peer of other nodes (Redis went away: per-node introductions only)."""
        for peer in list(self.shadows):
            self.remove(peer)

    # -- what the shell feeds in ---------------------------------------------

    def _shadow(self, peer: str, node: str, last_seen: float, place: Place = UNKNOWN_PLACE) -> bool:
        if peer in self._peers:
            if peer not in self.shadows:
                return False  # one of ours: Redis only echoes what we wrote
            self.shadows[peer] = node
            shadow = self._peers[peer]
            shadow.last_seen = max(shadow.last_seen, last_seen)
            if place != UNKNOWN_PLACE:
                shadow.place = place
            return True
        self.join(peer, last_seen)
        self._peers[peer].place = place
        self.shadows[peer] = node
        return True

    def adopt(self, track: str, rendition: str, holders: Iterable[RemoteHolding], now: float, ttl: float) -> None:
        """The holders of ``(track, rendition)`` on other nodes, as Redis has them now."""
        seen: set[str] = set()
        for h in holders:
            if h.node == self.node_id or h.age > ttl:
                continue
            if not self._shadow(h.peer, h.node, now - h.age, h.place):
                continue
            seen.add(h.peer)
            try:
                chunks = ChunkSet.from_ranges(h.ranges, max_index=self.max_index, max_ranges=self.max_ranges)
                last_seen = self._peers[h.peer].last_seen
                self.announce(h.peer, track, rendition, chunks, now, complete=h.complete, replace=True)
                self._peers[h.peer].last_seen = last_seen  # announce stamps now; the shadow keeps its age
                self.set_slots(h.peer, max(0, h.in_use))
            except (TrackerError, BadChunks):
                continue  # another node's bad entry costs that entry only
        for peer in [p for p in self.holders(track, rendition) if p in self.shadows and p not in seen]:
            self.leave(peer, track, rendition)

    def meet(self, ours: str, theirs: str, node: str, now: float) -> bool:
        """Another node introduced its peer ``theirs`` to our ``ours``; False if ``ours`` is not here."""
        if ours not in self._peers or ours in self.shadows:
            return False
        if not self._shadow(theirs, node, now):
            return False
        self._introduce(self._peers[ours], self._peers[theirs], now)
        return True
