"""This node's own transcode of a flight's track: input, ffmpeg, extras found.

Theory of operation: ``LocalTranscoder.events(flight, source, timeout)`` is
the stream of events (``events.py``) a flight is made from when this node
transcodes it; it writes nothing (``MediaService`` stores each event before
asking for the next; in a cluster the hook may pull them from the owner
instead, gateway/cluster/media.py). It is bounded by ``timeout``
(``transcode.timeout_seconds``); closing it early ends ffmpeg, killing its
process group.

The input is prepared first (``transcode.seekable``: an MP4 with ``moov``
at the end is read through one Range request or a bounded spool, a library
file by path), using what the source can do besides ``open``
(``gateway/sources/base.py``). With extras the same run also measures the
file's tags, the waveform (growing in ``flight.analysis`` while the
transcode runs, which is what ``/waveform`` shows meanwhile) and the
loudness. When the chunks are done it yields the tags, then looks for the
artwork in what is at hand (the first bytes of the input, the spooled or
library file, a cover.jpg beside it) and yields it, then the waveform, then
``Finished`` with the loudness.

This is the boundary of the ffmpeg side: its failures (``EncoderFailed``, ``TranscodeFailed``,
``TranscodeTimeout``, ``SpoolTooLarge``) and the source's ``ZtreamError``s
become one ``Failed`` event here, and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from transcode.analysis import MediaAnalysis
from transcode.artwork import ARTWORK_SIZE, ArtworkRefused, extract_artwork
from transcode.ffmpeg import Rendition
from transcode.runner import EncoderFailed, TranscodeFailed, TranscodeTimeout, transcode
from transcode.seekable import PreparedInput, SpoolTooLarge, prepare_file, prepare_input

from ..errors import NotAudio, TooLarge, UpstreamError, UpstreamTimeout, ZtreamError
from ..metrics import Metrics
from .catalog import Track
from .events import ArtworkFound, Events, Failed, Finished, TagsFound, WaveformFound
from .extras import StoredArtwork
from .flight import MAX_PICTURE_BYTES, Flight
from .upstream import BoundedSource, CoverSource, PathSource, Source, TailSource

__all__ = ["LocalTranscoder"]

log = logging.getLogger("ztream.transcoder")

# Default spool bound for a source that names none.
DEFAULT_SPOOL_BYTES = 200 * 1024 * 1024


class LocalTranscoder:
    """Makes a flight's events here: the input prepared, ffmpeg run, the extras found."""

    def __init__(self, *, rendition: Rendition, metrics: Metrics) -> None:
        self.rendition = rendition
        self.metrics = metrics

    async def events(self, flight: Flight, source: Source, timeout: float) -> Events:
        """This node's own transcode of the flight's track, as events (see the module docstring).

        ``flight`` is read, never written: its track, the chunks stored so
        far (a failure before any is the upstream's, ``NotAudio``) and the
        ``analysis`` the run fills while it goes.
        """
        track = flight.track
        extras = self.rendition.extras
        try:
            async with self._prepared(track, source) as prepared:
                made = transcode(
                    self.rendition, prepared.stream, timeout=timeout, input_path=prepared.path,
                    input_format=prepared.input_format, analysis=flight.analysis if extras else None,
                )
                async with contextlib.aclosing(made) as media:
                    async for event in media:
                        yield event  # MediaService has stored it when this resumes
                if extras:
                    # Inside the block: a spooled file is still there for the artwork.
                    analysis = flight.analysis
                    if analysis.tags is not None:
                        yield TagsFound(analysis.tags)
                    artwork = await self._find_artwork(track, source, prepared, analysis)
                    analysis.head = bytearray()  # up to ARTWORK_HEAD bytes: not kept past the transcode
                    yield ArtworkFound(artwork)
                    yield WaveformFound(dict(analysis.waveform.json()))
        except (ZtreamError, SpoolTooLarge, TranscodeFailed) as exc:
            yield Failed(error_of(exc, chunks_so_far=bool(flight.chunks)))
        else:
            yield Finished(flight.analysis.loudness if extras else None)

    @contextlib.asynccontextmanager
    async def _prepared(self, track: Track, source: Source) -> AsyncIterator[PreparedInput]:
        """How ffmpeg gets this track: a pipe, a pipe after a Range request, a spool, or a library file."""
        if isinstance(source, PathSource):
            path = str(source.path_of(track))
            async with prepare_file(path, lambda: source.open(track)) as prepared:
                self.metrics.count_input(prepared.mode)
                yield prepared
            return
        fetch_tail = source.tail_fetcher(track) if isinstance(source, TailSource) else None
        max_bytes = source.max_bytes if isinstance(source, BoundedSource) else DEFAULT_SPOOL_BYTES
        async with prepare_input(
            source.open(track), max_bytes=int(max_bytes), fetch_tail=fetch_tail,
            on_spool=self.metrics.spooled_bytes.inc,
        ) as prepared:
            self.metrics.count_input(prepared.mode)
            yield prepared

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
            if found is None and isinstance(source, CoverSource):
                cover: Path | None = await asyncio.to_thread(source.cover_beside, track)
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


def error_of(exc: ZtreamError | SpoolTooLarge | TranscodeFailed, *, chunks_so_far: bool) -> ZtreamError:
    """What a client is told of a failed transcode: the one mapping of ffmpeg's side to the contract.

    A decoder's failure before any chunk is the upstream's (``NotAudio``);
    after some, the transcode failed midway; an encoder's failure is ours.
    """
    if isinstance(exc, ZtreamError):  # the source's own (refused, gone, too large, ...)
        return exc
    if isinstance(exc, SpoolTooLarge):
        return TooLarge(f"the upstream needs seeking and is over the spool's bound ({exc})")
    if isinstance(exc, TranscodeTimeout):
        return UpstreamTimeout(str(exc), code="transcode_timeout")
    if isinstance(exc, EncoderFailed):
        # The input decoded; our encoder refused the audio: not the upstream's fault.
        return ZtreamError(f"the Opus encoder failed on the decoded audio: {exc.reason}", code="encoder_failed")
    if not chunks_so_far:
        return NotAudio(f"the upstream is not audio ffmpeg can decode: {exc.reason}")
    return UpstreamError(f"the transcode failed midway: {exc.reason}", code="transcode_failed")
