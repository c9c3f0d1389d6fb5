"""The live ingest (gateway/live/ingest.py) with a fake live upstream feeding a real ffmpeg."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.errors import UpstreamError
from gateway.live.ingest import LiveIngest
from gateway.live.window import LiveWindow
from gateway.media.catalog import Track
from gateway.media.types import LiveState
from gateway.media.upstream import LiveSource, NowPlaying
from tests.support.audio import decoded_seconds, ffmpeg_bin, make_audio
from transcode.ffmpeg import make_rendition

TRACK = Track(id="live0000000000aa", source="url", locator="http://radio.example/live.mp3", title="Radio", live=True)


class FakeStation(LiveSource):
    """Each connection plays ``body`` (MP3 bytes) at ``rate`` bytes/s, with titles; then ends or fails."""

    def __init__(self, body: bytes, *, rate: float, sessions: list[str]) -> None:
        self.body = body
        self.rate = rate
        self.sessions = sessions  # per connection: "end", "fail" or "refuse"
        self.opened = 0
        self.closed = 0

    async def open_live(self, track: Track) -> AsyncIterator[bytes | NowPlaying]:
        what = self.sessions[min(self.opened, len(self.sessions) - 1)]
        self.opened += 1
        try:
            if what == "refuse":
                raise UpstreamError("connection refused", code="upstream_failed")
            yield NowPlaying(f"Song {self.opened}")
            piece = 4096
            for offset in range(0, len(self.body), piece):
                yield self.body[offset : offset + piece]
                await asyncio.sleep(piece / self.rate)
            if what == "fail":
                raise UpstreamError("reset", code="upstream_failed")
        finally:
            self.closed += 1


@pytest.fixture(scope="module")
def mp3(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_audio(tmp_path_factory.mktemp("live") / "a.mp3", 6.0, fmt="mp3").read_bytes()


def ingest_of(station: FakeStation, window: LiveWindow, states: list[LiveState], **kw: object) -> LiveIngest:
    rendition = make_rendition(ffmpeg_bin(), bitrate=64000, chunk_seconds=1.0)
    return LiveIngest(track=TRACK, source=station, rendition=rendition, window=window, reconnect_max=0.5,
                      on_state=lambda old, new: states.append(new), **kw)  # type: ignore[arg-type]


async def test_chunks_of_about_a_second_indices_and_walls_then_reconnects_with_the_same_epoch(mp3: bytes) -> None:
    station = FakeStation(mp3, rate=200_000, sessions=["end", "fail", "end"])
    window = LiveWindow(600.0)
    states: list[LiveState] = []
    clock = [1_767_225_600.0 + 5_000]
    ingest = ingest_of(station, window, states, now=lambda: clock[0])
    task = asyncio.create_task(ingest.run())
    try:
        assert await ingest.wait(lambda: ingest.sessions >= 3 and ingest.state == "live", 60)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert states[:3] == ["live", "reconnecting", "live"]
    assert ingest.title is not None and ingest.title.startswith("Song ")
    chunks = list(window.chunks)
    indices = [c.index for c in chunks]
    assert indices[0] == 10_000 and indices == list(range(10_000, 10_000 + len(indices)))  # same second: no gap
    first_session = [c for c in chunks if c.start == 0.0]
    assert len(first_session) >= 2  # each session starts its timeline again
    assert {c.epoch for c in chunks} == {10_000}  # the same format: one init, one epoch
    # ~1 s chunks (Opus frames are 20 ms; the last of a session is shorter).
    assert all(0.9 <= c.duration <= 1.1 for c in chunks if c.start + c.duration < 5.9)
    init = window.init()
    assert init is not None
    whole = init.data + b"".join(c.data for c in chunks[: len(first_session) and indices.index(first_session[1].index)])
    assert 5.5 <= decoded_seconds(whole) <= 6.5
    assert station.closed == station.opened  # every connection closed


async def test_an_upstream_that_never_plays_is_given_up(mp3: bytes) -> None:
    station = FakeStation(mp3, rate=200_000, sessions=["refuse"])
    ingest = ingest_of(station, LiveWindow(60.0), [])
    await asyncio.wait_for(ingest.run(), 10)
    assert ingest.error is not None and ingest.error.code == "upstream_failed"
    assert station.opened == 1


async def test_a_persistent_station_keeps_trying(mp3: bytes) -> None:
    station = FakeStation(mp3, rate=200_000, sessions=["refuse", "refuse", "end"])
    window = LiveWindow(60.0)
    ingest = ingest_of(station, window, [], persistent=True)
    task = asyncio.create_task(ingest.run())
    try:
        assert await ingest.wait(lambda: window.edge is not None, 30)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert station.opened >= 3


async def test_cancelling_ends_ffmpeg_and_the_connection(mp3: bytes) -> None:
    station = FakeStation(mp3 * 20, rate=16_000, sessions=["end"])  # real time for 128 kbit/s
    window = LiveWindow(60.0)
    ingest = ingest_of(station, window, [])
    task = asyncio.create_task(ingest.run())
    assert await ingest.wait(lambda: window.edge is not None, 30)
    # Real time: chunk walls follow the clock within a chunk or so.
    walls = [c.wall for c in window.chunks]
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert station.closed == 1 and ingest.done
    assert walls == sorted(walls)


def test_rendition_chunk_length_is_the_live_one(tmp_path: Path) -> None:
    assert make_rendition(ffmpeg_bin(), bitrate=64000, chunk_seconds=1.0).chunk_seconds == 1.0


class StallingStation(LiveSource):
    """``body`` in real time for ``stall_at`` seconds, nothing for ``stall`` seconds, then what it
    held at once and the rest in real time again (a playout that froze and caught up)."""

    def __init__(self, body: bytes, *, rate: float, stall_at: float, stall: float) -> None:
        self.body, self.rate, self.stall_at, self.stall = body, rate, stall_at, stall
        self.stalled: tuple[float, float] | None = None  # (when it stopped, when it came back)

    async def open_live(self, track: Track) -> AsyncIterator[bytes | NowPlaying]:
        piece = 4000
        loop = asyncio.get_running_loop()
        began = loop.time()
        for offset in range(0, len(self.body), piece):
            media = offset / self.rate
            # Held from stall_at: what it held comes at once when it is back, then real time again.
            due = began + (max(media, self.stall_at + self.stall) if media >= self.stall_at else media)
            if self.stalled is None and media >= self.stall_at:
                stopped = time.time()
                await asyncio.sleep(max(0.0, due - loop.time()))
                self.stalled = (stopped, time.time())
            else:
                await asyncio.sleep(max(0.0, due - loop.time()))
            yield self.body[offset : offset + piece]


async def test_a_burst_after_a_stall_is_dated_when_it_came(mp3: bytes) -> None:
    station = StallingStation(mp3 * 2, rate=16_000, stall_at=4.0, stall=3.0)  # 128 kbit/s: real time
    window = LiveWindow(60.0)
    ingest = ingest_of(station, window, [])
    task = asyncio.create_task(ingest.run())
    try:
        assert await ingest.wait(lambda: station.stalled is not None and window.edge is not None
                                 and window.chunks[-1].start >= 8.0, 40)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert station.stalled is not None
    stopped, back = station.stalled
    chunks = list(window.chunks)
    # Cut before the stall: dated before it. Its audio came after: dated after it came back,
    # though ffmpeg cut the held seconds together, a chunk's time at once (not a chunk before).
    assert all(c.wall < stopped for c in chunks if c.start + c.duration <= 3.5), [(c.start, c.wall - stopped) for c in chunks]
    after = [c for c in chunks if c.start >= 4.5]
    assert after and all(c.wall >= back - 0.05 for c in after), [(c.start, c.wall - back) for c in after]
    assert [c.wall for c in chunks] == sorted(c.wall for c in chunks)
