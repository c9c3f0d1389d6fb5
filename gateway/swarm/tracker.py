"""The tracker: who holds which chunks, and whom to introduce to whom.

Theory of operation
-------------------

The tracker is a plain object with no I/O, no asyncio and no clock: every
method that cares about time takes ``now`` (seconds, any monotonic origin),
so its tests are synchronous and exact. The swarm hub (``gateway.swarm.hub``,
the control WebSocket's core, see docs/websocket.md) is what feeds it.

State:

- **peers**: an id (assigned by the server, never chosen by the peer), the
  time it was last seen (any message refreshes it, see ``touch``), and the
  number of its upload slots in use, as it last reported. Every peer has
  ``upload_slots`` slots (configuration ``p2p.upload_slots``); a peer with
  ``in_use >= upload_slots`` has no free slot and is never offered.
- **holdings**: per peer and per ``(track, rendition)`` a ``ChunkSet`` of the
  chunk indices it holds, plus a ``complete`` flag ("holds them all", for a
  peer that has the whole track and does not want to count). Partial holdings
  count: a listener seeds what it has while it is still downloading. A
  ``(track, rendition)`` pair is a *swarm*; chunks of different renditions are
  never mixed.
- **introductions**: unordered pairs of peers that the tracker put in touch by
  answering a ``want``. Signaling (SDP/ICE relay) is allowed only between an
  introduced pair, in both directions, so a peer cannot spray offers at
  strangers whose ids it learned some other way.

``want(asker, track, rendition, needed, now)`` answers up to ``limit`` (5)
candidates: holders of that swarm, never the asker, with a free upload slot,
that hold at least one of the ``needed`` chunks (any chunk at all when
``needed`` is empty). Each candidate returned is introduced to the asker.

Trust: a holding is a claim, and anyone can claim ``complete: true``. So the
answer is chosen by what holders have *shown*, and spread so that no one
source of claims fills it (docs/p2p.md, "Tracker trust"):

- **Evidence**: ``credit(holder, n, now)`` records ``n`` verified bytes that
  a leecher says it received from the holder (the hub calls it from a
  ``stats`` report's ``sources``, only for a pair the tracker introduced, and
  within the reporter's own listening budget). A holder that has delivered is
  *proven*; one that has not yet is *on probation*; one offered
  ``SINK_OFFERS`` times or more, the first of them ``SINK_SECONDS`` ago or
  more, with no delivery since, has *sunk* (it claims what it does not
  serve, or serves nobody). A delivery lifts it again.
- **Order**: proven first, then on probation, then sunk; within a tier most
  recently seen first, then by how many of the needed chunks they hold, then
  by id (so the answer is deterministic).
  So a claim is believed only as far as the holder has shown it: an unproven
  one is offered after every proven one, a refuted one after everyone.
- **Diversity**: each peer has an address *group* (its client address's
  IPv4 /24 or IPv6 /64, given at ``join``; none: a group of its own). No group
  takes more than a fair share of an answer (``ceil(limit / groups among the
  eligible)``), except the asker's own group: listeners behind one NAT share
  an address and are each other's best peers.
- The places the cap left empty are filled in the same order from what it
  held back: a swarm of one address still gets a full answer.

Nearness: bytes between two listeners of one network never cross a transit
link, and between two behind one NAT never leave the building. Each peer has
a *place* (``networks.Place``: its LAN, its network, from its client address
at ``join``, classified by the ``Networks`` given), and each holder a scope
relative to the asker (``networks.scope``: ``same_lan``, ``same_network``,
``other``, ``unknown``). A holder is *near* when it is in the asker's LAN or
network, is not sunk, and has not failed *this asker*: introduced to it
``NEAR_TRIAL_SECONDS`` ago or more without delivering it anything (two
listeners behind one carrier-grade NAT share an address but often cannot
reach each other; they must not be cut off from everyone else).

- When the asker has a near holder, the answer holds near holders only
  (same LAN first, then same network; within each, the trust order above;
  sunk ones last), and an ``introduce`` of a holder that is not near is
  refused (``busy``): neighbours would otherwise name far holders through
  the overlay. Only near ones are offered, so the bytes stay near.
- When it has none, the answer is chosen exactly as it was without
  networks: trust order, diversity cap.

Bounds, so that no peer can make the tracker grow without limit: at most
``max_tracks`` swarms per peer, chunk indices in ``0 .. max_index`` (a u32), at
most ``max_ranges`` runs in one holding, at most ``max_holders`` holders per
swarm (the least recently seen holder makes room for a new one), at most
``max_introductions`` introductions per peer (the oldest is forgotten), at
most ``max_want`` indices per ``want``.

Errors carry the wire error ``code`` that the control socket sends back:
``TrackerError`` subclasses for the tracker's own refusals, and
``protocol.values.BadChunks`` for chunk indices out of range or a holding
too fragmented (``ChunkSet`` raises it too)::

    TrackerError (ValueError)
    ├── UnknownPeer        "unknown_peer"
    └── TooManyTracks      "too_many_tracks"
    BadChunks (ValueError) "bad_field"
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from protocol.limits import MAX_CANDIDATES, MAX_HOLDERS, MAX_INDEX, MAX_INTRODUCTIONS, MAX_RANGES, MAX_TRACKS, MAX_WANT
from protocol.values import BadChunks, Candidate, ChunkSet

from .networks import UNKNOWN_PLACE, Networks, Place, parse_address, scope

__all__ = ["Tracker", "TrackerError", "UnknownPeer", "TooManyTracks", "address_group",
           "SINK_OFFERS", "SINK_SECONDS", "NEAR_TRIAL_SECONDS", "NEAR_SCOPES"]

# Offered this many times, the first this long ago (two stats intervals and
# more: a delivery is reported within one), with no delivery since: sunk.
SINK_OFFERS = 3
SINK_SECONDS = 15.0
# A near holder introduced to an asker this long ago that delivered it nothing
# no longer keeps far holders from it: the server's lead (10 s) plus a stats
# interval and more, so an honest pair has had time to show a delivery.
NEAR_TRIAL_SECONDS = 20.0
NEAR_SCOPES = ("same_lan", "same_network")
_SCOPE_RANK = {"same_lan": 0, "same_network": 1}


def address_group(address: str | None) -> str | None:
    """The group an address counts in for diversity: its IPv4 /24 or IPv6 /64
    (one household, one small network); None for no address or one unreadable."""
    ip = parse_address(address)
    if ip is None:
        return None
    prefix = 24 if ip.version == 4 else 64
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


class TrackerError(ValueError):
    """A request the tracker refuses; ``code`` is the wire error code."""

    code = "tracker_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class UnknownPeer(TrackerError):
    code = "unknown_peer"


class TooManyTracks(TrackerError):
    code = "too_many_tracks"


@dataclass(slots=True)
class _Holding:
    chunks: ChunkSet = field(default_factory=ChunkSet)
    complete: bool = False


@dataclass(slots=True)
class _Peer:
    id: str
    last_seen: float
    in_use: int = 0
    # Its address group (``address_group``); None: a group of its own.
    group: str | None = None
    # Its LAN and network (``Networks.place``), for nearness.
    place: Place = UNKNOWN_PLACE
    # Verified bytes leechers said it delivered (``credit``).
    delivered: int = 0
    # Offers (answers it was in) since its last delivery, the first at ``first_unanswered``.
    unanswered: int = 0
    first_unanswered: float = 0.0
    # swarm key -> holding; insertion order is announce order.
    holdings: dict[tuple[str, str], _Holding] = field(default_factory=dict)
    # Introduced peers -> when first introduced; oldest (least recently re-introduced) first.
    introduced: dict[str, float] = field(default_factory=dict)
    # The introduced peers that delivered this one verified bytes (``credit(..., to=)``).
    # None until the first: an empty set is 216 bytes, and most idle peers never download.
    served_by: set[str] | None = None


class Tracker:
    """Holders per ``(track, rendition)`` and the introductions made among them.

    All methods raise ``UnknownPeer`` for a peer that has not ``join``-ed
    (or was removed), unless said otherwise.
    """

    def __init__(
        self,
        *,
        upload_slots: int = 4,
        max_tracks: int = MAX_TRACKS,
        max_index: int = MAX_INDEX,
        max_ranges: int = MAX_RANGES,
        max_holders: int = MAX_HOLDERS,
        max_introductions: int = MAX_INTRODUCTIONS,
        max_want: int = MAX_WANT,
        networks: Networks | None = None,
    ) -> None:
        if upload_slots < 1:
            raise ValueError("upload_slots must be at least 1")
        self.upload_slots = upload_slots
        self.max_tracks = max_tracks
        self.max_index = max_index
        self.max_ranges = max_ranges
        self.max_holders = max_holders
        self.max_introductions = max_introductions
        self.max_want = max_want
        self.networks = networks if networks is not None else Networks()
        self._peers: dict[str, _Peer] = {}
        # swarm key -> ids of its holders (an ordered set: dict keys).
        self._swarms: dict[tuple[str, str], dict[str, None]] = {}

    # -- peers ---------------------------------------------------------------

    def __contains__(self, peer: object) -> bool:
        return peer in self._peers

    def __len__(self) -> int:
        return len(self._peers)

    def join(self, peer: str, now: float, address: str | None = None) -> None:
        """Register a new peer with no holdings and no slot in use; ``address``
        (its client address) places it in a group for diversity and in a
        LAN and network for nearness."""
        if peer in self._peers:
            raise ValueError(f"peer {peer!r} already joined")
        self._peers[peer] = _Peer(peer, now, group=address_group(address), place=self.networks.place(address))

    def place(self, peer: str) -> Place:
        """Where ``peer`` is (``UNKNOWN_PLACE`` for a peer unknown, or of unknown address)."""
        p = self._peers.get(peer)
        return p.place if p is not None else UNKNOWN_PLACE

    def credit(self, peer: str, delivered: int, now: float, to: str | None = None) -> None:
        """A leecher (``to``, when known) received ``delivered`` verified bytes
        from ``peer``: it has shown what it holds. No error if unknown (it may
        have left since)."""
        p = self._peers.get(peer)
        if p is None or delivered <= 0:
            return
        p.delivered += delivered
        p.unanswered = 0
        leecher = self._peers.get(to) if to is not None else None
        if leecher is not None and peer in leecher.introduced:
            if leecher.served_by is None:
                leecher.served_by = set()
            leecher.served_by.add(peer)

    def delivered(self, peer: str) -> int:
        """The verified bytes leechers said ``peer`` delivered."""
        return self._get(peer).delivered

    def sunk(self, peer: str, now: float) -> bool:
        """Whether ``peer`` was offered ``SINK_OFFERS`` times, the first
        ``SINK_SECONDS`` ago or more, and delivered nothing since."""
        p = self._get(peer)
        return p.unanswered >= SINK_OFFERS and now - p.first_unanswered >= SINK_SECONDS

    def touch(self, peer: str, now: float) -> None:
        """The peer was seen (it sent a message): it counts as recent again."""
        self._get(peer).last_seen = now

    def last_seen(self, peer: str) -> float:
        return self._get(peer).last_seen

    def remove(self, peer: str) -> None:
        """Forget a peer entirely: holdings and introductions. No error if unknown."""
        p = self._peers.pop(peer, None)
        if p is None:
            return
        for key in p.holdings:
            self._unhold(key, peer)
        for other in p.introduced:
            q = self._peers.get(other)
            if q is not None:
                q.introduced.pop(peer, None)
                if q.served_by is not None:
                    q.served_by.discard(peer)

    def expire(self, now: float, ttl: float) -> list[str]:
        """Remove every peer not seen for more than ``ttl`` seconds; returns their ids."""
        stale = [p.id for p in self._peers.values() if now - p.last_seen > ttl]
        for peer in stale:
            self.remove(peer)
        return stale

    # -- slots ---------------------------------------------------------------

    def set_slots(self, peer: str, in_use: int) -> None:
        """The number of upload slots the peer now uses (0 ..)."""
        if in_use < 0:
            raise ValueError("in_use must not be negative")
        self._get(peer).in_use = in_use

    def free_slots(self, peer: str) -> int:
        return max(0, self.upload_slots - self._get(peer).in_use)

    # -- holdings ------------------------------------------------------------

    def announce(
        self,
        peer: str,
        track: str,
        rendition: str,
        chunks: ChunkSet | Iterable[int],
        now: float,
        *,
        complete: bool = False,
        replace: bool = False,
    ) -> None:
        """The peer holds ``chunks`` of ``(track, rendition)``, in addition to
        what it announced before (or instead of it, with ``replace``).

        ``complete=True`` says it holds every chunk of the track. Raises
        ``TooManyTracks`` for a new swarm past ``max_tracks``, ``BadChunks``
        for an index out of range or a holding too fragmented; on any error
        nothing changes.
        """
        p = self._get(peer)
        if not isinstance(chunks, ChunkSet):
            chunks = ChunkSet.of(chunks, max_index=self.max_index, max_ranges=self.max_ranges)
        elif chunks.runs and chunks.runs[-1][1] > self.max_index:
            raise BadChunks(f"chunk index {chunks.runs[-1][1]} is not within 0..{self.max_index}")
        key = (track, rendition)
        holding = p.holdings.get(key)
        if holding is None or replace:
            new_chunks, new_complete = chunks, complete
        else:
            new_chunks = holding.chunks.union(chunks, max_ranges=self.max_ranges)
            new_complete = complete or holding.complete
        if len(new_chunks.runs) > self.max_ranges:
            raise BadChunks(f"more than {self.max_ranges} separate chunk ranges in one holding")
        if holding is None and (new_chunks or new_complete) and len(p.holdings) >= self.max_tracks:
            raise TooManyTracks(f"a peer may announce at most {self.max_tracks} tracks at once")
        p.last_seen = now
        if not new_chunks and not new_complete:
            # An empty holding is no holding: it must not count against the cap.
            if holding is not None:
                del p.holdings[key]
                self._unhold(key, peer)
            return
        if holding is None:
            holding = p.holdings[key] = _Holding()
            self._hold(key, peer)
        holding.chunks = new_chunks
        holding.complete = new_complete

    def leave(self, peer: str, track: str, rendition: str | None = None) -> None:
        """Drop the peer's holdings of ``track`` (one rendition, or all of them)."""
        p = self._get(peer)
        for key in [k for k in p.holdings if k[0] == track and (rendition is None or k[1] == rendition)]:
            del p.holdings[key]
            self._unhold(key, peer)

    def holding(self, peer: str, track: str, rendition: str) -> ChunkSet | None:
        """What the peer announced for ``(track, rendition)``, or ``None``."""
        h = self._get(peer).holdings.get((track, rendition))
        return h.chunks if h is not None else None

    def tracks(self, peer: str) -> list[tuple[str, str]]:
        """The ``(track, rendition)`` pairs the peer holds, oldest announce first."""
        return list(self._get(peer).holdings)

    def holders(self, track: str, rendition: str) -> list[str]:
        return list(self._swarms.get((track, rendition), ()))

    # -- want and introductions ----------------------------------------------

    def want(
        self,
        peer: str,
        track: str,
        rendition: str,
        needed: Sequence[int],
        now: float,
        limit: int = MAX_CANDIDATES,
    ) -> list[Candidate]:
        """Up to ``limit`` holders to fetch ``needed`` from; each one is introduced
        to ``peer``. See the module docstring for the choice.

        Raises ``BadChunks`` for more than ``max_want`` indices or one out of range.
        """
        asker = self._get(peer)
        if len(needed) > self.max_want:
            raise BadChunks(f"at most {self.max_want} chunks per want")
        for i in needed:
            if not 0 <= i <= self.max_index:
                raise BadChunks(f"chunk index {i} is not within 0..{self.max_index}")
        asker.last_seen = now
        key = (track, rendition)
        found: list[tuple[int, float, Candidate, _Peer]] = []
        for holder_id in self._swarms.get(key, ()):
            if holder_id == peer:
                continue
            holder = self._peers[holder_id]
            if holder.in_use >= self.upload_slots:
                continue
            holding = holder.holdings[key]
            held = tuple(needed) if holding.complete else holding.chunks.among(needed)
            if needed and not held:
                continue
            found.append((self._tier(holder, now), holder.last_seen, Candidate(holder_id, held, holding.complete), holder))
        # Ties in recency go to whoever holds more of what is needed, then to
        # the smaller id, so that the answer never depends on dict order.
        found.sort(key=lambda f: (f[0], -f[1], -len(f[2].chunks), f[2].peer_id))
        if any(self._near(asker, f[3], now) for f in found):
            # Near holders only: same LAN, then same network, each in trust
            # order, the sunk ones (never near) after them.
            found = [f for f in found if self._near(asker, f[3], now)
                     or (f[0] == 2 and scope(asker.place, f[3].place) in NEAR_SCOPES)]
            found.sort(key=lambda f: (f[0] == 2, _SCOPE_RANK[scope(asker.place, f[3].place)]))
        chosen = self._choose(asker, found, limit)
        for holder in chosen:
            self._introduce(asker, holder, now)
            if holder.unanswered == 0:
                holder.first_unanswered = now
            holder.unanswered += 1
        by_id = {f[3].id: f[2] for f in found}
        return [by_id[h.id] for h in chosen]

    def _near(self, asker: _Peer, holder: _Peer, now: float) -> bool:
        """Whether ``holder`` is near ``asker`` (module docstring, "Nearness")."""
        if scope(asker.place, holder.place) not in NEAR_SCOPES or self._tier(holder, now) == 2:
            return False
        since = asker.introduced.get(holder.id)
        return (since is None or now - since < NEAR_TRIAL_SECONDS
                or (asker.served_by is not None and holder.id in asker.served_by))

    def near_holders(self, peer: str, track: str, rendition: str, needed: Sequence[int], now: float) -> list[str]:
        """The holders a ``want`` of ``needed`` would find near ``peer`` (eligible
        by the rules of ``want``), in no particular order."""
        asker = self._get(peer)
        key = (track, rendition)
        out = []
        for holder_id in self._swarms.get(key, ()):
            holder = self._peers[holder_id]
            if holder_id == peer or holder.in_use >= self.upload_slots or not self._near(asker, holder, now):
                continue
            holding = holder.holdings[key]
            if needed and not holding.complete and not holding.chunks.among(needed):
                continue
            out.append(holder_id)
        return out

    def _tier(self, holder: _Peer, now: float) -> int:
        """0 proven (delivered, not sunk since), 1 on probation, 2 sunk."""
        if holder.unanswered >= SINK_OFFERS and now - holder.first_unanswered >= SINK_SECONDS:
            return 2
        return 0 if holder.delivered else 1

    def _choose(self, asker: _Peer, found: list[tuple[int, float, Candidate, _Peer]], limit: int) -> list[_Peer]:
        """Up to ``limit`` of ``found`` (in order), by the diversity cap of "Trust" (module docstring)."""
        if limit <= 0:
            return []
        groups = {f[3].group if f[3].group is not None else f[3].id for f in found}
        share = max(1, math.ceil(limit / max(1, len(groups))))
        taken: dict[str, int] = {}
        chosen: list[_Peer] = []
        held_back: list[_Peer] = []
        for _tier, _seen, _c, holder in found:
            if len(chosen) >= limit:
                break
            group = holder.group
            over_share = group is not None and group != asker.group and taken.get(group, 0) >= share
            if over_share:
                held_back.append(holder)
                continue
            if group is not None:
                taken[group] = taken.get(group, 0) + 1
            chosen.append(holder)
        for holder in held_back:
            if len(chosen) >= limit:
                break
            chosen.append(holder)
        # The answer stays in the order of ``found``.
        rank = {f[3].id: i for i, f in enumerate(found)}
        chosen.sort(key=lambda h: rank[h.id])
        return chosen

    def introduce(
        self, peer: str, holder: str, track: str, rendition: str, needed: Sequence[int], now: float
    ) -> Candidate | str:
        """Introduce ``peer`` to ``holder`` by the rules of ``want``: it holds
        (track, rendition), one of the ``needed`` chunks (any when empty) and has
        a free upload slot. The candidate, or why not: ``"not_a_holder"`` (not
        known to hold that swarm) or ``"busy"`` (no free slot, none of the
        chunks). For the overlay: a neighbour named ``holder``."""
        asker = self._get(peer)
        asker.last_seen = now
        h = self._peers.get(holder)
        holding = h.holdings.get((track, rendition)) if h is not None and holder != peer else None
        if h is None or holding is None:
            return "not_a_holder"
        held = tuple(needed) if holding.complete else holding.chunks.among(needed)
        if h.in_use >= self.upload_slots or (needed and not held):
            return "busy"
        if not self._near(asker, h, now) and self.near_holders(peer, track, rendition, needed, now):
            # As a want answer would not offer it: the asker has holders nearer.
            return "busy"
        self._introduce(asker, h, now)
        return Candidate(holder, held, holding.complete)

    def introduced(self, a: str, b: str) -> bool:
        """Whether signals may pass between ``a`` and ``b`` (either direction)."""
        p = self._peers.get(a)
        return p is not None and b in p.introduced and b in self._peers

    def elsewhere(self, peer: str) -> bool:
        """Whether ``peer`` is connected to another node of a cluster (gateway/cluster/);
        a tracker alone knows no other node."""
        return False

    def introductions(self, peer: str) -> list[str]:
        return list(self._get(peer).introduced)

    # -- internals -----------------------------------------------------------

    def _get(self, peer: str) -> _Peer:
        p = self._peers.get(peer)
        if p is None:
            raise UnknownPeer(f"no peer {peer!r}")
        return p

    def _hold(self, key: tuple[str, str], peer: str) -> None:
        swarm = self._swarms.setdefault(key, {})
        if len(swarm) >= self.max_holders:
            # Make room: the least recently seen holder loses this holding
            # (not its connection); a busy swarm stays made of live peers.
            stalest = min(swarm, key=lambda q: self._peers[q].last_seen)
            del self._peers[stalest].holdings[key]
            del swarm[stalest]
        swarm[peer] = None

    def _unhold(self, key: tuple[str, str], peer: str) -> None:
        swarm = self._swarms.get(key)
        if swarm is None:
            return
        swarm.pop(peer, None)
        if not swarm:
            del self._swarms[key]

    def _introduce(self, a: _Peer, b: _Peer, now: float) -> None:
        for x, y in ((a, b), (b, a)):
            # Re-introducing refreshes the pair (moves it to the young end) but
            # keeps when it was first made: a near holder's trial runs from there.
            since = x.introduced.pop(y.id, now)
            x.introduced[y.id] = since
            while len(x.introduced) > self.max_introductions:
                oldest = next(iter(x.introduced))
                del x.introduced[oldest]
                if x.served_by is not None:
                    x.served_by.discard(oldest)
                other = self._peers.get(oldest)
                if other is not None:
                    other.introduced.pop(x.id, None)
                    if other.served_by is not None:
                        other.served_by.discard(x.id)
