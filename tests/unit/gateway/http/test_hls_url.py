"""HLS playlists and station files by URL: ``POST /v1/tracks`` with ffmpeg-written HLS on loopback.

Every stream here is written by ffmpeg's own muxers (MPEG-TS with AAC or
MP3, fMP4, packed ADTS and MP3 segments), served by a plain HTTP server, and
played through the real gateway and ffmpeg; what comes out is decoded by an
independent ffmpeg and measured.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.media import CATALOG
from gateway.media.catalog import track_id_for
from tests.support.audio import decoded_seconds, make_audio
from tests.support.gateway import fetch_all, post_url
from tests.support.hls import VOD_KINDS, HlsSite, LiveHls, write_vod

SECONDS = 7.0


@pytest.fixture(scope="module")
def hls_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hls")
    for kind in VOD_KINDS:
        write_vod(root / kind, kind, SECONDS, master=kind == "ts-aac")
    make_audio(root / "song.mp3", 5, fmt="mp3")
    return root


@pytest.fixture
async def site(hls_root: Path) -> AsyncIterator[HlsSite]:
    s = await HlsSite(hls_root).start()
    yield s
    await s.close()


@pytest.fixture
async def gw(make_gateway: Any, site: HlsSite) -> Any:
    return await make_gateway(**{"sources.url": {"allow_hosts": [f"127.0.0.1:{site.port}"]}})


async def play(gw: Any, url: str) -> tuple[dict[str, Any], float]:
    r = await post_url(gw, url)
    assert r.status == 201, await r.text()
    track = await r.json()
    manifest, init, chunks = await fetch_all(gw, track["id"])
    assert manifest["complete"] is True
    return track, decoded_seconds(init + b"".join(chunks))


@pytest.mark.parametrize("kind", VOD_KINDS)
async def test_vod_hls_plays_whole(gw: Any, site: HlsSite, kind: str) -> None:
    track, seconds = await play(gw, site.url(f"files/{kind}/index.m3u8"))
    assert track["source"] == "url" and track["title"] == kind  # "index" says nothing: the folder's name
    assert track["id"] == track_id_for("url", site.url(f"files/{kind}/index.m3u8"))
    assert abs(seconds - SECONDS) < 0.3, seconds
    segments = [n for n in site.hits if n.startswith(f"files/{kind}/") and not n.endswith(".m3u8")]
    assert segments and all(site.hits[n] == 1 for n in segments)  # each segment fetched once
    # Fetched at registration (to refuse a bad one before any track exists) and at the transcode.
    assert site.hits[f"files/{kind}/index.m3u8"] == 2


async def test_master_playlist_plays_its_variant(gw: Any, site: HlsSite) -> None:
    _, seconds = await play(gw, site.url("files/ts-aac/master.m3u8"))
    assert abs(seconds - SECONDS) < 0.3


async def test_hls_content_type_on_a_path_that_does_not_say_so(gw: Any, site: HlsSite, hls_root: Path) -> None:
    """Registered as a plain URL (nothing fetched), followed as HLS once the answer says it is."""
    site.documents["files/ts-mp3/stream"] = ((hls_root / "ts-mp3/index.m3u8").read_bytes(),
                                             "application/vnd.apple.mpegurl")
    _, seconds = await play(gw, site.url("files/ts-mp3/stream"))
    assert abs(seconds - SECONDS) < 0.3


@pytest.mark.parametrize(
    ("text", "status", "code"),
    [
        ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-KEY:METHOD=AES-128,URI=\"k\"\n#EXTINF:2,\na.ts\n#EXT-X-ENDLIST\n",
         415, "hls_encrypted"),
        ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-ENDLIST\n", 415, "hls_empty"),
        ("#EXTM3U\n#EXT-X-TARGETDURATION:2\nno-extinf.ts\n#EXT-X-ENDLIST\n", 502, "hls_bad_playlist"),
        ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n", 502, "hls_bad_playlist"),
    ],
)
async def test_a_playlist_that_cannot_play_is_refused_at_registration(
    gw: Any, site: HlsSite, text: str, status: int, code: str
) -> None:
    site.documents["bad/index.m3u8"] = (text.encode(), "application/vnd.apple.mpegurl")
    url = site.url("bad/index.m3u8")
    r = await post_url(gw, url)
    assert r.status == status and (await r.json())["error"] == code
    assert gw.app[CATALOG].get(track_id_for("url", url)) is None  # nothing half-done is kept


# -- station files (.m3u, .pls) -------------------------------------------------------


@pytest.mark.parametrize("ctype", ["audio/mpegurl", "audio/x-mpegurl", "application/x-mpegurl", "text/plain"])
async def test_m3u_station_file_registers_its_first_entry(gw: Any, site: HlsSite, ctype: str) -> None:
    """``audio/mpegurl`` (Python's and many servers' type for .m3u) was refused as audio/mpeg."""
    song = site.url("files/song.mp3")
    site.documents["radio.m3u"] = (f"#EXTM3U\n#EXTINF:-1,Radio One\n{song}\n{site.url('files/other.mp3')}\n".encode(),
                                   ctype)
    r = await post_url(gw, site.url("radio.m3u"))
    assert r.status == 201, await r.text()
    track = await r.json()
    assert track["id"] == track_id_for("url", song) and track["title"] == "Radio One"
    # The same stream posted directly is the same track.
    again = await post_url(gw, song)
    assert again.status == 200 and (await again.json())["id"] == track["id"]
    _, init, chunks = await fetch_all(gw, track["id"])
    assert abs(decoded_seconds(init + b"".join(chunks)) - 5.0) < 0.3


async def test_pls_station_file_skips_refused_entries(gw: Any, site: HlsSite) -> None:
    forbidden, song = "http://127.0.0.2:9/x.mp3", site.url("files/song.mp3")
    site.documents["radio.pls"] = (
        f"[playlist]\nFile1={forbidden}\nTitle1=Elsewhere\nFile2={song}\nTitle2=Here\nNumberOfEntries=2\n".encode(),
        "audio/x-scpls")
    r = await post_url(gw, site.url("radio.pls"))
    assert r.status == 201
    track = await r.json()
    assert track["id"] == track_id_for("url", song) and track["title"] == "Here"


async def test_station_file_naming_an_icecast_stream_registers_it_live(gw: Any, site: HlsSite) -> None:
    """A station file's entry is registered as itself: an answer with icy-* headers is a live station."""
    site.documents["mount"] = (b"\xff\xfb" * 100, "audio/mpeg")
    site.headers["mount"] = {"icy-name": "Radio Loopback", "icy-br": "128"}
    site.documents["station.pls"] = (f"[playlist]\nFile1={site.url('mount')}\nTitle1=(#1 - 3/100) x\n".encode(),
                                     "audio/x-scpls")
    r = await post_url(gw, site.url("station.pls"))
    assert r.status == 201
    track = await r.json()
    assert track["live"] is True and track["title"] == "Radio Loopback"  # the stream's name over the file's
    assert track["id"] == track_id_for("url", site.url("mount"))


async def test_station_file_naming_an_hls_stream(gw: Any, site: HlsSite) -> None:
    hls_url = site.url("files/fmp4-aac/index.m3u8")
    site.documents["hls.m3u"] = (f"{hls_url}\n".encode(), "audio/x-mpegurl")
    r = await post_url(gw, site.url("hls.m3u"))
    assert r.status == 201
    track = await r.json()
    assert track["id"] == track_id_for("url", hls_url)
    _, init, chunks = await fetch_all(gw, track["id"])
    assert abs(decoded_seconds(init + b"".join(chunks)) - SECONDS) < 0.3


async def test_an_m3u_holding_hls_is_that_stream(gw: Any, site: HlsSite, hls_root: Path) -> None:
    text = (hls_root / "ts-aac/index.m3u8").read_text().replace("index", "files/ts-aac/index")
    site.documents["stream.m3u"] = (text.encode(), "audio/x-mpegurl")
    _, seconds = await play(gw, site.url("stream.m3u"))
    assert abs(seconds - SECONDS) < 0.3


@pytest.mark.parametrize(
    ("body", "ctype", "status", "code"),
    [
        ("<html>a page</html>", "text/html", 400, "playlist_bad"),
        ("ID3 not a list", "audio/mpeg", 400, "playlist_bad"),
        ("#EXTM3U\nfile:///etc/passwd\n", "audio/x-mpegurl", 400, "playlist_bad"),
        ("http://127.0.0.2:9/x.mp3\n", "audio/x-mpegurl", 403, "host_not_allowed"),  # the entry's own refusal
        (None, None, 404, "upstream_not_found"),
    ],
)
async def test_station_files_that_cannot_play(
    gw: Any, site: HlsSite, body: str | None, ctype: str | None, status: int, code: str
) -> None:
    if body is not None and ctype is not None:
        site.documents["x.m3u"] = (body.encode(), ctype)
    r = await post_url(gw, site.url("x.m3u"))
    assert r.status == status and (await r.json())["error"] == code


async def test_player_takes_an_m3u_served_as_audio_mpegurl(gw: Any, site: HlsSite) -> None:
    song = site.url("files/song.mp3")
    site.documents["mix.m3u"] = (f"#EXTM3U\n#EXTINF:5,Song\n{song}\n".encode(), "audio/mpegurl")
    r = await gw.get("/player/", params={"url": site.url("mix.m3u"), "format": "json"})
    assert r.status == 200, await r.text()
    body = await r.json()
    assert body["kind"] == "playlist" and [t["id"] for t in body["tracks"]] == [track_id_for("url", song)]


# -- live HLS ---------------------------------------------------------------------------


@pytest.mark.parametrize("segments", [1, 0])
async def test_a_live_playlist_registers_a_live_track(gw: Any, site: HlsSite, segments: int) -> None:
    """No #EXT-X-ENDLIST: a live track (with no segment yet: a station about to start)."""
    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:2", "#EXT-X-MEDIA-SEQUENCE:40"]
    lines += ["#EXTINF:2.0,", "/files/ts-aac/index0.ts"] * segments
    site.documents["radio/index.m3u8"] = (("\n".join(lines) + "\n").encode(), "application/vnd.apple.mpegurl")
    r = await post_url(gw, site.url("radio/index.m3u8"))
    assert r.status == 201
    track = await r.json()
    assert track["live"] is True and track["title"] == "radio" and track["duration"] is None
    vod = await post_url(gw, site.url("files/ts-aac/index.m3u8"))
    assert "live" not in await vod.json()


async def closes_within(gw: Any, seconds: float) -> None:
    """Close the gateway; if it hangs, fail with every task's stack (an ingest that ignored its cancel)."""
    try:
        async with asyncio.timeout(seconds):
            await gw.close()
    except TimeoutError:
        stacks = io.StringIO()
        for task in asyncio.all_tasks():
            print(task, file=stacks)
            task.print_stack(limit=40, file=stacks)
        raise AssertionError(f"the gateway did not close within {seconds} s:\n{stacks.getvalue()}") from None


@pytest.mark.parametrize("kind", ["ts-aac", "fmp4-aac"])
async def test_live_hls_is_served_at_its_edge(make_gateway: Any, tmp_path: Path, kind: str) -> None:
    """ffmpeg writes live HLS in real time; the gateway ingests it into its live window, titles and all."""
    site = await HlsSite(tmp_path / "site").start()
    encoder = LiveHls(tmp_path / "site" / kind, kind, seconds=40, segment_seconds=1.0)
    gw: Any = None
    try:
        await encoder.start()
        await asyncio.sleep(6.0)  # the playlist's window is full (5 segments): a listener joins at its edge
        gw = await make_gateway(**{"sources.url": {"allow_hosts": [f"127.0.0.1:{site.port}"]}})
        listed = [int(n) for n in re.findall(r"^index(\d+)\.\w+$", encoder.playlist.read_text(), re.M)]
        r = await post_url(gw, site.url(f"files/{kind}/index.m3u8"))
        assert r.status == 201
        track = await r.json()
        assert track["live"] is True
        manifest = await (await gw.get(f"/v1/tracks/{track['id']}/manifest")).json()
        assert manifest["live"] is True and manifest["complete"] is False and manifest["state"] == "live"
        first_edge = manifest["edge"]
        await asyncio.sleep(4.0)
        manifest = await (await gw.get(f"/v1/tracks/{track['id']}/manifest")).json()
        chunks = manifest["chunks"]
        assert manifest["edge"] >= first_edge + 2  # the ingest follows the playlist as it grows
        assert [c["index"] for c in chunks] == list(range(chunks[0]["index"], manifest["edge"] + 1))
        init = await (await gw.get(f"/v1/tracks/{track['id']}/init")).read()
        data = [await (await gw.get(f"/v1/tracks/{track['id']}/chunks/{c['index']}")).read() for c in chunks]
        heard = decoded_seconds(init + b"".join(data))
        assert abs(heard - sum(c["duration"] for c in chunks)) < 0.2
        # Joined at the edge: the first segment fetched was the newest listed when the track was posted
        # (or one after it), not the playlist's oldest, 4 s behind; then every segment once, in order.
        fetched = sorted(int(n[len(f"files/{kind}/index"):].split(".")[0]) for n in site.hits
                         if re.fullmatch(rf"files/{kind}/index\d+\.\w+", n))
        assert len(listed) == 5 and listed[-1] <= fetched[0] <= listed[-1] + 1, (listed, fetched)
        assert fetched == list(range(fetched[0], fetched[-1] + 1))
        assert all(site.hits[n] == 1 for n in site.hits if not n.endswith(".m3u8"))
        assert 3.0 <= heard <= 12.0, heard  # ffmpeg probes a few seconds of MPEG-TS before its first output
    finally:
        if gw is not None:
            await closes_within(gw, 30.0)  # the ingest ends before its upstream does
        await encoder.stop()
        await site.close()


async def test_live_hls_titles_reach_the_manifest(gw: Any, site: HlsSite, hls_root: Path) -> None:
    """The #EXTINF title of the segment being ingested becomes the manifest's now-playing title."""
    if not (hls_root / "long").exists():
        write_vod(hls_root / "long", "ts-aac", 40.0)  # 2 s segments of one stream
    names = sorted((p.name for p in (hls_root / "long").glob("*.ts")), key=lambda n: int(n[5:-3]))
    ctype = "application/vnd.apple.mpegurl"

    def playlist(newest: int) -> bytes:
        first = max(0, newest - 2)
        lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:2", f"#EXT-X-MEDIA-SEQUENCE:{first}"]
        for n in range(first, newest + 1):
            lines += [f'#EXTINF:2.0,title="Song {n // 3}",artist="Band"', f"/files/long/{names[n]}"]
        return ("\n".join(lines) + "\n").encode()

    async def on_air() -> None:  # a segment every 2 s, a new song every third
        for newest in range(1, len(names)):
            site.documents["station/live.m3u8"] = (playlist(newest), ctype)
            await asyncio.sleep(2.0)

    site.documents["station/live.m3u8"] = (playlist(0), ctype)
    track = await (await post_url(gw, site.url("station/live.m3u8"))).json()
    assert track["live"] is True and track["title"] == "station"
    mover = asyncio.create_task(on_air())
    try:
        titles: list[str] = []
        async with asyncio.timeout(40):
            while len(titles) < 2:
                manifest = await (await gw.get(f"/v1/tracks/{track['id']}/manifest")).json()
                if manifest.get("title") and manifest["title"] not in titles:
                    titles.append(manifest["title"])
                await asyncio.sleep(0.2)
    finally:
        mover.cancel()
    first_song = int(titles[0].removeprefix("Band - Song "))
    assert titles == [f"Band - Song {first_song}", f"Band - Song {first_song + 1}"]
