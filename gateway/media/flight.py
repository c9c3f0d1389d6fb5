"""One transcode as its followers see it: the single flight of a track.

Theory of operation: for each (track, rendition) there is at most one
``Flight`` (``MediaService`` starts it and owns its task). It holds what the
transcode has produced so far, each piece with the SHA-256 it was stored
with (the init segment, the chunks), how it ended (``complete`` or
``error``), its ``analysis`` (tags, the waveform growing while it runs, the
loudness) and whether the extras are stored. Requests never own it; they
follow it: ``notify()`` wakes every waiter at once (a fresh event each
time), and ``wait(ready, timeout)`` waits, bounded, for what a request needs.
A wait that ends while the flight is still queued for a transcode slot is 503
``overloaded`` with ``Retry-After`` (not the upstream's fault), otherwise 504
``chunk_timeout``. ``manifest(complete=...)`` is the manifest of what exists.

What a flight is made from is a stream of events (events.py): this node's
own transcode (``transcoding.LocalTranscoder``) or, in a cluster, whatever
the ``EventsHook`` returns (gateway/cluster/media.py). ``MediaService`` is
the only writer of a flight's state; this node's own transcode fills
``analysis`` as it runs (the waveform so far, which ``/waveform`` shows
until the complete one is stored).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from transcode.analysis import Loudness, MediaAnalysis
from transcode.duration import InputInfo
from transcode.ffmpeg import Rendition

from ..errors import Overloaded, UpstreamTimeout, ZtreamError
from .catalog import Track
from .types import ChunkEntry, InitEntry, Manifest

__all__ = ["ARTWORK_HEAD", "MAX_PICTURE_BYTES", "RETRY_AFTER", "Flight"]

# What a 503 overloaded tells the client to wait, in seconds.
RETRY_AFTER = 5
# An embedded picture (or a cover.jpg) over this is refused, not decoded: a
# 1400x1400 cover is ~0.5 MB.
MAX_PICTURE_BYTES = 4 * 1024 * 1024
# The first bytes of a piped input kept for the artwork: an ID3v2/FLAC/Vorbis
# picture or a faststart moov sits there. One picture cap and a little more,
# so a picture up to the cap is whole; a larger one is refused or not found.
ARTWORK_HEAD = MAX_PICTURE_BYTES + 256 * 1024


@dataclass
class Flight:
    track: Track
    rendition: Rendition
    init: InitEntry | None = None
    chunks: list[ChunkEntry] = field(default_factory=list)
    complete: bool = False
    error: ZtreamError | None = None
    task: asyncio.Task[None] | None = None
    # Filled by this node's runner while it transcodes (tags, the waveform so far, loudness).
    analysis: MediaAnalysis = field(default_factory=lambda: MediaAnalysis(head_limit=ARTWORK_HEAD))
    # What ffmpeg's probe of the input says of its length (the expected duration while it runs).
    input: InputInfo = field(default_factory=InputInfo)
    # What the finished transcode measured, for the complete manifest.
    loudness: Loudness | None = None
    # Set once the waveform and artwork are stored (just before the manifest).
    extras_stored: bool = False
    running: bool = False  # holds a transcode slot (else it waits in the queue)
    media_done: bool = False  # every chunk is out (only extras and the manifest remain)
    made_here: bool = False  # this node's own transcode makes the events (not a pull from another node)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def done(self) -> bool:
        return self.complete or self.error is not None

    def notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait(self, ready: Callable[[], bool], timeout: float) -> None:
        """Wait until ``ready()`` or the flight ends; ``UpstreamTimeout`` after ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not ready() and not self.done:
            remaining = deadline - loop.time()
            if remaining <= 0:
                if not self.running:  # still queued behind other transcodes: not an upstream's fault
                    raise Overloaded("the track waits for a transcode slot; try again shortly",
                                     retry_after=RETRY_AFTER)
                raise UpstreamTimeout("the transcode did not produce this in time", code="chunk_timeout")
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass

    def manifest(self, *, complete: bool) -> Manifest:
        """The manifest of what this flight has produced so far."""
        duration = None
        if complete and self.chunks:
            last = self.chunks[-1]
            duration = round(last["start"] + last["duration"], 3)
        loudness = self.loudness if complete else None
        expected = duration if complete else self.input.expected_duration()
        if not complete and expected is not None and self.chunks:
            # Never less than what is transcoded already (a short estimate is wrong).
            last = self.chunks[-1]
            expected = max(expected, round(last["start"] + last["duration"], 3))
        return {
            "id": self.track.id,
            "rendition": self.rendition.id,
            "mime": self.rendition.mime,
            "bitrate": self.rendition.bitrate,
            "complete": complete,
            "duration": duration,
            "expected_duration": expected,
            "duration_estimated": not complete and expected is not None,
            "init": self.init,
            "chunks": list(self.chunks),
            "loudness_lufs": loudness.loudness_lufs if loudness is not None else None,
            "true_peak_db": loudness.true_peak_db if loudness is not None else None,
        }
