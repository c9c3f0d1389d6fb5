"""The one interface every upstream sits behind: open a track's bytes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Protocol

from ..media.catalog import Track

__all__ = ["Source", "CountBytes"]

# Called with the size of every piece read from an upstream (for metrics).
CountBytes = Callable[[int], None]


class Source(Protocol):
    name: str  # the `source` label of ztream_upstream_bytes_total

    def open(self, track: Track) -> AsyncIterator[bytes]:
        """The track's encoded bytes, streamed; raises ``ZtreamError`` subclasses."""
        ...
