"""The media path's one writer: MediaService stores what a transcode's events say, in order.

These drive the service with a scripted events hook (what a cluster pull
does) and fake sources, so no ffmpeg runs: the order of the writes, the
no-audio check, ``Failed`` and a stream that ends without ``Finished``.
Also the source capabilities (protocols checked with ``isinstance``) and
the typed ``retry_after``/``headers`` of ``ZtreamError``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import (
    NotAudio,
    Overloaded,
    RangeNotSatisfiable,
    StorageError,
    UpstreamError,
    ZtreamError,
)
from gateway.media.catalog import Track, TrackCatalog, track_id_for
from gateway.media.events import (
    ArtworkFound,
    Cluster,
    Event,
    Events,
    Failed,
    Finished,
    InitSegment,
    TagsFound,
    WaveformFound,
)
from gateway.media.extras import ExtrasStore, StoredArtwork
from gateway.media.service import MediaService
from gateway.media.store import ChunkStore
from gateway.media.upstream import BoundedSource, CoverSource, PathSource, TailSource
from gateway.metrics import Metrics
from gateway.sources.local import LocalSource
from gateway.sources.soundcloud.errors import RateLimited
from gateway.sources.url import UrlSource
from transcode.analysis import Loudness, Tags
from transcode.ffmpeg import Rendition

RENDITION = Rendition(
    id="r1", binary="ffmpeg", version="test", argv=("ffmpeg",), bitrate=96_000, chunk_seconds=2.0,
    analysis_argv=("ffmpeg", "analysis"),  # extras on
)
WAVEFORM = {"version": 1, "length": 2, "peaks": [0.5, 0.25], "duration": 4.0, "complete": True}
ARTWORK = StoredArtwork(jpeg=b"\xff\xd8jpeg", width=300, height=200)


class _NoSource:
    name = "url"

    def open(self, track: Track) -> AsyncIterator[bytes]:
        raise AssertionError("the scripted hook never transcodes here")


class Harness:
    def __init__(self, tmp_path: Path, script: list[Event]) -> None:
        self.script = script
        self.closed = False
        self.store = ChunkStore(tmp_path / "chunks", 64 * 2**20)
        self.catalog = TrackCatalog(tmp_path / "tracks")
        self.extras = ExtrasStore(tmp_path / "extras", 32 * 2**20)
        self.track = Track(id=track_id_for("url", "https://up.example/a.mp3"), source="url",
                           locator="https://up.example/a.mp3", title="a.mp3")
        self.catalog.add(self.track)
        self.service = MediaService(
            store=self.store, catalog=self.catalog, sources={"url": _NoSource()}, rendition=RENDITION,
            metrics=Metrics(), timeout=30, max_duration=3600, max_concurrent=2, wait_seconds=5,
            extras=self.extras, events_hook=self.hook,
        )

    async def hook(self, track: Track, local: Callable[[], Events]) -> Events:
        try:
            for event in self.script:
                yield event
        finally:
            self.closed = True

    def close(self) -> None:
        self.catalog.close()
        self.extras.close()
        self.store.close()


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Callable[[list[Event]], Harness]]:
    made: list[Harness] = []

    def make(script: list[Event]) -> Harness:
        made.append(Harness(tmp_path / str(len(made)), script))
        return made[-1]

    yield make
    for h in made:
        h.close()


def _media() -> list[Event]:
    return [
        InitSegment(b"init"),
        Cluster(index=0, start=0.0, duration=2.0, data=b"c0"),
        Cluster(index=1, start=2.0, duration=2.0, data=b"c1"),
    ]


async def _ask(h: Harness) -> ZtreamError | None:
    """Ask for the manifest (which starts the flight), then let the flight end; the error answered, if any."""
    try:
        await h.service.manifest(h.track)
        error = None
    except ZtreamError as exc:
        error = exc
    for task in h.service.running_tasks():
        await task
    return error


async def test_the_service_stores_every_event_and_the_manifest_after_the_extras(harness: Any) -> None:
    h = harness([
        *_media(), TagsFound(Tags(title="Song", artist="Band", album="LP")), ArtworkFound(ARTWORK),
        WaveformFound(dict(WAVEFORM)), Finished(Loudness(-14.2, -1.0)),
    ])
    seen_at_manifest: list[Any] = []
    put_manifest = h.store.put_manifest

    def spy(track_id: str, rid: str, manifest: Any) -> None:
        seen_at_manifest.append((h.extras.get_artwork(track_id, rid), h.extras.get_waveform(track_id, rid),
                                 h.catalog.get(track_id)))
        put_manifest(track_id, rid, manifest)

    h.store.put_manifest = spy
    assert await _ask(h) is None
    manifest = h.service.cached_manifest(h.track)
    assert manifest is not None and manifest["complete"] is True
    assert manifest["duration"] == 4.0 and len(manifest["chunks"]) == 2
    assert manifest["loudness_lufs"] == -14.2 and manifest["true_peak_db"] == -1.0
    assert h.closed
    [(artwork, waveform, track)] = seen_at_manifest
    assert artwork == ARTWORK and waveform == WAVEFORM
    assert track.title == "Song" and track.artist == "Band" and track.album == "LP"
    assert (track.artwork_width, track.artwork_height) == (300, 200)
    data, _, complete = await h.service.chunk(h.track, 1)
    assert data == b"c1" and complete
    assert (await h.service.waveform(h.track)) == (WAVEFORM, True)


async def test_no_audio_is_refused_before_any_extra_is_stored(harness: Any) -> None:
    h = harness([InitSegment(b"init"), TagsFound(Tags(title="Song")), ArtworkFound(ARTWORK),
                 WaveformFound(dict(WAVEFORM)), Finished()])
    assert isinstance(await _ask(h), NotAudio)
    assert h.closed
    track = h.catalog.get(h.track.id)
    assert track is not None and track.title == "a.mp3" and track.artwork_width is None
    assert h.extras.get_artwork(h.track.id, RENDITION.id) is None
    assert h.extras.get_waveform(h.track.id, RENDITION.id) is None
    assert h.service.cached_manifest(h.track) is None


async def test_failed_is_what_every_follower_is_told(harness: Any) -> None:
    error = UpstreamError("the owner's upstream broke", code="upstream_failed")
    h = harness([*_media(), Failed(error), Finished()])
    assert await _ask(h) is error
    assert h.closed
    with pytest.raises(UpstreamError) as raised:  # remembered
        await h.service.manifest(h.track)
    assert raised.value is error
    assert h.service.cached_manifest(h.track) is None


@pytest.mark.parametrize("script", [_media(), [*_media(), Finished(), WaveformFound(dict(WAVEFORM))]],
                         ids=["no-finished", "event-after-finished"])
async def test_a_stream_that_breaks_the_event_order_is_an_internal_error(harness: Any, script: list[Event]) -> None:
    h = harness(script)
    error = await _ask(h)
    assert error is not None and error.code == "internal" and error.status == 500
    assert h.service.cached_manifest(h.track) is None


def test_sources_declare_their_capabilities(tmp_path: Path) -> None:
    local = LocalSource([tmp_path], max_bytes=1000)
    assert isinstance(local, PathSource) and isinstance(local, CoverSource) and isinstance(local, BoundedSource)
    assert not isinstance(local, TailSource)
    url = UrlSource(fetcher=None, max_bytes=1000)  # type: ignore[arg-type]
    assert isinstance(url, TailSource) and isinstance(url, BoundedSource)
    assert not isinstance(url, PathSource) and not isinstance(url, CoverSource)
    assert not isinstance(_NoSource(), BoundedSource)


def test_errors_carry_retry_after_and_headers() -> None:
    plain = ZtreamError("x")
    assert plain.retry_after is None and plain.headers == {}
    assert Overloaded("busy").retry_after == 5
    assert Overloaded("busy", retry_after=9).retry_after == 9
    assert StorageError("disk").retry_after == 30
    assert RangeNotSatisfiable("no", content_range="bytes */10").headers == {"Content-Range": "bytes */10"}
    clock = [100.0]
    limited = RateLimited("slow down", retry_at=130.4, clock=lambda: clock[0])
    assert limited.retry_after == 31
    clock[0] = 125.0
    assert limited.retry_after == 6  # computed when read
