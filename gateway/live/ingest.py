"""One live ingest: a station's upstream, through ffmpeg, into its window, for as long as it is wanted.

Theory of operation: ``LiveIngest.run()`` loops over *sessions*. A session
opens the upstream (``LiveSource.open_live``), pipes its bytes into ffmpeg
with the same argv as files (the rendition is made with
``live.chunk_seconds``) and feeds what the splitter yields into the window
(window.py): the init segment, then each chunk, stamped with ``wall``, the
UNIX time its first sample arrived: when the upstream byte carrying it came
(arrivals.py; so a burst after a stall, or at connect, is dated when it
came, not a chunk before), never after the chunk came out. ``NowPlaying``
items set the title. Nothing is stored: the window in memory is all there is.

No file limit cuts an ingest (no transcode timeout, no size or duration
bound); the upstream is bounded by its rate and read timeout in the fetcher.
A session ends when the upstream ends or fails, or ffmpeg does. If this
ingest never produced a chunk, that failure is the ingest's (``error``, and
``run`` returns): a URL that is not a station is not retried forever (a
declared ``always`` station is: ``persistent``). Else
the state becomes ``reconnecting`` and the next session starts after a
back-off (0.5 s, doubling up to ``reconnect_max``; reset by a session that
produced a chunk), with the indices continuing after the edge.

``run`` never stops by itself otherwise: the service cancels it when its
listeners have gone (service.py), which ends ffmpeg (its process group) and
the upstream connection at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Callable

from transcode.ebml import Cluster, InitSegment
from transcode.ffmpeg import Rendition, pipe_input_format
from transcode.runner import TranscodeFailed, transcode
from transcode.sniff import SNIFF_BYTES, sniff_format

from ..errors import NotAudio, UpstreamError, ZtreamError
from ..media.catalog import Track
from ..media.types import LiveState
from ..media.upstream import LiveSource, NowPlaying
from .arrivals import Arrivals
from .window import LiveWindow

__all__ = ["LiveIngest", "FIRST_BACKOFF", "NO_TIMEOUT"]

log = logging.getLogger("ztream.live")

FIRST_BACKOFF = 0.5
# The runner's wall-time bound, which an ingest must not have (ten years).
NO_TIMEOUT = 10 * 365 * 86400.0
# Closing an upstream connection never takes longer than this.
CLOSE_SECONDS = 5.0


class LiveIngest:
    """A station's ingest in one rendition (see the module docstring)."""

    def __init__(
        self,
        *,
        track: Track,
        source: LiveSource,
        rendition: Rendition,
        window: LiveWindow,
        reconnect_max: float,
        on_state: Callable[[LiveState, LiveState], None] | None = None,
        on_reconnect: Callable[[], None] | None = None,
        now: Callable[[], float] = time.time,
        persistent: bool = False,
    ) -> None:
        """``persistent`` (a declared ``always`` station): never give up, even before the first chunk."""
        self.track = track
        self.source = source
        self.rendition = rendition
        self.window = window
        self.reconnect_max = reconnect_max
        self.state: LiveState = "starting"
        self.title: str | None = None
        self.error: ZtreamError | None = None  # why the ingest gave up (it never produced a chunk)
        self.produced = False
        self.sessions = 0
        self._on_state = on_state
        self._on_reconnect = on_reconnect
        self._now = now
        self._changed = asyncio.Event()
        self.done = False
        self.persistent = persistent

    # -- followers -------------------------------------------------------------

    def notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait(self, ready: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``ready()`` (True), the ingest ends or ``timeout`` passes (False)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not ready():
            remaining = deadline - loop.time()
            if remaining <= 0 or self.done:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return True

    def _set_state(self, state: LiveState) -> None:
        if state != self.state:
            old, self.state = self.state, state
            if self._on_state is not None:
                self._on_state(old, state)
            self.notify()

    def relayed(self, state: LiveState, title: str | None) -> None:
        """What another node's ingest of this station says (a cluster's follower copies its window)."""
        if state == "live":
            self.produced = True
        self.title = title
        self._set_state(state)
        self.notify()

    # -- the ingest --------------------------------------------------------------

    async def run(self) -> None:
        backoff = FIRST_BACKOFF
        try:
            while True:
                chunks = await self._session()
                if chunks:
                    backoff = FIRST_BACKOFF
                if not self.produced and not self.persistent:
                    if self.error is None:
                        self.error = NotAudio("the live upstream ended before ffmpeg made any audio of it")
                    return
                if self._on_reconnect is not None:
                    self._on_reconnect()
                self._set_state("reconnecting")
                log.info("live %s: reconnecting in %.1f s (%d chunks in the last session)",
                         self.track.id, backoff, chunks)
                await asyncio.sleep(backoff)
                if not chunks:
                    backoff = min(backoff * 2, self.reconnect_max)
        finally:
            self.done = True
            self.notify()

    async def _session(self) -> int:
        """One connection to the upstream, into the window; the number of chunks it made."""
        self.sessions += 1
        self.window.begin(self._now())
        arrivals = Arrivals()
        made = 0
        items = self.source.open_live(self.track)

        def take(item: bytes | NowPlaying) -> bytes | None:
            if isinstance(item, NowPlaying):
                title = item.title or None
                if title != self.title:
                    self.title = title
                    self.notify()
                return None
            arrivals.arrived(len(item), self._now())
            return item

        async def upstream(head: bytes) -> AsyncGenerator[bytes, None]:
            if head:
                yield head
            async for item in items:
                data = take(item)
                if data:
                    yield data

        try:
            # The first bytes say which demuxer to name (transcode/sniff.py): a probe
            # would wait seconds for more of a real-time upstream.
            head = bytearray()
            async for item in items:
                data = take(item)
                if data:
                    head += data
                    if len(head) >= SNIFF_BYTES:
                        break
            found = sniff_format(bytes(head))
            rendition = pipe_input_format(self.rendition, found) if found else self.rendition
            events = transcode(rendition, upstream(bytes(head)), timeout=NO_TIMEOUT)
            async with contextlib.aclosing(events) as media:
                async for event in media:
                    if isinstance(event, InitSegment):
                        self.window.add_init(event.data)
                    elif isinstance(event, Cluster):
                        now = self._now()
                        dated = arrivals.dated(event.start, event.start + event.duration)
                        wall = min(now, dated) if dated is not None else now - event.duration
                        self.window.add_chunk(start=event.start, duration=event.duration, data=event.data, wall=wall)
                        made += 1
                        self.produced = True
                        self._set_state("live")
                    self.notify()
        except ZtreamError as exc:
            self._session_failed(exc)
        except TranscodeFailed as exc:
            self._session_failed(NotAudio(f"the live upstream is not audio ffmpeg can decode: {exc.reason}")
                                 if not made else UpstreamError(f"the live transcode failed: {exc.reason}",
                                                                code="transcode_failed"))
        finally:
            # Closed here, not at garbage collection: that ends the upstream connection.
            aclose = getattr(items, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(CLOSE_SECONDS):
                        await aclose()
        return made

    def _session_failed(self, error: ZtreamError) -> None:
        log.info("live %s: session %d ended: %s", self.track.id, self.sessions, error.detail)
        if not self.produced:
            self.error = error
