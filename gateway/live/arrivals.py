"""When a live upstream's bytes arrived, to date the audio they carry (a chunk's ``wall``). Pure.

Theory of operation: the ingest tells ``Arrivals`` each piece of upstream
bytes as it arrives (``arrived(n, at)``), and asks, for each chunk ffmpeg
cut from media second ``start`` of the session (``dated(start, end)``, ``end``
the chunk's end), when the byte carrying ``start`` arrived: that byte is
``rate x start``, ``rate`` the session's bytes per media second, and its
arrival is that of the piece holding it.

``rate``: at each cut, the bytes so far over ``end`` overstate it by what is
still in ffmpeg's pipe (a little while the upstream sends in real time, whole
seconds just after a burst), never understate it; the smallest of the last
``RATE_CUTS`` such ratios is taken. Exact for a constant bit rate; for a
variable one, the recent average.

Why not "the time the chunk came out, less its duration": that holds only
while the upstream sends in real time. A source that stalls and then sends
what it held at once (a paused playout catching up, a live HLS segment
fetched whole) has its chunks cut together, and that rule dates them up to a
chunk before their bytes came, the first one after a gap before the gap
itself; the bytes' own arrival does not. Memory: pieces before the newest
dated byte are dropped, so what is kept spans about a chunk.
"""

from __future__ import annotations

from collections import deque

__all__ = ["Arrivals", "RATE_CUTS"]

RATE_CUTS = 30


class Arrivals:
    """Arrival times of an upstream session's bytes (see the module docstring)."""

    def __init__(self) -> None:
        self.total = 0  # bytes so far
        self._pieces: deque[tuple[int, float]] = deque()  # (bytes up to the piece's end, its arrival)
        self._ratios: deque[float] = deque(maxlen=RATE_CUTS)

    def arrived(self, n: int, at: float) -> None:
        if n > 0:
            self.total += n
            self._pieces.append((self.total, at))

    def dated(self, start: float, end: float) -> float | None:
        """When the byte carrying media second ``start`` arrived (``end``: where the chunk cut now
        ends); None before any byte or media time."""
        if not self._pieces or end <= 0:
            return None
        self._ratios.append(self.total / end)
        position = min(self._ratios) * max(start, 0.0)
        while len(self._pieces) > 1 and self._pieces[0][0] <= position:
            self._pieces.popleft()
        return self._pieces[0][1]
