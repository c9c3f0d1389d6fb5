"""The live service: one ingest per station and rendition, started by listeners, stopped when they leave.

Theory of operation: every request for a live track (manifest, init, chunk,
stream) is a listener's *touch*. The first touch of a station that has no
ingest starts one (single flight: one per station and rendition), once the
fairness book allows it: the per-client and per-host shares of
``[transcode]`` and at most ``live.max_stations`` ingests in all (declared
``always`` stations included). A reaper checks every second and cancels an
ingest whose last touch is ``live.idle_seconds`` old (``always`` stations
are never reaped). An ingest that gave up (its upstream never made audio)
is remembered for ``ERROR_TTL`` seconds, like a failed transcode, so N
listeners of a dead URL cause one fetch.

Requests are answered from the ingest's window (window.py), in memory: the
manifest is the window; a chunk in it is served at once, an index older than
it is 410 ``gone``, one at most ``LOOKAHEAD`` past the edge waits (bounded by
``3 x chunk_seconds + 2 s``) and anything further is 404 at once. The edge
an ingest reached is remembered (bounded) when it stops, so the next ingest
of the station in this process continues after it; across restarts the
index rule of window.py keeps indices from repeating.

The listeners of a station, for ``ztream_live_listeners``, are the client
groups (an address, an IPv6 /64) that touched it in the last
``LISTENER_SECONDS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from transcode.ffmpeg import DEFAULT_RENDITION, RENDITIONS, Rendition

from ..config import LiveConfig
from ..errors import Gone, NotFound, Overloaded, TooManyRequests, ZtreamError
from ..media.catalog import Track
from ..media.fairness import Claim, SlotBook, SlotLimits, client_group
from ..media.renditions import RENDITION_LIST
from ..media.types import LiveManifest, LiveState, PieceKind
from ..media.upstream import LiveSource, Source
from ..metrics import Metrics
from .ingest import LiveIngest
from .window import LiveChunk, LiveWindow

__all__ = ["LiveService", "PEER_WAIT_SECONDS", "LISTENER_SECONDS", "ERROR_TTL"]

log = logging.getLogger("ztream.live")

# How long a listener that is not a chunk's elected fetcher waits for a peer (docs/p2p.md).
PEER_WAIT_SECONDS = 0.7
# A client group counts as a listener this long after its last request.
LISTENER_SECONDS = 10.0
# An ingest that gave up is answered with its error this long before retrying.
ERROR_TTL = 20.0
# How long a manifest request waits for a new ingest's first chunk before answering "starting".
FIRST_CHUNK_WAIT = 15.0
# Edges of stopped ingests remembered, so that a restart in this process continues after them.
MAX_EDGES = 10_000
# Listeners counted per station (beyond, the gauge says this many).
MAX_LISTENERS = 100_000
REAP_SECONDS = 1.0
CLOSE_SECONDS = 5.0

@dataclass
class _Station:
    """One running ingest and who touches it."""

    key: tuple[str, str]
    ingest: LiveIngest
    task: asyncio.Task[None]
    always: bool
    last_touch: float
    listeners: OrderedDict[str, float] = field(default_factory=OrderedDict)
    waiting: int = 0  # requests waiting on the ingest now: listeners too

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        self.waiting += 1
        try:
            yield
        finally:
            self.waiting -= 1


class LiveService:
    """What the HTTP handlers ask of a live track (see the module docstring)."""

    def __init__(
        self,
        *,
        config: LiveConfig,
        renditions: Callable[[str], Rendition],
        sources: Callable[[], Mapping[str, Source]],
        metrics: Metrics,
        slot_limits: SlotLimits,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``renditions(name)`` makes the live rendition of that kind (chunk length ``live.chunk_seconds``);
        ``sources()`` is the current source mapping (a live config change swaps it)."""
        self.config = config
        self._make_rendition = renditions
        self._renditions: dict[str, Rendition] = {}
        self._sources = sources
        self.metrics = metrics
        self._clock = clock
        self._book = SlotBook(SlotLimits(
            max_concurrent=config.max_stations, per_client=slot_limits.per_client, per_host=slot_limits.per_host))
        self._stations: dict[tuple[str, str], _Station] = {}
        self._failed: dict[tuple[str, str], tuple[float, ZtreamError]] = {}
        self._edges: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._always: set[str] = set()
        self._declared: set[str] = set()
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False
        self.chunk_wait = 3 * config.chunk_seconds + 2.0

    # -- renditions ---------------------------------------------------------------

    def rendition(self, name: str | None) -> Rendition:
        name = name or DEFAULT_RENDITION
        found = self._renditions.get(name)
        if found is None:
            if name not in RENDITIONS:
                known = ", ".join(RENDITIONS)
                raise NotFound(f"no rendition {name!r} (there are {known})", code="rendition_not_found")
            found = self._renditions[name] = self._make_rendition(name)
        return found

    # -- starting and stopping ------------------------------------------------------

    def declare(self, track: Track, *, always: bool) -> None:
        """A station of ``[[live.stations]]``: the operator's, so no upstream host share applies to it;
        ``always``: it ingests from now on and never idles out."""
        self._declared.add(track.id)
        if always:
            self._always.add(track.id)
            self._station(track, DEFAULT_RENDITION, None)

    def _station(self, track: Track, name: str, client: str | None) -> _Station:
        """The running station of ``track`` in rendition ``name``, started for ``client`` if none runs."""
        key = (track.id, name)
        now = self._clock()
        station = self._stations.get(key)
        if station is None:
            station = self._start(track, name, client, now)
        station.last_touch = now
        group = client_group(client)
        if group is not None:
            station.listeners[group] = now
            station.listeners.move_to_end(group)
            if len(station.listeners) > MAX_LISTENERS:
                station.listeners.popitem(last=False)
        return station

    def _start(self, track: Track, name: str, client: str | None, now: float) -> _Station:
        if self._closed:
            raise ZtreamError("the gateway is shutting down", code="shutting_down")
        key = (track.id, name)
        failed = self._failed.get(key)
        if failed is not None:
            if now - failed[0] < ERROR_TTL:
                raise failed[1]
            del self._failed[key]
        source = self._sources().get(track.source)
        if not isinstance(source, LiveSource):
            raise NotFound(f"the {track.source} source cannot play live tracks", code="source_disabled")
        host = urlsplit(track.locator).hostname if track.source == "url" and track.id not in self._declared else None
        claim = Claim(key=f"{track.id}/{name}", client=client_group(client), host=host)
        refusal = self._book.refusal(claim)
        if refusal == "too_many_transcodes":
            raise TooManyRequests(
                f"this client already started {self._book.limits.per_client} ingests or transcodes",
                code="too_many_transcodes", retry_after=5)
        if refusal == "upstream_host_busy":
            raise Overloaded(f"{self._book.limits.per_host} live ingests from {claim.host} are running",
                             code="upstream_host_busy", retry_after=5)
        if refusal is not None or len(self._stations) >= self.config.max_stations:
            raise Overloaded(f"{len(self._stations)} live stations are running, the most this gateway takes",
                             code="live_full", retry_after=30)
        self._book.add(claim)
        window = LiveWindow(self.config.window_seconds, previous_edge=self._edges.pop(key, None))
        ingest = LiveIngest(
            track=track, source=source, rendition=self.rendition(name), window=window,
            reconnect_max=self.config.reconnect_max_seconds,
            on_state=self._count_state, on_reconnect=self.metrics.live_reconnects.inc,
            persistent=track.id in self._always,
        )
        self.metrics.live_ingests.labels(ingest.state).inc()
        task = asyncio.create_task(self._run(key, claim.key, ingest), name=f"live {track.id} {name}")
        station = _Station(key, ingest, task, always=track.id in self._always, last_touch=now)
        self._stations[key] = station
        if self._reaper is None:
            self._reaper = asyncio.create_task(self._reap(), name="live reaper")
        log.info("live %s (%s): ingest started", track.id, name)
        return station

    def _count_state(self, old: LiveState, new: LiveState) -> None:
        self.metrics.live_ingests.labels(old).dec()
        self.metrics.live_ingests.labels(new).inc()

    async def _run(self, key: tuple[str, str], claim_key: str, ingest: LiveIngest) -> None:
        try:
            await ingest.run()
            if ingest.error is not None:
                self._failed[key] = (self._clock(), ingest.error)
                log.warning("live %s: gave up: %s", key[0], ingest.error.detail)
        except Exception:  # noqa: BLE001 - an ingest's bug must not end the others
            log.exception("live %s: ingest failed", key[0])
        finally:
            self._stopped(key, claim_key, ingest)

    def _stopped(self, key: tuple[str, str], claim_key: str, ingest: LiveIngest) -> None:
        self._book.release(claim_key)
        self.metrics.live_ingests.labels(ingest.state).dec()
        station = self._stations.get(key)
        if station is not None and station.ingest is ingest:
            del self._stations[key]
            if key[1] == DEFAULT_RENDITION:
                with contextlib.suppress(KeyError):
                    self.metrics.live_listeners.remove(key[0])
        if ingest.window.last_edge is not None:
            self._edges[key] = ingest.window.last_edge
            self._edges.move_to_end(key)
            while len(self._edges) > MAX_EDGES:
                self._edges.popitem(last=False)

    async def _reap(self) -> None:
        """Every second: stop ingests nobody touched for ``idle_seconds``; count listeners."""
        while True:
            await asyncio.sleep(REAP_SECONDS)
            self.reap()

    def reap(self) -> None:
        now = self._clock()
        for key, station in list(self._stations.items()):
            while station.listeners and now - next(iter(station.listeners.values())) > LISTENER_SECONDS:
                station.listeners.popitem(last=False)
            if key[1] == DEFAULT_RENDITION and not station.task.done():
                self.metrics.live_listeners.labels(key[0]).set(len(station.listeners))
            if station.waiting:
                station.last_touch = now
            if not station.always and now - station.last_touch > self.config.idle_seconds:
                log.info("live %s (%s): no listener for %.0f s, ingest stopped", key[0], key[1], now - station.last_touch)
                station.task.cancel()

    # -- what handlers call ------------------------------------------------------------

    def _manifest(self, track: Track, rendition: Rendition, ingest: LiveIngest, after: int | None) -> LiveManifest:
        window = ingest.window
        init = window.init()
        chunks = window.entries() if after is None else [c.entry() for c in window.chunks if c.index > after]
        return {
            "id": track.id,
            "rendition": rendition.id,
            "mime": rendition.mime,
            "bitrate": rendition.bitrate,
            "live": True,
            "complete": False,
            "duration": None,
            "expected_duration": None,
            "duration_estimated": False,
            "loudness_lufs": None,
            "true_peak_db": None,
            "epoch": window.epoch if window.epoch is not None else 0,
            "init": init.entry() if init is not None else None,
            "chunks": chunks,
            "first": window.chunks[0].index if window.chunks else None,
            "edge": window.edge,
            "state": ingest.state,
            "title": ingest.title,
            "station": track.title or None,
            "window_seconds": self.config.window_seconds,
            "chunk_seconds": self.config.chunk_seconds,
            "start_behind_seconds": self.config.start_behind_seconds,
            "peer_wait_seconds": PEER_WAIT_SECONDS,
            "renditions": RENDITION_LIST,
        }

    async def manifest(self, track: Track, rendition: str | None = None, *, client: str | None = None,
                       after: int | None = None) -> LiveManifest:
        """The window (with ``after``: only its chunks past that index); a new ingest's first chunk is
        waited for (bounded), its failure raised."""
        name = rendition or DEFAULT_RENDITION
        station = self._station(track, name, client)
        ingest = station.ingest
        with station.busy():
            await ingest.wait(lambda: ingest.window.edge is not None or ingest.error is not None, FIRST_CHUNK_WAIT)
        if ingest.error is not None and ingest.window.edge is None:
            raise ingest.error
        return self._manifest(track, self.rendition(name), ingest, after)

    async def init(self, track: Track, rendition: str | None = None, epoch: int | None = None, *,
                   client: str | None = None) -> tuple[bytes, str]:
        """(init segment, sha256) of ``epoch`` (None: the current one)."""
        station = self._station(track, rendition or DEFAULT_RENDITION, client)
        ingest = station.ingest
        window = ingest.window
        if epoch is None:
            with station.busy():
                await ingest.wait(lambda: window.init() is not None or ingest.error is not None, FIRST_CHUNK_WAIT)
        found = window.init(epoch)
        if found is not None:
            return found.data, found.sha256
        if ingest.error is not None:
            raise ingest.error
        if epoch is not None and (window.epoch is None or epoch != window.epoch):
            raise Gone(f"no chunk in the window uses epoch {epoch}")
        raise NotFound("the live ingest has no init segment yet", code="chunk_not_found")

    async def chunk(self, track: Track, index: int, rendition: str | None = None, *,
                    client: str | None = None) -> tuple[bytes, str]:
        """(chunk, sha256) if in the window; 410 ``gone`` behind it; a bounded wait just past the edge."""
        station = self._station(track, rendition or DEFAULT_RENDITION, client)
        ingest = station.ingest
        window = ingest.window
        place = window.place(index)
        if place == "soon":
            with station.busy():
                await ingest.wait(lambda: window.place(index) != "soon", self.chunk_wait)
            place = window.place(index)
        found = window.get(index)
        if found is not None:
            return found.data, found.sha256
        if place == "gone":
            raise Gone(f"chunk {index} has left the live window")
        raise NotFound(f"chunk {index} is not in the live window (edge {window.edge})", code="chunk_not_found")

    async def stream(self, track: Track, rendition: str | None = None, *,
                     client: str | None = None) -> AsyncGenerator[tuple[PieceKind, bytes], None]:
        """The init segment, then chunks from the edge on, following the ingest (a new epoch's init before
        its first chunk); ends when the ingest does. Each piece sent is a touch."""
        name = rendition or DEFAULT_RENDITION
        await self.manifest(track, name, client=client)  # starts it, waits for the first chunk
        station = self._station(track, name, client)
        ingest = station.ingest
        window = ingest.window
        index = window.edge
        epoch: int | None = None
        if index is None:
            return
        while True:
            chunk: LiveChunk | None = window.get(index)
            if chunk is None:
                def arrived(want: int = index) -> bool:
                    edge = window.edge
                    return edge is not None and edge >= want

                with station.busy():
                    ready = await ingest.wait(arrived, self.chunk_wait)
                if not ready:
                    if ingest.done:
                        return
                    continue
                chunk = window.get(index)
                if chunk is None:  # the session changed: go on from the oldest chunk past it
                    later = [c for c in window.chunks if c.index > index]
                    if not later:
                        continue
                    chunk = later[0]
            if chunk.epoch != epoch:
                init = window.init(chunk.epoch)
                if init is None:
                    return
                epoch = chunk.epoch
                yield "init", init.data
            yield "chunk", chunk.data
            index = chunk.index + 1
            self._station(track, name, client)  # a touch: a /stream listener keeps the ingest up

    async def stop(self, track_id: str) -> None:
        """Stop every ingest of ``track_id`` now (an admin purge); its edges stay remembered."""
        self._always.discard(track_id)
        self._declared.discard(track_id)
        tasks = [station.task for key, station in self._stations.items() if key[0] == track_id]
        for key in [key for key in self._failed if key[0] == track_id]:
            del self._failed[key]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=CLOSE_SECONDS)

    def running(self) -> dict[tuple[str, str], LiveIngest]:
        return {key: station.ingest for key, station in self._stations.items()}

    async def close(self) -> None:
        """Cancel every ingest (ffmpeg and the upstream connection end with it)."""
        self._closed = True
        tasks = [station.task for station in self._stations.values()]
        if self._reaper is not None:
            tasks.append(self._reaper)
        for task in tasks:
            task.cancel()
        if tasks:
            # Bounded: shutdown must not hang on an upstream that will not close.
            _, pending = await asyncio.wait(tasks, timeout=CLOSE_SECONDS)
            if pending:
                log.warning("%d live ingests did not end within %.0f s of shutdown", len(pending), CLOSE_SECONDS)
