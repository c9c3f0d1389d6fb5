"""Following live HLS written by ffmpeg in real time (``-re``), served on loopback.

``HlsFollower.follow_live`` is driven directly: what it yields is checked
piece by piece (each segment once, in order, the init section once), decoded
by an independent ffmpeg, and the upstream's request log shows the reload
cadence. A killed encoder leaves a frozen playlist: the follow ends with
``hls_stalled``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.errors import UpstreamTimeout
from gateway.media.upstream import NowPlaying
from gateway.sources.fetch import SafeFetcher
from gateway.sources.hls_follow import HlsFollower
from gateway.sources.hls_live import MIN_STALL_SECONDS
from tests.support.audio import decoded_seconds
from tests.support.hls import HlsSite, LiveHls, write_vod


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[HlsSite]:
    s = await HlsSite(tmp_path).start()
    yield s
    await s.close()


@pytest.fixture
async def follower(site: HlsSite) -> AsyncIterator[HlsFollower]:
    fetcher = SafeFetcher(allow_hosts=[f"127.0.0.1:{site.port}"])
    yield HlsFollower(fetcher, max_bytes=1_000_000)  # a live follow is not bounded by max_bytes
    await fetcher.aclose()


def segment_hits(site: HlsSite, kind: str) -> dict[str, int]:
    return {n: c for n, c in site.hits.items() if n.startswith(f"files/{kind}/") and not n.endswith(".m3u8")}


@pytest.mark.parametrize("kind", ["ts-aac", "fmp4-aac", "packed-mp3"])
async def test_live_playlist_is_followed_at_its_edge_until_it_ends(
    site: HlsSite, follower: HlsFollower, tmp_path: Path, kind: str
) -> None:
    encoder = LiveHls(tmp_path / kind, kind, seconds=8, segment_seconds=1.0)
    await encoder.start()
    try:
        pieces: list[bytes | NowPlaying] = []
        async with asyncio.timeout(30):
            async for piece in follower.follow_live(site.url(f"files/{kind}/index.m3u8")):
                pieces.append(piece)  # ends at the #EXT-X-ENDLIST ffmpeg writes when the input ends
    finally:
        await encoder.stop()
    data = [p for p in pieces if isinstance(p, bytes)]
    hits = segment_hits(site, kind)
    assert all(count == 1 for count in hits.values()), hits  # every segment (and init) once
    assert len(data) == len(hits)
    if kind.startswith("fmp4"):
        assert hits[f"files/{kind}/init.mp4"] == 1 and data[0][4:8] == b"ftyp"
    # Started at the edge (the last segment listed when it joined), then every later one: most of 8 s.
    seconds = decoded_seconds(b"".join(data))
    assert 5.0 < seconds < 8.5, seconds
    # Reloaded about once a target duration (1 s; 2 s as the segment muxer declares it): neither spinning nor asleep.
    assert 4 <= site.hits[f"files/{kind}/index.m3u8"] <= 20, site.hits[f"files/{kind}/index.m3u8"]


async def test_an_encoder_gone_without_endlist_is_a_stall(site: HlsSite, follower: HlsFollower, tmp_path: Path) -> None:
    encoder = LiveHls(tmp_path / "ts-aac", "ts-aac", seconds=60, segment_seconds=1.0)
    await encoder.start()
    got: list[bytes | NowPlaying] = []
    loop = asyncio.get_running_loop()
    killed = 0.0

    async def follow() -> None:
        nonlocal killed
        async for piece in follower.follow_live(site.url("files/ts-aac/index.m3u8")):
            got.append(piece)
            if len(got) == 2:
                await encoder.stop()  # killed: no ENDLIST, the playlist stays as it was
                killed = loop.time()

    try:
        with pytest.raises(UpstreamTimeout) as info:
            async with asyncio.timeout(30):
                await follow()
    finally:
        await encoder.stop()
    assert info.value.code == "hls_stalled"
    # Counted from the last new segment (just before the kill), declared at a reload after it.
    assert MIN_STALL_SECONDS - 1.5 < loop.time() - killed < MIN_STALL_SECONDS + 2.0


async def test_titles_in_extinf_become_now_playing(site: HlsSite, follower: HlsFollower, tmp_path: Path) -> None:
    """A radio's playlist names the song in each #EXTINF; the follower says when it changes."""
    write_vod(tmp_path / "vod", "ts-aac", 6.0, segment_seconds=1.0)
    segments = sorted(p.name for p in (tmp_path / "vod").glob("*.ts"))

    def playlist(first: int, count: int, *, endlist: bool = False) -> bytes:
        lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:1", f"#EXT-X-MEDIA-SEQUENCE:{first}"]
        for n in range(first, first + count):
            song = "Band - One" if n < 3 else "Band - Two"
            lines += [f'#EXTINF:1.0,title="{song.split(" - ")[1]}",artist="Band"', f"/files/vod/{segments[n]}"]
        return ("\n".join(lines + (["#EXT-X-ENDLIST"] if endlist else [])) + "\n").encode()

    ctype = "application/vnd.apple.mpegurl"
    site.documents["radio.m3u8"] = (playlist(0, 2), ctype)
    got: list[bytes | NowPlaying] = []

    async def advance() -> None:
        for first in range(1, 5):
            await asyncio.sleep(1.0)
            site.documents["radio.m3u8"] = (playlist(first, 2, endlist=first == 4), ctype)

    async with asyncio.timeout(20):
        mover = asyncio.create_task(advance())
        async for piece in follower.follow_live(site.url("radio.m3u8")):
            got.append(piece)
        await mover
    kinds = ["title:" + p.title if isinstance(p, NowPlaying) else "bytes" for p in got]
    assert kinds == ["title:Band - One", "bytes", "bytes", "title:Band - Two"] + ["bytes"] * 3
