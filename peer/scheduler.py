"""The download scheduler, rule for rule the same as ``client/scheduler.js``.

Theory of operation
-------------------
The scheduler knows the manifest (chunk index -> start, duration), which
chunks are buffered, which ones the local persistent cache holds, which ones
each peer holds, and which requests are in flight. The I/O shell
(``peer/node.py`` here, ``client/player.js`` in the browser) feeds it events
and asks, as often as it likes, ``next(now, playhead)``: the answer is the
requests to start now, each ``Request(index, source, deadline)`` where
``source`` is ``"cache"``, ``"server"`` or a peer id. The shell performs them
and reports back with ``received(index)`` or ``failed(index)``; it also calls
``expired(now, playhead)`` regularly and aborts what it returns.

Time is always an argument (``now``, in seconds, any monotonic clock; the
headless peer passes its virtual clock), so the rules are exact and testable.

Rules, in the order they are applied to every chunk of the window (the chunks
that overlap ``[playhead, playhead + buffer_ahead)``, nearest first):

1. A chunk that the persistent cache holds is read from the cache.
2. The chunks of the first ``server_lead`` seconds after a start or a seek
   (the "anchor") come from the server.
3. Emergency mode: when less than ``emergency_ahead`` seconds are buffered
   contiguously ahead of the playhead, everything comes from the server, and
   in-flight peer requests for chunks inside that zone are expired. The mode
   ends once ``recover_ahead`` seconds are buffered (hysteresis).
4. Otherwise a peer that holds the chunk, has a free slot and has not failed
   this chunk before gets the request, with a deadline: the moment the
   playhead (at 1x) would come within ``emergency_ahead`` of the chunk's
   start, capped at ``max_peer_wait`` from now. A request that would leave a
   peer less than ``min_peer_window`` seconds goes to the server. While some
   holder is only busy, the scheduler waits for its slot, as long as the
   deadline allows; and while the P2P side is still looking for peers
   (``set_peer_wait(until)``: the tracker has not answered yet, connections
   are opening), a chunk with such a window waits until ``until`` rather
   than go to the server.
5. Everything else comes from the server, at most ``server_parallel`` at a
   time; a failed server request is retried after ``retry_delay``.
6. While the manifest is not complete and less than ``live_edge_ahead``
   seconds are buffered ahead, the chunk after the last listed one (the
   "live edge") is asked from the server.

The JavaScript module is the reference: both are run against the shared
vectors in ``tests/vectors/scheduler/`` (``tests/unit/peer/test_scheduler.py`` and
``tests/js/scheduler-vectors.test.mjs``). Settings carry the same names in
snake_case; ``Scheduler.from_js_settings`` takes the camelCase ones.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_SETTINGS",
    "SERVER",
    "CACHE",
    "Chunk",
    "Request",
    "Settings",
    "Scheduler",
    "chunk_index_at",
    "js_to_snake",
]

SERVER = "server"
CACHE = "cache"
EPSILON = 1e-3


@dataclass(frozen=True, slots=True)
class Settings:
    buffer_ahead: float = 30  # seconds of audio to hold ahead of the playhead
    emergency_ahead: float = 4  # below this many seconds buffered ahead: server only
    recover_ahead: float = 8  # leave emergency mode once this much is buffered
    server_lead: float = 10  # seconds after a start or a seek that come from the server
    server_parallel: int = 2  # concurrent server requests
    cache_parallel: int = 4  # concurrent reads from the persistent cache
    peer_slots: int = 2  # concurrent requests per peer unless the peer says otherwise
    min_peer_window: float = 1.5  # a peer must get at least this many seconds
    max_peer_wait: float = 8  # a peer request never waits longer than this
    retry_delay: float = 1  # pause before asking the server again for a failed chunk
    max_inflight: int = 8  # all sources together
    live_edge_ahead: float = 4  # ask for the live edge only with less than this buffered ahead


DEFAULT_SETTINGS = Settings()


def js_to_snake(name: str) -> str:
    """``bufferAhead`` -> ``buffer_ahead``: the JavaScript setting names."""
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


@dataclass(frozen=True, slots=True)
class Chunk:
    index: int
    start: float
    duration: float


@dataclass(frozen=True, slots=True)
class Request:
    """Fetch chunk ``index`` from ``source`` ("cache", "server" or a peer id).

    ``deadline`` (same clock as ``now``) is set for peer requests only; ``live``
    marks a request for the chunk after the last one of a live manifest.
    """

    index: int
    source: str
    deadline: float | None = None
    live: bool = False


@dataclass(slots=True)
class _Peer:
    id: str
    have: set[int]
    slots: int
    failures: int = 0


def chunk_index_at(chunks: list[Chunk], t: float) -> int:
    """Index of the chunk that holds time ``t``; -1 past the known chunks.

    Before the first chunk, the first one. ``chunks`` is sorted by start.
    """
    lo, hi, found = 0, len(chunks) - 1, -1
    while lo <= hi:
        mid = (lo + hi) >> 1
        if chunks[mid].start <= t + EPSILON:
            found = mid
            lo = mid + 1
        else:
            hi = mid - 1
    if found < 0:
        return chunks[0].index if chunks and t < chunks[0].start else -1
    c = chunks[found]
    return c.index if t < c.start + c.duration else -1


@dataclass(slots=True)
class Scheduler:
    settings: Settings = field(default_factory=Settings)
    chunks: list[Chunk] = field(default_factory=list)
    by_index: dict[int, Chunk] = field(default_factory=dict)
    complete: bool = False
    anchor: float = 0.0
    emergency: bool = True  # nothing buffered yet
    buffered: set[int] = field(default_factory=set)
    cached: set[int] = field(default_factory=set)
    inflight: dict[int, Request] = field(default_factory=dict)
    peers: dict[str, _Peer] = field(default_factory=dict)
    peer_failed: dict[int, set[str]] = field(default_factory=dict)
    retry_at: dict[int, float] = field(default_factory=dict)
    peer_wait_until: float = -math.inf  # peers are being looked for until then

    @classmethod
    def from_js_settings(cls, settings: Mapping[str, Any]) -> Scheduler:
        """A scheduler with settings named as in ``client/scheduler.js``; raises ``TypeError``."""
        known = set(Settings.__dataclass_fields__)
        values = {}
        for key, value in settings.items():
            name = js_to_snake(key)
            if name not in known:
                raise TypeError(f"unknown scheduler setting: {key}")
            values[name] = value
        return cls(Settings(**values))

    # ---- events in ---------------------------------------------------------

    def set_manifest(self, manifest: Mapping[str, Any]) -> None:
        """A (new version of the) manifest: ``{"chunks": [{index, start, duration}], "complete"}``."""
        self.chunks = sorted(
            (Chunk(int(c["index"]), float(c["start"]), float(c["duration"])) for c in manifest["chunks"]),
            key=lambda c: c.index,
        )
        self.by_index = {c.index: c for c in self.chunks}
        self.complete = bool(manifest.get("complete"))

    def seek(self, position: float) -> list[Request]:
        """Playback starts or jumps to ``position``; returns the in-flight
        requests that no longer fall in the window, now forgotten."""
        self.anchor = position
        self.emergency = self.buffered_ahead(position) < self.settings.emergency_ahead
        keep = {c.index for c in self.window(position)}
        stale = []
        for index, req in list(self.inflight.items()):
            if index not in keep and not req.live:
                del self.inflight[index]
                stale.append(req)
        return stale

    def received(self, index: int) -> None:
        """Chunk ``index`` arrived: no need to fetch it again."""
        self.inflight.pop(index, None)
        self.retry_at.pop(index, None)
        self.buffered.add(index)

    def failed(self, index: int, now: float = 0) -> None:
        """A request failed: a peer is not asked for that chunk again, the
        server is asked again after ``retry_delay``, a cache miss clears the entry."""
        req = self.inflight.pop(index, None)
        if req is None:
            return
        if req.source == CACHE:
            self.cached.discard(index)
        elif req.source == SERVER:
            self.retry_at[index] = now + self.settings.retry_delay
        else:
            self._note_peer_failure(req.source, index)

    def evicted(self, index: int) -> None:
        self.buffered.discard(index)

    def set_buffered(self, indices: Iterable[int]) -> None:
        self.buffered = set(indices)

    def set_cached(self, indices: Iterable[int]) -> None:
        self.cached = set(indices)

    def add_cached(self, index: int) -> None:
        self.cached.add(index)

    def set_peer(self, peer_id: str, have: Iterable[int] = (), slots: int | None = None) -> None:
        """A peer, or a new view of one (its holding replaces the old one)."""
        old = self.peers.get(peer_id)
        self.peers[peer_id] = _Peer(
            peer_id, set(have), self.settings.peer_slots if slots is None else slots, old.failures if old else 0
        )

    def peer_have(self, peer_id: str, indices: Iterable[int]) -> None:
        peer = self.peers.get(peer_id)
        if peer is not None:
            peer.have.update(indices)

    def set_peer_wait(self, until: float) -> None:
        """Peers may come until ``until`` (the clock of ``now``): until then a
        chunk that a peer would have time to send waits instead of going to
        the server. ``-inf`` (or anything not finite): stop waiting."""
        self.peer_wait_until = until if math.isfinite(until) else -math.inf

    def remove_peer(self, peer_id: str) -> list[Request]:
        """A peer is gone; returns its in-flight requests, now forgotten."""
        self.peers.pop(peer_id, None)
        lost = []
        for index, req in list(self.inflight.items()):
            if req.source == peer_id:
                del self.inflight[index]
                lost.append(req)
        return lost

    # ---- questions ---------------------------------------------------------

    def buffered_ahead(self, playhead: float) -> float:
        """Seconds buffered contiguously from ``playhead`` on."""
        end = playhead
        i = chunk_index_at(self.chunks, playhead)
        if i < 0:
            return 0.0
        while True:
            c = self.by_index.get(i)
            if c is None or i not in self.buffered:
                break
            end = c.start + c.duration
            i += 1
        return max(0.0, end - playhead)

    def buffered_to_end(self, playhead: float) -> bool:
        """True once every chunk from the playhead to the end of a complete track is buffered."""
        if not self.complete:
            return False
        for c in self.chunks:
            if c.start + c.duration <= playhead + EPSILON:
                continue
            if c.index not in self.buffered:
                return False
        return True

    def known_end(self) -> float:
        if not self.chunks:
            return 0.0
        last = self.chunks[-1]
        return last.start + last.duration

    def window(self, playhead: float) -> list[Chunk]:
        limit = playhead + self.settings.buffer_ahead
        return [c for c in self.chunks if c.start < limit and c.start + c.duration > playhead + EPSILON]

    def load(self, source: str) -> int:
        return sum(1 for req in self.inflight.values() if req.source == source)

    # ---- decisions out -----------------------------------------------------

    def next(self, now: float, playhead: float) -> list[Request]:
        """The requests to start now; they count as in flight from here on."""
        s = self.settings
        self._update_emergency(playhead)
        out: list[Request] = []

        def server_free() -> bool:
            return self.load(SERVER) < s.server_parallel

        for c in self.window(playhead):
            if len(self.inflight) >= s.max_inflight:
                break
            i = c.index
            if i in self.buffered or i in self.inflight:
                continue
            # 1. persistent cache
            if i in self.cached:
                if self.load(CACHE) < s.cache_parallel:
                    out.append(self._start(Request(i, CACHE)))
                continue
            retry_ok = self.retry_at.get(i, -math.inf) <= now
            # 2./3. start-up window and emergency: server
            in_lead = c.start < self.anchor + s.server_lead and c.start + c.duration > self.anchor
            if self.emergency or in_lead:
                if retry_ok and server_free():
                    out.append(self._start(Request(i, SERVER)))
                continue
            # 4. peers, with a deadline derived from the playhead
            slack = c.start - playhead - s.emergency_ahead
            if slack >= s.min_peer_window:
                deadline = now + min(slack, s.max_peer_wait)
                holders = self._holders(i)
                free = [p for p in holders if self.load(p.id) < p.slots]
                if free:
                    out.append(self._start(Request(i, free[0].id, deadline)))
                    continue
                if holders:
                    continue  # wait for a slot: there is time
                if now < self.peer_wait_until:
                    continue  # peers are being looked for: there is time
            # 5. server
            if retry_ok and server_free():
                out.append(self._start(Request(i, SERVER)))

        # 6. live edge
        if not self.complete and len(self.inflight) < s.max_inflight:
            edge = self.chunks[-1].index + 1 if self.chunks else 0
            wanted = self.known_end() < playhead + s.buffer_ahead and self.buffered_ahead(playhead) < s.live_edge_ahead
            retry_ok = self.retry_at.get(edge, -math.inf) <= now
            if wanted and retry_ok and edge not in self.inflight and edge not in self.buffered and server_free():
                out.append(self._start(Request(edge, SERVER, None, True)))
        return out

    def expired(self, now: float, playhead: float) -> list[Request]:
        """Peer requests to give up: past their deadline, or (in emergency
        mode) for chunks inside the emergency zone."""
        self._update_emergency(playhead)
        out = []
        for index, req in list(self.inflight.items()):
            if req.source in (SERVER, CACHE):
                continue
            c = self.by_index.get(index)
            urgent = self.emergency and c is not None and c.start < playhead + self.settings.emergency_ahead
            if (req.deadline is not None and now >= req.deadline) or urgent:
                del self.inflight[index]
                self._note_peer_failure(req.source, index)
                out.append(req)
        return out

    # ---- internals ---------------------------------------------------------

    def _start(self, req: Request) -> Request:
        self.inflight[req.index] = req
        return req

    def _holders(self, index: int) -> list[_Peer]:
        failed = self.peer_failed.get(index)
        out = [p for p in self.peers.values() if index in p.have and not (failed and p.id in failed)]
        # least loaded first, then fewest failures; sorted() is stable, so
        # insertion order breaks the remaining ties, as Array.sort does in JS
        return sorted(out, key=lambda p: (self.load(p.id), p.failures))

    def _note_peer_failure(self, peer_id: str, index: int) -> None:
        self.peer_failed.setdefault(index, set()).add(peer_id)
        peer = self.peers.get(peer_id)
        if peer is not None:
            peer.failures += 1

    def _update_emergency(self, playhead: float) -> None:
        ahead = self.buffered_ahead(playhead)
        if self.buffered_to_end(playhead):
            self.emergency = False
        elif ahead < self.settings.emergency_ahead:
            self.emergency = True
        elif ahead >= self.settings.recover_ahead:
            self.emergency = False
