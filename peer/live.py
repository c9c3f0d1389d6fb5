"""Listening at the live edge: the rules the headless peer and the browser share.

Theory of operation
-------------------
A live track's manifest is a sliding window of chunks, oldest first, whose
newest entry is the *edge* (the live contract, docs/live.md). A listener
plays a small distance behind the edge's end and keeps it; a new chunk at
the edge is wanted by every listener within the same second, so the swarm
elects who fetches it over HTTP and the others take it from a peer. These
are pure functions of what the caller knows, with no clock of their own
(times are arguments), rule for rule the same as ``client/live-edge.js``;
``tests/vectors/live-edge.json`` pins both.

- ``start_index(entries, behind)``: where a listener joining now starts:
  walking back from the edge, the first chunk at which at least ``behind``
  seconds of audio (the entries' durations, so a reconnect that restarted
  the timeline does not matter) lie between its start and the edge's end.
  An empty window has no start (None); a window shorter than ``behind``
  starts at its oldest chunk.
- ``pace_action(distance, target)``: how to keep the distance (the
  playhead's, in seconds, behind the end of the newest chunk known) at
  ``target`` (the manifest's ``start_behind_seconds``): within
  ``PACE_TOLERANCE`` of it play at 1x; further behind play at ``RATE_FAST``;
  closer play at ``RATE_SLOW`` (a buffer builds up again); past
  ``max(JUMP_FACTOR * target, target + JUMP_MARGIN)`` jump so as to be
  ``target`` behind again (``Jump(to=target)``): catching up at 3 % would
  take minutes. While ``recovering`` (the caller's: for ``RECOVER_SECONDS``
  after playback resumed from a stall) it jumps as soon as it is more than
  ``PACE_TOLERANCE`` further behind than ``target``: a source that comes back
  often sends what it held meanwhile in one burst, which would leave every
  listener that many seconds further behind; the stall was a gap already, so
  the jump adds none.
- ``elected_fetcher(self_id, neighbour_ids, index)``: of a listener and its
  neighbours, the one that fetches chunk ``index`` from the server as soon
  as it exists: the smallest ``election_hash(id, index)``, murmur3's
  finaliser ``fmix32`` over the FNV-1a 32-bit hash of ``"<id>:<index>"``
  (UTF-8), ties by the smaller id. FNV-1a alone mixes the last bytes (the
  index's digits) too little: for about one pair of listeners in ten it
  split consecutive chunks worse than 80/20 (one listener uploaded nearly
  everything); the finaliser splits every pair close to 50/50. Each listener decides alone, from what it
  sees; the listener with the smallest hash of a connected group is elected
  in its own view, so at least one fetches. The hash changes with the
  index, so the fetching is spread over the listeners.
- ``fetch_wait(self_id, neighbour_ids, index, peer_wait)``: how long a
  listener waits for a neighbour before taking chunk ``index`` from the
  server. Every elected fetcher fetching at once costs about n / (d + 1)
  HTTP fetches per chunk (n listeners of degree d: ~21 of 200), so: 0 for an
  elected fetcher whose hash is under ``AT_ONCE_SHARE`` of the range, or
  that has fewer than ``SMALL_NEIGHBOURHOOD`` neighbours (a small swarm, where
  it is the only fetcher anyway); ``SOON_FACTOR * peer_wait`` for another
  elected fetcher, counted from when the chunk was due (the caller's: in a
  large swarm a low-hash fetcher a few hops away has delivered it by then);
  ``peer_wait`` for everyone else. ``bench/live_election.py`` (a simulation)
  chose the figures: at 200 listeners 8.5 fetches per chunk instead of 21,
  2 and 5 listeners unchanged.
- ``live_fetch_delay(...)``: how long a listener waits, from the moment it
  learnt of a new chunk, before it takes that chunk from the server: 0 when
  elected; otherwise ``peer_wait`` (the manifest's ``peer_wait_seconds``)
  less what it has waited already, and never so long that the server could
  not deliver it before it is needed (``until_needed - http_seconds``).
  Taking it from a peer meanwhile is the scheduler's ordinary path; the
  emergency path to the server is unchanged.
- ``delta_after(held)`` and ``merge_delta(held, delta)``: live polls after
  the first read ask ``manifest?after=N`` (docs/live.md), N the newest index
  held (None: nothing held, read the whole window); the answer lists only
  the chunks past N, plus the window's ``first`` index, and the merge makes
  the whole window again (the held chunks from ``first`` to ``edge``, then
  the delta's), so that what reads it sees whole windows. A delta without
  ``first`` (a gateway that answered the whole window) is taken whole.
- ``live_latency(now, wall, offset)``: what ``stats.live_latency_seconds``
  reports: the gateway's ``wall`` of the chunk playing (when its first
  sample arrived from the upstream) plus ``offset``, the playhead's position
  within it, against ``now`` on the same clock; never negative.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "JUMP_FACTOR",
    "JUMP_MARGIN",
    "PACE_TOLERANCE",
    "RECOVER_SECONDS",
    "RATE_FAST",
    "RATE_SLOW",
    "Jump",
    "PaceAction",
    "Rate",
    "delta_after",
    "AT_ONCE_SHARE",
    "SMALL_NEIGHBOURHOOD",
    "SOON_FACTOR",
    "elected_fetcher",
    "election_hash",
    "fetch_wait",
    "fmix32",
    "fnv1a32",
    "live_fetch_delay",
    "live_latency",
    "merge_delta",
    "pace_action",
    "start_index",
]

RATE_FAST = 1.03  # behind: catch up, gently (pitch is kept by the browsers)
RATE_SLOW = 0.97  # too close to the edge: let the buffer grow again
# A 1 s chunk appears in the manifest up to a poll later than it was cut, so
# the measured distance saw-tooths by about a second around the true one.
PACE_TOLERANCE = 1.0
JUMP_FACTOR = 3.0
JUMP_MARGIN = 3.0  # seconds: a small target does not make every wobble a jump
RECOVER_SECONDS = 5.0  # after a stall, this long, a listener behind its target jumps back to it

# fetch_wait: a local minimum whose hash is under this share of the 32-bit
# range takes a new chunk from the server at once (bench/live_election.py)
AT_ONCE_SHARE = 0.05
# ... as does one with fewer neighbours than this (the peers' want_neighbours:
# a listener that has not found that many is in a small swarm)
SMALL_NEIGHBOURHOOD = 5
# the other local minima wait this share of peer_wait_seconds, from when the chunk was due
SOON_FACTOR = 0.4

_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193


@dataclass(frozen=True, slots=True)
class Rate:
    """Play at ``rate`` (1.0, ``RATE_FAST`` or ``RATE_SLOW``)."""

    rate: float


@dataclass(frozen=True, slots=True)
class Jump:
    """Seek so as to be ``to`` seconds behind the end of the newest chunk."""

    to: float


PaceAction = Rate | Jump


def fnv1a32(text: str) -> int:
    """FNV-1a, 32 bits, of ``text`` as UTF-8."""
    h = _FNV_OFFSET
    for byte in text.encode():
        h = ((h ^ byte) * _FNV_PRIME) & 0xFFFFFFFF
    return h


def fmix32(h: int) -> int:
    """murmur3's 32-bit finaliser: every input bit flips about half the output bits (a bijection)."""
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    return h ^ (h >> 16)


def election_hash(peer_id: str, index: int) -> int:
    """The hash ``elected_fetcher`` compares: ``fmix32(fnv1a32("<peer_id>:<index>"))``."""
    return fmix32(fnv1a32(f"{peer_id}:{index}"))


def start_index(entries: Sequence[Mapping[str, object]], behind_seconds: float) -> int | None:
    """The index of the chunk a listener joining now starts at; None for an empty window.

    ``entries`` are the manifest's ``chunks`` (oldest first; ``index`` and
    ``duration`` are read).
    """
    if not entries:
        return None
    ahead = 0.0
    for entry in reversed(entries):
        ahead += _number(entry["duration"])
        # A hair of tolerance: durations are sums of float frame lengths.
        if ahead >= behind_seconds - 1e-9:
            return int(_number(entry["index"]))
    return int(_number(entries[0]["index"]))


def pace_action(distance: float, target: float, recovering: bool = False) -> PaceAction:
    """What the player does to stay ``target`` seconds behind the edge's end,
    being ``distance`` behind it now; ``recovering``: it resumed from a stall
    less than ``RECOVER_SECONDS`` ago (not at the start: a jump there would skip
    what the listener has just begun to hear)."""
    if distance > max(JUMP_FACTOR * target, target + JUMP_MARGIN) or (
        recovering and distance > target + PACE_TOLERANCE
    ):
        return Jump(target)
    if distance > target + PACE_TOLERANCE:
        return Rate(RATE_FAST)
    if distance < target - PACE_TOLERANCE:
        return Rate(RATE_SLOW)
    return Rate(1.0)


def elected_fetcher(self_id: str, neighbour_ids: Iterable[str], index: int) -> str:
    """The id, among ``self_id`` and ``neighbour_ids``, that fetches chunk ``index`` over HTTP."""
    best = self_id
    best_hash = election_hash(self_id, index)
    for peer in neighbour_ids:
        h = election_hash(peer, index)
        if h < best_hash or (h == best_hash and peer < best):
            best, best_hash = peer, h
    return best


def fetch_wait(self_id: str, neighbour_ids: Iterable[str], index: int, peer_wait: float) -> float:
    """Seconds ``self_id`` waits for a neighbour before taking chunk ``index`` from the server.

    0 when it is the chunk's elected fetcher (``elected_fetcher``) and its
    ``election_hash`` is under ``AT_ONCE_SHARE`` of the range or it has fewer
    than ``SMALL_NEIGHBOURHOOD`` neighbours; ``SOON_FACTOR * peer_wait`` for
    the other elected fetchers (counted from when the chunk was due: the
    caller's); ``peer_wait`` for everyone else.
    """
    nbrs = list(neighbour_ids)
    if elected_fetcher(self_id, nbrs, index) != self_id:
        return peer_wait
    if election_hash(self_id, index) < AT_ONCE_SHARE * 2**32 or len(set(nbrs) - {self_id}) < SMALL_NEIGHBOURHOOD:
        return 0.0
    return SOON_FACTOR * peer_wait


def delta_after(held: Mapping[str, object] | None) -> int | None:
    """The ``after`` of the next live poll: the newest chunk index ``held`` lists, None when it lists none."""
    chunks = held.get("chunks") if held is not None else None
    if not isinstance(chunks, list) or not chunks:
        return None
    return max(int(_number(c["index"])) for c in chunks)


def merge_delta(held: Mapping[str, Any] | None, delta: Mapping[str, Any]) -> dict[str, Any]:
    """The window again from a delta read (``manifest?after=N``) and the window ``held``.

    The delta's fields, with ``chunks`` the held ones from the delta's
    ``first`` to its ``edge`` and the delta's own, oldest first (an index in
    both: the delta's). ``first`` absent: the delta is taken whole; ``None``:
    the window is empty.
    """
    if "first" not in delta or held is None or not isinstance(held.get("chunks"), list):
        return dict(delta)
    first, edge = delta["first"], delta.get("edge")
    by_index: dict[int, Any] = {}
    if isinstance(first, int):
        top = edge if isinstance(edge, int) else math.inf
        for c in held["chunks"]:
            if first <= int(c["index"]) <= top:
                by_index[int(c["index"])] = c
    for c in delta["chunks"]:
        by_index[int(c["index"])] = c
    return {**delta, "chunks": [by_index[i] for i in sorted(by_index)]}


def live_fetch_delay(
    *, elected: bool, peer_wait: float, waited: float, until_needed: float, http_seconds: float
) -> float:
    """Seconds to wait still before fetching a new chunk from the server.

    ``elected``: this listener is the chunk's elected fetcher; ``peer_wait``:
    the manifest's ``peer_wait_seconds``; ``waited``: seconds since the
    listener learnt of the chunk (the manifest or a neighbour's HAVE);
    ``until_needed``: seconds until the playhead reaches it; ``http_seconds``:
    what a server fetch takes (the listener's estimate).
    """
    if elected:
        return 0.0
    return max(0.0, min(peer_wait - waited, until_needed - http_seconds))


def live_latency(now: float, wall: float, offset: float) -> float:
    """The distance, in seconds, from the upstream's bytes to the playback:
    ``now`` against the playing chunk's ``wall`` plus the playhead's ``offset``
    into it (same clock); clamped at 0 (a clock a little ahead of the gateway's)."""
    return max(0.0, now - (wall + offset))


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)
