"""The live window: a station's recent chunks, their indices and epochs. Pure: no I/O, the time is passed in.

Theory of operation: an ingest runs in *sessions*, one per connection to the
upstream (a reconnect starts the next). ``begin(now)`` opens a session and
fixes its first index, ``max(previous edge + 1, 2 * (int(now) - ORIGIN))``
with ``ORIGIN`` 2026-01-01: indices grow by one per chunk within a session
and never repeat for a track id, across reconnects and across gateway
restarts, with nothing persisted (a restart starts at least twice the seconds
since ``ORIGIN``, which a station of ~1 s chunks cannot have reached before;
the factor 2 leaves room for an upstream's burst at connect). Indices stay
under ``MAX_INDEX`` (the wire format's u32) until 2094.

Each session's output starts with an init segment (``add_init``). One equal
to the current one keeps the current *epoch*; another (the upstream's format
changed) opens a new epoch, numbered by the session's first index, so epoch
numbers never repeat either. Then come chunks (``add_chunk``), each tagged
with the epoch whose init segment decodes it.

The window keeps the newest chunks whose durations sum to at most
``seconds`` (at least one, and never more than ``max_chunks``); older ones
are dropped, and so is every init segment no kept chunk uses (the current
one stays). ``place(index)`` tells a request where an index stands: ``in``
the window, ``gone`` (older than it, or a gap between two sessions: it will
never be served), ``soon`` (at most ``LOOKAHEAD`` past the edge: worth a
bounded wait) or ``ahead`` (further: refused at once).
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from dataclasses import dataclass
from typing import Literal

from ..media.types import LiveChunkEntry, LiveInitEntry

__all__ = ["ORIGIN", "MAX_INDEX", "LOOKAHEAD", "LiveChunk", "LiveInit", "LiveWindow", "Place", "first_index"]

ORIGIN = 1_767_225_600  # 2026-01-01T00:00:00Z
MAX_INDEX = 2**32 - 1  # u32 on the wire (protocol/limits.py)
# A request for at most this many chunks past the edge waits for them.
LOOKAHEAD = 3

Place = Literal["in", "gone", "soon", "ahead"]


def first_index(previous_edge: int | None, now: float) -> int:
    """The first index of a session that starts at UNIX time ``now`` after ``previous_edge``."""
    base = 2 * max(0, int(now) - ORIGIN)
    return base if previous_edge is None else max(previous_edge + 1, base)


@dataclass(frozen=True, slots=True)
class LiveInit:
    epoch: int
    data: bytes
    sha256: str

    def entry(self) -> LiveInitEntry:
        return {"size": len(self.data), "sha256": self.sha256, "epoch": self.epoch}


@dataclass(frozen=True, slots=True)
class LiveChunk:
    index: int
    start: float
    duration: float
    data: bytes
    sha256: str
    wall: float
    epoch: int

    def entry(self) -> LiveChunkEntry:
        return {
            "index": self.index,
            "start": round(self.start, 3),
            "duration": round(self.duration, 3),
            "size": len(self.data),
            "sha256": self.sha256,
            "wall": round(self.wall, 3),
            "epoch": self.epoch,
        }


class WindowError(RuntimeError):
    """A call out of order (a chunk before its session's init segment, an index past ``MAX_INDEX``)."""


class LiveWindow:
    """The chunks of one station and rendition that can still be served."""

    def __init__(self, seconds: float, *, max_chunks: int = 0, previous_edge: int | None = None) -> None:
        """``max_chunks`` (0: ``4 * seconds``, room for 0.25 s chunks) bounds memory whatever the durations;
        ``previous_edge`` is the edge of an earlier ingest of the same track in this process."""
        self.seconds = seconds
        self.max_chunks = max_chunks or max(3, math.ceil(4 * seconds))
        self.chunks: deque[LiveChunk] = deque()
        self._by_index: dict[int, LiveChunk] = {}
        self.inits: dict[int, LiveInit] = {}
        self.epoch: int | None = None  # the current init segment's epoch
        self._last_edge = previous_edge  # the newest index ever made, kept when the window empties
        self._next: int | None = None  # the next chunk's index in the running session
        self._session_first: int | None = None
        self._session_has_init = False
        self._duration = 0.0

    # -- what the ingest tells it --------------------------------------------

    def begin(self, now: float) -> int:
        """A new session (a connection to the upstream) starts: its first index."""
        self._next = self._session_first = first_index(self._last_edge, now)
        if self._next > MAX_INDEX:
            raise WindowError(f"index {self._next} is past the u32 bound")
        self._session_has_init = False
        return self._next

    def add_init(self, data: bytes) -> LiveInit:
        """The session's init segment: the current epoch if it is the same bytes, else a new epoch."""
        if self._session_first is None:
            raise WindowError("an init segment before any session began")
        current = self.inits.get(self.epoch) if self.epoch is not None else None
        if current is None or current.data != data:
            current = LiveInit(self._session_first, data, hashlib.sha256(data).hexdigest())
            self.inits[current.epoch] = current
            self.epoch = current.epoch
        self._session_has_init = True
        return current

    def add_chunk(self, *, start: float, duration: float, data: bytes, wall: float) -> LiveChunk:
        """The session's next chunk, at the edge; older chunks past the window are dropped."""
        if self._next is None or not self._session_has_init or self.epoch is None:
            raise WindowError("a chunk before its session's init segment")
        if self._next > MAX_INDEX:
            raise WindowError(f"index {self._next} is past the u32 bound")
        chunk = LiveChunk(self._next, start, duration, data, hashlib.sha256(data).hexdigest(), wall, self.epoch)
        self._next += 1
        self._last_edge = chunk.index
        self.chunks.append(chunk)
        self._by_index[chunk.index] = chunk
        self._duration += duration
        self._trim()
        return chunk

    def add_copy(self, chunk: LiveChunk, init: LiveInit) -> bool:
        """A chunk another node's ingest of the station made (a cluster's follower, gateway/cluster/live.py),
        kept with its own index, epoch and hash, with ``init`` its epoch's init segment; False (ignored) if
        it is not past the newest index here. The local session, if any, is over: a chunk of its own needs
        a new ``begin``."""
        if self._last_edge is not None and chunk.index <= self._last_edge:
            return False
        if chunk.index > MAX_INDEX or chunk.epoch != init.epoch:
            raise WindowError(f"chunk {chunk.index} of epoch {chunk.epoch} copied with the init of {init.epoch}")
        self.inits.setdefault(init.epoch, init)
        self.epoch = init.epoch
        self._next = self._session_first = None
        self._session_has_init = False
        self._last_edge = chunk.index
        self.chunks.append(chunk)
        self._by_index[chunk.index] = chunk
        self._duration += chunk.duration
        self._trim()
        return True

    def _trim(self) -> None:
        while len(self.chunks) > 1 and (self._duration > self.seconds + 1e-9 or len(self.chunks) > self.max_chunks):
            old = self.chunks.popleft()
            del self._by_index[old.index]
            self._duration -= old.duration
        used = {chunk.epoch for chunk in self.chunks}
        for epoch in [e for e in self.inits if e not in used and e != self.epoch]:
            del self.inits[epoch]

    # -- what requests ask ---------------------------------------------------

    @property
    def edge(self) -> int | None:
        """The newest chunk's index; None before the first chunk of this window."""
        return self.chunks[-1].index if self.chunks else None

    @property
    def last_edge(self) -> int | None:
        """The newest index ever made here (the next ingest of the track continues after it)."""
        return self._last_edge

    def get(self, index: int) -> LiveChunk | None:
        return self._by_index.get(index)

    def init(self, epoch: int | None = None) -> LiveInit | None:
        """The init segment of ``epoch`` (None: the current one), if still held."""
        if epoch is None:
            epoch = self.epoch
        return self.inits.get(epoch) if epoch is not None else None

    def place(self, index: int) -> Place:
        """Where ``index`` stands: in the window, gone for good, soon (≤ ``LOOKAHEAD`` past the edge), or ahead."""
        if index in self._by_index:
            return "in"
        # Past what exists now: relative to the newest index made (or the one the session makes next).
        reference = self._last_edge if self._last_edge is not None else (
            self._next - 1 if self._next is not None else None)
        if reference is not None and index <= reference:
            return "gone"
        if reference is not None and index <= reference + LOOKAHEAD:
            return "soon"
        return "ahead"

    def entries(self) -> list[LiveChunkEntry]:
        return [chunk.entry() for chunk in self.chunks]

    def from_edge(self) -> int | None:
        """Where ``/stream`` starts: the newest chunk."""
        return self.edge
