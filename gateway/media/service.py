"""The media service: single-flight transcodes and the readers that follow them.

Theory of operation: for each (track, rendition) there is at most one
``Flight`` (flight.py): one upstream fetch and one ffmpeg process. Requests
never own the transcode; they follow it. Each cluster the splitter yields is
stored, then announced to every waiter, so any number of requests see chunk n
as soon as it exists. A finished transcode writes its manifest last; from
then on requests are answered from the store alone. A failed one leaves no
manifest and is remembered briefly, so N listeners of a broken upstream cause
one fetch, not N. If ffmpeg died midway, the chunks it did store (each
verified against the hash it was stored with) are still served while the
failure is remembered, and removed when it is forgotten; any other failure
(a refused upstream, a full disk) removes its partial chunks at once.

What a flight is made from is a stream of events (events.py): this node's
own transcode (``LocalTranscoder``, transcoding.py: the input prepared,
ffmpeg, and with extras the tags, artwork, waveform and loudness), or in a
cluster whatever ``events_hook`` returns (gateway/cluster/media.py: pulled
from the node that owns the track). Neither writes anything: this service
alone stores the chunks, the extras, the catalog's tags and artwork size,
and the manifest. It checks that the media part holds audio before it
stores any extra, and writes the manifest only once the events have ended
after ``Finished``, so the extras are always stored before it. The waveform
is served live from the flight while it runs.

Every read from the store names the SHA-256 the bytes must have (the manifest's
or the flight's); the store refuses and evicts what does not match, which is a
miss here, so the track is transcoded again (bit-exact, same hashes).

Slots are shared fairly (fairness.py): at most ``max_concurrent`` transcodes
run; one client (address, IPv6 /64) and one upstream host hold at most
their share of the running and waiting ones (429 ``too_many_transcodes``,
503 ``upstream_host_busy``); library tracks and tracks already in the store
wait in their own queue, go first and alone may take the reserved slots; each
queue holds at most ``max_concurrent``. A new track past that, or a request
whose track is still waiting for a slot when its wait ends, gets 503
``overloaded`` with ``Retry-After``, never a 504. A transcode that falls
behind real time once its grace is over (an upstream trickling just fast
enough to pass the fetcher's own floor) loses its slot: 504
``transcode_too_slow``.

When every follower has gone the transcode still runs to its end: finishing
(at ~100x real time) is cheaper than fetching the upstream again later. It is
bounded by ``transcode.timeout_seconds`` and cancelled on shutdown, which kills
ffmpeg's process group.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncGenerator, Mapping
from typing import Any
from urllib.parse import urlsplit

from transcode.artwork import placeholder_artwork
from transcode.ffmpeg import Rendition

from ..errors import (
    NotAudio,
    NotFound,
    Overloaded,
    StorageError,
    TooLarge,
    TooManyRequests,
    UpstreamTimeout,
    ZtreamError,
)
from ..metrics import Metrics
from .catalog import Track, TrackCatalog
from .events import (
    ArtworkFound,
    Cluster,
    Events,
    EventsHook,
    Failed,
    Finished,
    InitSegment,
    TagsFound,
    WaveformFound,
)
from .extras import ExtrasStore
from .fairness import Claim, SlotBook, SlotLimits, behind_realtime, client_group
from .flight import RETRY_AFTER, Flight
from .store import ChunkStore
from .transcoding import LocalTranscoder
from .types import Manifest, PieceKind, WaveformJSON
from .upstream import Source

__all__ = ["MediaService"]

log = logging.getLogger("ztream.transcoder")

# A failed transcode's error is answered again for this long before retrying.
ERROR_TTL = 20.0
# How often a running transcode's speed is checked against real time.
SPEED_CHECK_SECONDS = 1.0


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class MediaService:
    """What the HTTP handlers ask for a track's manifest, init segment, chunks and stream."""

    def __init__(
        self,
        *,
        store: ChunkStore,
        catalog: TrackCatalog,
        sources: Mapping[str, Source],
        rendition: Rendition,
        metrics: Metrics,
        timeout: float,
        max_duration: float,
        max_concurrent: int,
        wait_seconds: float,
        extras: ExtrasStore | None = None,
        events_hook: EventsHook | None = None,
        slot_limits: SlotLimits | None = None,
        min_speed: float = 0.0,
        speed_grace: float = 10.0,
    ) -> None:
        """``events_hook`` (a cluster's) decides where each flight's events come from; without it,
        this node transcodes every track itself."""
        self.store = store
        self.extras = extras
        self.events_hook = events_hook
        self.catalog = catalog
        self.sources = sources
        self.rendition = rendition
        self.metrics = metrics
        self.timeout = timeout
        self.max_duration = max_duration
        self.wait_seconds = wait_seconds
        self.max_concurrent = max_concurrent
        self.min_speed = min_speed
        self.speed_grace = speed_grace
        self._slots = SlotBook(slot_limits or SlotLimits(max_concurrent=max_concurrent))
        # Set when the flight of that track may run (its claim holds a slot).
        self._admitted: dict[str, asyncio.Event] = {}
        self._flights: dict[str, Flight] = {}
        # Failed flights, remembered for ERROR_TTL: their error, and the chunks they stored.
        self._errors: dict[str, tuple[float, Flight]] = {}
        self._closed = False
        self._local = LocalTranscoder(rendition=rendition, metrics=metrics)

    # -- starting and following -------------------------------------------

    def flight(self, track: Track) -> Flight | None:
        return self._flights.get(track.id)

    def running_tasks(self) -> list[asyncio.Task[None]]:
        """The tasks of the transcodes running now (a live config change waits for them to retire a fetcher)."""
        return [f.task for f in self._flights.values() if f.task is not None]

    def _claim(self, track: Track, client: str | None) -> Claim:
        host = urlsplit(track.locator).hostname if track.source == "url" else None
        privileged = track.source == "local" or self.cached_manifest(track) is not None
        return Claim(key=track.id, client=client_group(client), host=host, privileged=privileged)

    def _start(self, track: Track, client: str | None = None) -> Flight:
        """The flight of ``track``, started (on behalf of ``client``, an address) if none runs."""
        flight = self._flights.get(track.id)
        if flight is not None:
            return flight
        if track.live:
            # Served by the live service (gateway/live/) only: never transcoded as a file, never recorded.
            raise NotFound("a live track has no file transcode (no waveform, no recording)", code="live_track")
        if self._closed:
            raise ZtreamError("the gateway is shutting down", code="shutting_down")
        failed = self._failed(track.id)
        if failed is not None and failed.error is not None:
            raise failed.error
        claim = self._claim(track, client)
        refusal = self._slots.refusal(claim)
        if refusal == "too_many_transcodes":
            raise TooManyRequests(
                f"this client already has {self._slots.limits.per_client} transcodes running or waiting;"
                " try again once one has finished", code="too_many_transcodes", retry_after=RETRY_AFTER)
        if refusal == "upstream_host_busy":
            raise Overloaded(
                f"{self._slots.limits.per_host} transcodes from {claim.host} are running or waiting;"
                " try again shortly", code="upstream_host_busy", retry_after=RETRY_AFTER)
        if refusal == "overloaded":
            running, waiting = len(self._slots.running), len(self._slots.waiting())
            raise Overloaded(
                f"{running} transcodes are running and {waiting} waiting; try again shortly",
                retry_after=RETRY_AFTER,
            )
        flight = Flight(track=track, rendition=self.rendition)
        self._flights[track.id] = flight
        admitted = self._admitted[track.id] = asyncio.Event()
        if self._slots.add(claim):
            admitted.set()
        flight.task = asyncio.create_task(self._run(flight), name=f"transcode {track.id}")
        return flight

    def _release(self, track_id: str) -> None:
        self._admitted.pop(track_id, None)
        for claim in self._slots.release(track_id):
            event = self._admitted.get(claim.key)
            if event is not None:
                event.set()

    async def _run(self, flight: Flight) -> None:
        track, rid = flight.track, self.rendition.id
        started = time.monotonic()
        try:
            try:
                await self._admitted[track.id].wait()
                flight.running = True
                self.metrics.transcodes_running.inc()
                try:
                    await self._pump_in_time(flight)
                finally:
                    self.metrics.transcodes_running.dec()
            finally:
                self._release(track.id)
            manifest = flight.manifest(complete=True)
            # Written last: its presence is what makes the track complete.
            self.store.put_manifest(track.id, rid, manifest)
            if manifest["duration"] is not None:  # always, since the flight has chunks
                self.catalog.set_duration(track.id, manifest["duration"])
            self.catalog.mark_transcoded(track.id)
            flight.complete = True
            self.metrics.transcodes.labels("ok").inc()
            self.metrics.transcode_seconds.observe(time.monotonic() - started)
        except asyncio.CancelledError:
            flight.error = ZtreamError("the gateway is shutting down", code="shutting_down")
            raise
        except BaseException as exc:  # noqa: BLE001 - every failure ends the flight
            flight.error = self._as_error(exc)
            self._remember_failure(flight)
            self._record_failure(track, flight.error)
            self.metrics.transcodes.labels("error").inc()
            level = logging.WARNING if isinstance(exc, ZtreamError) else logging.ERROR
            log.log(level, "transcode %s failed: %s", track.id, flight.error.detail,
                    exc_info=level == logging.ERROR)
        finally:
            self._flights.pop(track.id, None)
            flight.notify()

    async def _pump_in_time(self, flight: Flight) -> None:
        """``_pump``, ended with 504 ``transcode_too_slow`` if it falls behind real time."""
        if self.min_speed <= 0:
            await self._pump(flight)
            return
        pump = asyncio.ensure_future(self._pump(flight))
        held_since = time.monotonic()
        try:
            while True:
                done, _ = await asyncio.wait({pump}, timeout=SPEED_CHECK_SECONDS)
                if done:
                    pump.result()
                    return
                produced = flight.chunks[-1]["start"] + flight.chunks[-1]["duration"] if flight.chunks else 0.0
                held = time.monotonic() - held_since
                # Only this node's own transcode is judged: a pull from another node follows
                # that node's transcode, which its own gateway judges.
                if not flight.made_here or flight.media_done or not behind_realtime(
                        produced=produced, held=held, grace=self.speed_grace, min_speed=self.min_speed):
                    continue
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pump
                raise UpstreamTimeout(
                    f"the upstream is slower than real time: {produced:.1f} s of audio in {held:.0f} s",
                    code="transcode_too_slow")
        finally:
            if not pump.done():
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pump

    async def _pump(self, flight: Flight) -> None:
        """Store the flight's events as they come; return once they ended after ``Finished``."""
        track, rid = flight.track, self.rendition.id
        source = self.sources.get(track.source)
        if source is None:
            raise NotFound(f"the {track.source} source is not configured", code="source_disabled")

        def local() -> Events:
            flight.made_here = True
            return self._local.events(flight, source, self.timeout)

        made = local() if self.events_hook is None else self.events_hook(track, local)
        finished: Finished | None = None
        media_done = False
        # aclosing: leaving the loop early (too long, failed) ends ffmpeg here, not at garbage collection.
        async with contextlib.aclosing(made) as events:
            async for event in events:
                if finished is not None:
                    raise RuntimeError(f"the transcode of {track.id} went on after it finished")
                if isinstance(event, InitSegment):
                    self.store.put_init(track.id, rid, event.data)
                    flight.init = {"size": len(event.data), "sha256": _sha256(event.data)}
                    flight.notify()
                elif isinstance(event, Cluster):
                    if event.start >= self.max_duration:
                        raise TooLarge(f"the upstream is longer than {self.max_duration:.0f} s",
                                       setting="sources.url.max_duration_seconds")
                    self.store.put_chunk(track.id, rid, event.index, event.data)
                    flight.chunks.append(
                        {
                            "index": event.index,
                            "start": round(event.start, 3),
                            "duration": round(event.duration, 3),
                            "size": len(event.data),
                            "sha256": _sha256(event.data),
                        }
                    )
                    flight.notify()
                elif isinstance(event, Failed):
                    raise event.error
                else:
                    if not media_done:  # the media part is over: no extra is stored for a track without audio
                        if flight.init is None or not flight.chunks:
                            raise NotAudio("the upstream holds no audio ffmpeg could decode")
                        media_done = flight.media_done = True
                    if isinstance(event, Finished):
                        finished = event
                    else:
                        self._store_extra(track, event)
        if finished is None:
            raise RuntimeError(f"the events of {track.id} ended without saying how the transcode went")
        flight.loudness = finished.loudness
        if self.rendition.extras:
            flight.extras_stored = True

    def _store_extra(self, track: Track, event: TagsFound | ArtworkFound | WaveformFound) -> None:
        """One thing the transcode found besides the chunks, stored (the manifest comes after)."""
        rid = self.rendition.id
        if isinstance(event, TagsFound):
            self.catalog.apply_tags(track.id, event.tags)
        elif isinstance(event, ArtworkFound):
            artwork = event.artwork
            self.catalog.set_artwork_size(track.id, artwork.width, artwork.height)
            if self.extras is not None:
                self.extras.put_artwork(track.id, rid, artwork)
        elif self.extras is not None:
            self.extras.put_waveform(track.id, rid, event.waveform)

    # -- failed flights ----------------------------------------------------

    def _remember_failure(self, flight: Flight) -> None:
        track_id = flight.track.id
        error = flight.error
        if error is None or error.code != "transcode_failed":
            # Kept only when ffmpeg died midway (those bytes are good). A refused
            # upstream (too large, not audio, cut short) keeps nothing, and a
            # failed disk keeps nothing so that the space is free at once.
            flight.init, flight.chunks = None, []
            self._drop_partial(track_id)
        self._errors[track_id] = (time.monotonic(), flight)
        asyncio.get_running_loop().call_later(ERROR_TTL, self._forget, track_id, flight)

    def _record_failure(self, track: Track, error: ZtreamError) -> None:
        """Keep the error on the track's record (the admin's track list shows it); never fails the flight more."""
        try:
            self.catalog.mark_failed(track.id, error.code, error.detail, error.setting)
        except Exception as exc:  # noqa: BLE001 - the catalog's disk failing must not hide the transcode's error
            log.warning("cannot record the failure of %s: %r", track.id, exc)

    def _failed(self, track_id: str) -> Flight | None:
        """The failed flight of ``track_id`` still remembered, if any."""
        failed = self._errors.get(track_id)
        if failed is None:
            return None
        if time.monotonic() - failed[0] < ERROR_TTL:
            return failed[1]
        self._forget(track_id, failed[1])
        return None

    def _forget(self, track_id: str, flight: Flight) -> None:
        remembered = self._errors.get(track_id)
        if remembered is None or remembered[1] is not flight:
            return  # already forgotten, or a newer failure
        del self._errors[track_id]
        if track_id not in self._flights:  # a retry running now owns what is stored
            self._drop_partial(track_id)

    def _drop_partial(self, track_id: str) -> None:
        """Remove the partial chunks of a failed transcode (never a complete track's)."""
        if self.store.get_manifest(track_id, self.rendition.id) is not None:
            return
        try:
            self.store.purge(track_id)
        except StorageError as exc:
            log.warning("cannot remove the partial chunks of %s: %s", track_id, exc.detail)

    @staticmethod
    def _as_error(exc: BaseException) -> ZtreamError:
        """What the flight's followers are told: a transcode's own errors are ``ZtreamError``s already."""
        if isinstance(exc, ZtreamError):
            return exc
        return ZtreamError("internal error while transcoding")

    # -- what handlers call --------------------------------------------------

    def cached_manifest(self, track: Track) -> Manifest | None:
        return self.store.get_manifest(track.id, self.rendition.id)

    async def manifest(self, track: Track, *, client: str | None = None) -> Manifest:
        """The complete manifest, or the live one once the first chunk exists."""
        cached = self.cached_manifest(track)
        if cached is not None:
            return cached
        flight = self._start(track, client)
        await flight.wait(lambda: bool(flight.chunks), self.wait_seconds)
        if flight.error is not None:
            raise flight.error
        cached = self.cached_manifest(track)
        if cached is not None:
            return cached
        return flight.manifest(complete=flight.complete)

    async def init(self, track: Track, *, client: str | None = None) -> tuple[bytes, str, bool]:
        """(init segment, sha256, complete)."""
        rid = self.rendition.id
        manifest = self.cached_manifest(track)
        if manifest is not None and manifest["init"] is not None:
            sha = manifest["init"]["sha256"]
            data = self.store.get_init(track.id, rid, sha)
            if data is not None:
                self.metrics.cache_hits.inc()
                return data, sha, True
        failed = self._failed(track.id)
        if manifest is None and failed is not None and failed.init is not None:
            # The transcode died after storing this: still good bytes.
            data = self.store.get_init(track.id, rid, failed.init["sha256"])
            if data is not None:
                return data, failed.init["sha256"], False
        self.metrics.cache_misses.inc()
        flight = self._start(track, client)
        await flight.wait(lambda: flight.init is not None, self.wait_seconds)
        if flight.init is None:
            raise flight.error or NotAudio("the transcode produced no init segment")
        data = self.store.get_init(track.id, rid, flight.init["sha256"])
        if data is None:
            raise StorageError("the init segment was evicted or damaged while transcoding", code="evicted")
        return data, flight.init["sha256"], flight.complete

    async def chunk(self, track: Track, index: int, *, client: str | None = None) -> tuple[bytes, str, bool]:
        """(chunk bytes, sha256, complete); waits, bounded, for a live chunk."""
        rid = self.rendition.id
        manifest = self.cached_manifest(track)
        if manifest is not None:
            if not 0 <= index < len(manifest["chunks"]):
                raise NotFound(f"chunk {index} is past the end", code="chunk_not_found")
            sha = manifest["chunks"][index]["sha256"]
            data = self.store.get_chunk(track.id, rid, index, sha)
            if data is not None:
                self.metrics.cache_hits.inc()
                return data, sha, True
        else:
            failed = self._failed(track.id)
            if failed is not None and index < len(failed.chunks):
                # The transcode died after storing this chunk: still good bytes.
                sha = failed.chunks[index]["sha256"]
                data = self.store.get_chunk(track.id, rid, index, sha)
                if data is not None:
                    return data, sha, False
        self.metrics.cache_misses.inc()
        flight = self._start(track, client)
        await flight.wait(lambda: len(flight.chunks) > index, self.wait_seconds)
        if len(flight.chunks) <= index:
            if flight.error is not None:
                raise flight.error
            raise NotFound(f"chunk {index} is past the end", code="chunk_not_found")
        sha = flight.chunks[index]["sha256"]
        data = self.store.get_chunk(track.id, rid, index, sha)
        if data is None:
            raise StorageError("the chunk was evicted or damaged while transcoding", code="evicted")
        return data, sha, flight.complete

    async def stream(
        self, track: Track, *, client: str | None = None
    ) -> AsyncGenerator[tuple[PieceKind, bytes], None]:
        """("init" | "chunk", bytes) from the start, following a live transcode.

        A generator, not just an iterator: a caller that stops early must
        ``aclose()`` it, so its wait on a live flight ends at once.
        """
        data, _, _ = await self.init(track, client=client)
        yield "init", data
        index = 0
        while True:
            try:
                data, _, _ = await self.chunk(track, index, client=client)
            except NotFound:
                return
            yield "chunk", data
            index += 1

    async def waveform(self, track: Track, *, client: str | None = None) -> tuple[WaveformJSON, bool]:
        """(the waveform, complete): stored once complete, else the running transcode's so far."""
        rid = self.rendition.id
        if not self.rendition.extras:
            raise NotFound("this gateway computes no waveforms", code="waveform_not_found")
        if track.live:
            raise NotFound("a live track has no waveform", code="waveform_not_found")
        stored = self.extras.get_waveform(track.id, rid) if self.extras is not None else None
        if stored is not None:
            return _waveform_json(stored), True
        # Not stored: a transcode (a new one even if the chunks are cached) makes it.
        flight = self._start(track, client)
        await flight.wait(lambda: bool(flight.chunks), self.wait_seconds)
        if flight.error is not None:
            raise flight.error
        stored = self.extras.get_waveform(track.id, rid) if self.extras is not None else None
        if stored is not None:
            return _waveform_json(stored), True
        live = _waveform_json(flight.analysis.waveform.json())
        live["complete"] = False  # complete means stored
        return live, False

    async def artwork(self, track: Track, *, client: str | None = None) -> tuple[bytes, str, bool]:
        """(JPEG, ETag, known): the file's artwork, or the placeholder.

        ``known`` is False while the transcode that finds it still runs (or
        did not end within ``wait_seconds``): the placeholder is then only
        for now, not for good.
        """
        rid = self.rendition.id
        stored = self.extras.get_artwork(track.id, rid) if self.extras is not None else None
        if stored is None and self.rendition.extras and not track.live:
            flight = self._start(track, client)
            try:
                await flight.wait(lambda: flight.extras_stored, self.wait_seconds)
            except UpstreamTimeout:
                pass
            if flight.error is not None:
                raise flight.error
            stored = self.extras.get_artwork(track.id, rid) if self.extras is not None else None
        if stored is not None and stored.jpeg is not None:
            return stored.jpeg, stored.etag, True
        # The track's own gradient, from its tags (as the list's placeholder draws it).
        known = self.catalog.get(track.id) or track
        placeholder = await asyncio.to_thread(placeholder_artwork, self.rendition.binary, known.title, known.artist)
        return placeholder, "placeholder-" + _sha256(placeholder)[:24], stored is not None

    def purge(self, track_id: str) -> None:
        self._errors.pop(track_id, None)
        self.store.purge(track_id)
        if self.extras is not None:
            self.extras.purge(track_id)

    async def close(self) -> None:
        """Cancel every running transcode (which kills its ffmpeg group); start no new one."""
        self._closed = True
        tasks = [f.task for f in self._flights.values() if f.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except BaseException:  # noqa: BLE001 - shutting down
                pass


def _waveform_json(raw: dict[str, Any]) -> WaveformJSON:
    return {
        "version": int(raw["version"]),
        "length": int(raw["length"]),
        "peaks": list(raw["peaks"]),
        "duration": float(raw["duration"]),
        "complete": bool(raw["complete"]),
    }
