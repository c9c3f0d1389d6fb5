"""One neighbour over one DataChannel, and the upload slots shared by all.

Theory of operation
-------------------
A ``Link`` is the protocol state of one DataChannel to one neighbour for one
track (the channel label names the track, see ``peer/wire.py``). It does no
I/O: the shell feeds it the frames that arrive (``receive(frame)`` -> events)
and sends the frames its methods return. Both directions share the channel:
whoever created it, either side may REQUEST what the other announced, and
either side serves (``serve``) or refuses (``choke``) what is asked of it.

Asking::

    request(i) -> REQUEST frame; the chunk is now pending
    receive(PIECE ...) -> ChunkIn(i, data) once whole (not yet verified:
                          the shell checks the SHA-256 against the manifest)
    receive(CHOKE i)   -> Choked(i): the neighbour will not send it
    cancel(i)          -> CANCEL frame; later pieces of i are ignored

Serving::

    receive(REQUEST i) -> Wanted(i); the shell answers serve(i, data) or choke(i)
    receive(CANCEL i)  -> Withdrawn(i)
    receive(HAVE ...)  -> PeerHas(indices): their whole holding (replaces)

A frame that breaks the format (``WireError`` from ``decode``), a piece of a
chunk never asked for, out of order, or larger than the manifest says
raises ``WireError``: the shell drops the neighbour.

``UploadSlots`` is the seeder's promise to serve at most ``slots`` listeners
at once (docs/wire.md, "Behaviour"): a listener takes a slot with its first
REQUEST and keeps it while it keeps asking; ``hold`` seconds after its last
REQUEST the slot is free again. A REQUEST from a listener without a slot
while all are taken is choked. Time is an argument, as everywhere here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .wire import (
    MAX_RANGES,
    Cancel,
    Choke,
    Have,
    Piece,
    Reassembler,
    Request,
    WireError,
    decode,
    encode,
    split_chunk,
)

__all__ = [
    "Link",
    "LinkEvent",
    "PeerHas",
    "ChunkIn",
    "Choked",
    "Wanted",
    "Withdrawn",
    "UploadSlots",
    "to_ranges",
    "from_ranges",
]


@dataclass(frozen=True, slots=True)
class PeerHas:
    indices: frozenset[int]


@dataclass(frozen=True, slots=True)
class ChunkIn:
    index: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Choked:
    index: int


@dataclass(frozen=True, slots=True)
class Wanted:
    index: int


@dataclass(frozen=True, slots=True)
class Withdrawn:
    index: int


LinkEvent = PeerHas | ChunkIn | Choked | Wanted | Withdrawn


def to_ranges(indices: Iterable[int]) -> tuple[tuple[int, int], ...]:
    """Indices as sorted inclusive runs: ``[0, 1, 2, 7]`` -> ``((0, 2), (7, 7))``."""
    runs: list[tuple[int, int]] = []
    for i in sorted(set(indices)):
        if runs and i == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return tuple(runs)


def from_ranges(ranges: Iterable[tuple[int, int]], limit: int) -> frozenset[int]:
    """Inclusive runs to indices, keeping those below ``limit`` (a hostile
    HAVE of ``[0, 2**32-1]`` must not allocate four billion integers)."""
    out: set[int] = set()
    for first, last in ranges:
        out.update(range(first, min(last, limit - 1) + 1))
    return frozenset(out)


class Link:
    """The protocol state of one DataChannel (see the module docstring).

    ``sizes`` maps chunk index -> size from the manifest, when known: a
    PIECE announcing another total is a protocol error, before any byte
    of it is buffered. ``max_index`` bounds HAVE expansion.
    """

    def __init__(self, *, max_index: int = 100_000) -> None:
        self.max_index = max_index
        self.sizes: dict[int, int] = {}
        self._reassembler = Reassembler()
        self._cancelled: set[int] = set()
        self.remote_have: frozenset[int] = frozenset()

    # -- asking --------------------------------------------------------------

    def request(self, index: int) -> bytes:
        self._cancelled.discard(index)
        self._reassembler.expect(index)
        return encode(Request(index))

    def cancel(self, index: int) -> bytes:
        self._reassembler.forget(index)
        self._cancelled.add(index)
        return encode(Cancel(index))

    def pending(self) -> set[int]:
        return self._reassembler.pending()

    # -- serving -------------------------------------------------------------

    @staticmethod
    def have(indices: Iterable[int]) -> bytes:
        """Our whole holding, as a HAVE frame (at most ``MAX_RANGES`` runs:
        past that the holding is announced in part, which is allowed)."""
        return encode(Have(to_ranges(indices)[:MAX_RANGES]))

    @staticmethod
    def serve(index: int, data: bytes) -> list[bytes]:
        return [encode(piece) for piece in split_chunk(index, data)]

    @staticmethod
    def choke(index: int) -> bytes:
        return encode(Choke(index))

    # -- receiving -----------------------------------------------------------

    def receive(self, frame: bytes) -> list[LinkEvent]:
        """One frame from the neighbour; raises ``WireError`` for a violation."""
        message = decode(frame)
        if isinstance(message, Piece):
            if message.index in self._cancelled and message.index not in self._reassembler.pending():
                return []  # sent before our CANCEL reached them
            size = self.sizes.get(message.index)
            if size is not None and message.total != size:
                raise WireError(f"chunk {message.index} is {size} bytes, not {message.total}")
            data = self._reassembler.feed(message)
            return [] if data is None else [ChunkIn(message.index, data)]
        if isinstance(message, Have):
            self.remote_have = from_ranges(message.ranges, self.max_index)
            return [PeerHas(self.remote_have)]
        if isinstance(message, Choke):
            if message.index not in self._reassembler.pending():
                return []  # a late answer to something we gave up
            self._reassembler.forget(message.index)
            return [Choked(message.index)]
        if isinstance(message, Request):
            return [Wanted(message.index)]
        if isinstance(message, Cancel):
            return [Withdrawn(message.index)]
        return []  # the overlay's LOOKUP/HOLDERS and unknown types: not a Link's business


class UploadSlots:
    """At most ``slots`` listeners served at once; a slot is held ``hold``
    seconds past the listener's last request."""

    def __init__(self, slots: int, hold: float) -> None:
        if slots < 1:
            raise ValueError("slots must be at least 1")
        self.slots = slots
        self.hold = hold
        self._last: dict[str, float] = {}

    def admit(self, listener: str, now: float) -> bool:
        """A REQUEST from ``listener`` at ``now``: whether to serve it."""
        self.expire(now)
        if listener in self._last or len(self._last) < self.slots:
            self._last[listener] = now
            return True
        return False

    def release(self, listener: str) -> None:
        self._last.pop(listener, None)

    def expire(self, now: float) -> None:
        for listener, last in list(self._last.items()):
            if now - last >= self.hold:
                del self._last[listener]

    def in_use(self, now: float) -> int:
        self.expire(now)
        return len(self._last)

    def holders(self) -> list[str]:
        return list(self._last)
