"""What the media path needs of an upstream: ``Source``, and what some sources can do besides.

The media path defines this interface and the sources (``gateway/sources/``)
implement it, so the transcode can check a capability at run time without
importing the sources. Every source is a ``Source``: it opens a track's
bytes. Some can do more, which helps the transcode prepare its input
(``transcoding.py``); each capability is a protocol of its own, declared by
the sources that have it and checked with ``isinstance``:

- ``PathSource``: the track is a file ffmpeg may open by path (it can seek,
  so an MP4 with its ``moov`` at the end needs no spool);
- ``TailSource``: the upstream can be asked for its tail (one Range request
  for that ``moov``);
- ``BoundedSource``: no track of the source is larger than ``max_bytes``,
  which bounds the spool too;
- ``CoverSource``: a picture may sit beside the track (a library folder's
  ``cover.jpg``), used when the file has none.

An endless upstream (an Icecast mount, a live HLS playlist) is a
``LiveSource``: ``open_live`` yields its encoded bytes and, between them,
``NowPlaying`` when the upstream names what it plays. The live ingest
(``gateway/live/``) reads it for as long as listeners want it, and opens it
again after a drop; nothing bounds its total size, only its rate.

What ``open`` returns may also say the upstream's size (``SizedStream``, from
its Content-Length) once its first bytes have arrived: with the bit rate
ffmpeg finds, that is the expected duration of an input whose header does
not say it (transcode/duration.py).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from transcode.seekable import FetchTail

from .catalog import Track

__all__ = [
    "BoundedSource", "CoverSource", "LiveSource", "NowPlaying", "PathSource", "SizedStream", "Source", "TailSource",
]


class Source(Protocol):
    name: str  # the `source` label of ztream_upstream_bytes_total

    def open(self, track: Track) -> AsyncIterator[bytes]:
        """The track's encoded bytes, streamed; raises ``ZtreamError`` subclasses."""
        ...


@runtime_checkable
class PathSource(Protocol):
    def path_of(self, track: Track) -> Path:
        """The track's file, checked again; raises ``ZtreamError`` subclasses."""
        ...


@runtime_checkable
class TailSource(Protocol):
    def tail_fetcher(self, track: Track) -> FetchTail:
        """``fetch_tail(offset)``: the upstream's bytes from ``offset`` to its end."""
        ...


@runtime_checkable
class BoundedSource(Protocol):
    max_bytes: int


@runtime_checkable
class CoverSource(Protocol):
    def cover_beside(self, track: Track) -> Path | None:
        """A picture beside the track's file, if there is one (blocking: call it in a thread)."""
        ...


@dataclass(frozen=True, slots=True)
class NowPlaying:
    """What a live upstream says it is playing now (ICY ``StreamTitle``, HLS metadata); "" when it cleared it."""

    title: str


@runtime_checkable
class LiveSource(Protocol):
    def open_live(self, track: Track) -> AsyncIterator[bytes | NowPlaying]:
        """One connection to a live upstream: its encoded bytes, and ``NowPlaying`` when the title changes.

        Ends when the upstream ends its stream (the ingest opens it again,
        with back-off); raises ``ZtreamError`` subclasses when it cannot be
        opened or fails midway. Bounded by a byte rate and an idle time, never
        by a total size. Closing the iterator (``aclose``) closes the connection.
        """
        ...


class SizedStream:
    """A source's bytes, with the size the upstream declared (``None`` until known, or if it declared none).

    ``size`` is set by the source (its Content-Length) before the first piece is yielded.
    """

    def __init__(self) -> None:
        self.size: int | None = None
        self._pieces: AsyncGenerator[bytes, None] | None = None

    def attach(self, pieces: AsyncGenerator[bytes, None]) -> SizedStream:
        self._pieces = pieces
        return self

    def __aiter__(self) -> SizedStream:
        return self

    async def __anext__(self) -> bytes:
        assert self._pieces is not None
        return await anext(self._pieces)

    async def aclose(self) -> None:
        if self._pieces is not None:
            await self._pieces.aclose()
