"""This node's own transcode of a flight's track: input, ffmpeg, extras.

Theory of operation: ``LocalTranscoder.events(flight, source, timeout)`` is
the stream of events a flight is made from when this node transcodes it
(``MediaService`` stores each one before asking for the next; in a cluster
the hook may pull them from the owner instead, gateway/cluster/media.py). It
is bounded by ``timeout`` (``transcode.timeout_seconds``); closing it early
ends ffmpeg, killing its process group.

With extras (issue 13) the same run also yields the file's tags, the
waveform (growing in ``flight.analysis`` while the transcode runs) and the
loudness; the input is prepared first (``transcode.seekable``: an MP4 with
``moov`` at the end is read through one Range request or a bounded spool, a
library file by path). When the chunks are done the artwork is extracted
from what is at hand (the first bytes of the input, the spooled or library
file, a cover.jpg beside it), and the waveform and artwork are stored
(``ExtrasStore``) and the tags put in the catalog, all before the events
end, so before ``MediaService`` writes the manifest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from transcode.analysis import MediaAnalysis
from transcode.artwork import ARTWORK_SIZE, ArtworkRefused, extract_artwork
from transcode.ffmpeg import Rendition
from transcode.runner import transcode
from transcode.seekable import PreparedInput, SpoolTooLarge, prepare_file, prepare_input

from ..errors import NotAudio, TooLarge
from ..metrics import Metrics
from .catalog import Track, TrackCatalog
from .extras import ExtrasStore, StoredArtwork
from .flight import MAX_PICTURE_BYTES, Events, Flight

if TYPE_CHECKING:  # sources import the catalog: no import cycle at run time
    from ..sources.base import Source

__all__ = ["LocalTranscoder"]

log = logging.getLogger("ztream.transcoder")

# Default spool bound for a source that names none.
DEFAULT_SPOOL_BYTES = 200 * 1024 * 1024


class LocalTranscoder:
    """Makes a flight's events here: the input prepared, ffmpeg run, the extras stored."""

    def __init__(
        self,
        *,
        rendition: Rendition,
        catalog: TrackCatalog,
        metrics: Metrics,
        extras: ExtrasStore | None,
    ) -> None:
        self.rendition = rendition
        self.catalog = catalog
        self.metrics = metrics
        self.extras = extras

    async def events(self, flight: Flight, source: Source, timeout: float) -> Events:
        """This node's own transcode of the flight's track: its events, then (extras on) its extras stored."""
        track = flight.track
        extras = self.rendition.extras
        try:
            async with self._prepared(track, source) as prepared:
                events = transcode(
                    self.rendition, prepared.stream, timeout=timeout, input_path=prepared.path,
                    input_format=prepared.input_format, analysis=flight.analysis if extras else None,
                )
                async with contextlib.aclosing(events) as events:
                    async for event in events:
                        yield event  # MediaService has stored it when this resumes
                if flight.init is None or not flight.chunks:
                    raise NotAudio("the upstream holds no audio ffmpeg could decode")
                if extras:
                    # Inside the block: a spooled file is still there for the artwork.
                    await self._store_extras(flight, source, prepared)
        except SpoolTooLarge as exc:
            raise TooLarge(f"the upstream needs seeking and is over the spool's bound ({exc})") from None

    @contextlib.asynccontextmanager
    async def _prepared(self, track: Track, source: Source) -> AsyncIterator[PreparedInput]:
        """How ffmpeg gets this track: a pipe, a pipe after a Range request, a spool, or a library file."""
        path_of = getattr(source, "path_of", None)
        if callable(path_of):
            path = str(path_of(track))
            async with prepare_file(path, lambda: source.open(track)) as prepared:
                self.metrics.count_input(prepared.mode)
                yield prepared
            return
        tail_fetcher = getattr(source, "tail_fetcher", None)
        fetch_tail = tail_fetcher(track) if callable(tail_fetcher) else None
        max_bytes = getattr(source, "max_bytes", DEFAULT_SPOOL_BYTES)
        async with prepare_input(
            source.open(track), max_bytes=int(max_bytes), fetch_tail=fetch_tail,
            on_spool=self.metrics.spooled_bytes.inc,
        ) as prepared:
            self.metrics.count_input(prepared.mode)
            yield prepared

    async def _store_extras(self, flight: Flight, source: Source, prepared: PreparedInput) -> None:
        """After the chunks: artwork, waveform and tags stored, so the manifest can follow."""
        track, rid, analysis = flight.track, self.rendition.id, flight.analysis
        artwork = await self._find_artwork(track, source, prepared, analysis)
        # Tags first, the waveform last: a client that sees it complete finds the tags in {track}.
        if analysis.tags is not None:
            self.catalog.apply_tags(track.id, analysis.tags)
        self.catalog.set_artwork_size(track.id, artwork.width, artwork.height)
        if self.extras is not None:
            self.extras.put_artwork(track.id, rid, artwork)
            self.extras.put_waveform(track.id, rid, dict(analysis.waveform.json()))
        analysis.head = bytearray()  # up to ARTWORK_HEAD bytes: not kept past the transcode
        flight.extras_stored = True

    async def _find_artwork(
        self, track: Track, source: Source, prepared: PreparedInput, analysis: MediaAnalysis
    ) -> StoredArtwork:
        binary = self.rendition.binary
        found = None
        try:
            if prepared.path is not None:
                found = await extract_artwork(
                    binary, path=prepared.path, input_format=prepared.input_format, max_bytes=MAX_PICTURE_BYTES
                )
            elif analysis.head:
                found = await extract_artwork(binary, data=bytes(analysis.head), max_bytes=MAX_PICTURE_BYTES)
            cover_beside = getattr(source, "cover_beside", None)
            if found is None and callable(cover_beside):
                cover: Path | None = await asyncio.to_thread(cover_beside, track)
                if cover is not None:
                    data = await asyncio.to_thread(_read_bounded, cover, MAX_PICTURE_BYTES)
                    if data is None:
                        raise ArtworkRefused(f"{cover.name} is larger than {MAX_PICTURE_BYTES} bytes")
                    found = await extract_artwork(binary, data=data, max_bytes=MAX_PICTURE_BYTES)
        except ArtworkRefused as exc:
            # Refused, not decoded: the track gets the placeholder.
            log.info("artwork of %s refused: %s", track.id, exc)
            found = None
        if found is None:
            return StoredArtwork(jpeg=None, width=ARTWORK_SIZE, height=ARTWORK_SIZE)
        return StoredArtwork(jpeg=found.jpeg, width=found.width, height=found.height)


def _read_bounded(path: Path, limit: int) -> bytes | None:
    """The file's bytes, or None when it is larger than ``limit`` (then nothing past it is read)."""
    with path.open("rb") as f:
        data = f.read(limit + 1)
    return data if len(data) <= limit else None
