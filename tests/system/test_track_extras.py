"""A track's extras (artwork, waveform, loudness, seeking inputs) through the public HTTP contract: real ``ztream serve`` processes, loopback upstreams.

Every input is made by the real ffmpeg here. The upstreams are aiohttp
servers on loopback: one answers Range requests (``FileResponse``), one
ignores them (200, the whole body), one is slow (so a transcode is still
running while the test looks at it).
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.support.audio import decoded_seconds
from transcode.artwork import jpeg_size, placeholder_artwork
from transcode.ffmpeg import find_ffmpeg

pytestmark = [pytest.mark.timeout(240)]

FF = find_ffmpeg("")
SECONDS = 8.0
TAGS = ["-metadata", "title=Night Drive", "-metadata", "artist=The Examples",
        "-metadata", "album=Examples Live", "-metadata", "track=3/10", "-metadata", "date=2021-05-01"]
# HTML, control characters, a bidi override, and 100 KB of it.
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>\x07\x1b[31m Evil\u202e ' + "A" * 100_000


def ff(*args: str) -> None:
    subprocess.run([FF, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args], check=True, timeout=120)


def tone(seconds: float = SECONDS) -> list[str]:
    expr = "0.4*sin(2*PI*440*t)*(0.6+0.4*sin(2*PI*0.7*t))|0.4*sin(2*PI*660*t)"
    return ["-f", "lavfi", "-i", f"aevalsrc={expr}:s=44100:d={seconds}"]


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("extras_http")
    ff("-f", "lavfi", "-i", "testsrc=s=800x800:d=1", "-frames:v", "1", str(d / "pic800.jpg"))
    ff("-f", "lavfi", "-i", "color=s=8000x8000:d=1", "-frames:v", "1", str(d / "pic8000.png"))
    level = 10 ** (-23 / 20)  # EBU Tech 3341 case 1: a 1 kHz stereo sine at -23 dBFS reads -23 LUFS
    files: dict[str, list[str]] = {
        "aac_moov_end.m4a": [*tone(), "-c:a", "aac", "-b:a", "128k", *TAGS],
        "alac_moov_end.m4a": [*tone(), "-c:a", "alac", *TAGS],
        "aac_faststart.m4a": [*tone(), "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart", *TAGS],
        "cover.mp3": [*tone(), "-i", str(d / "pic800.jpg"), "-map", "0", "-map", "1", "-c:a", "libmp3lame",
                      "-c:v", "copy", "-disposition:v", "attached_pic", "-id3v2_version", "3", *TAGS],
        "comments.flac": [*tone(), "-c:a", "flac", "-metadata", "TITLE=Flac Title", "-metadata",
                          "ARTIST=Flac Artist", "-metadata", "TRACKNUMBER=7", "-metadata", "DATE=1999"],
        "hostile.mp3": [*tone(), "-c:a", "libmp3lame", "-metadata", f"title={HOSTILE}",
                        "-metadata", "artist=<b>Bold</b> & Co\x01\x7f"],
        "hugeart.mp3": [*tone(), "-i", str(d / "pic8000.png"), "-map", "0", "-map", "1", "-c:a", "libmp3lame",
                        "-c:v", "png", "-disposition:v", "attached_pic", "-id3v2_version", "3"],
        "envelope.wav": ["-f", "lavfi", "-i",
                         f"aevalsrc='if(lt(t,30),0,{level}*sin(2*PI*1000*t))|if(lt(t,30),0,{level}*sin(2*PI*1000*t))'"
                         ":s=48000:d=60", "-c:a", "pcm_s16le"],
    }
    out = {}
    for name, args in files.items():
        ff(*args, str(d / name))
        out[name] = d / name
    return out


@pytest.fixture
async def upstream(media: dict[str, Path]) -> AsyncIterator[str]:
    async def ranged(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(media[request.match_info["name"]])

    async def plain(request: web.Request) -> web.StreamResponse:
        data = media[request.match_info["name"]].read_bytes()
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await response.prepare(request)
        for i in range(0, len(data), 32768):
            await response.write(data[i : i + 32768])
        await response.write_eof()
        return response

    async def slow(request: web.Request) -> web.StreamResponse:
        data = media[request.match_info["name"]].read_bytes()
        response = web.StreamResponse(headers={"Content-Type": "audio/wav"})
        await response.prepare(request)
        for i in range(0, len(data), 192_000):  # 1 s of 48 kHz stereo s16 per 0.1 s: 10x real time
            await response.write(data[i : i + 192_000])
            await asyncio.sleep(0.1)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/ranged/{name}", ranged)
    app.router.add_get("/plain/{name}", plain)
    app.router.add_get("/slow/{name}", slow)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        await server.close()


@pytest.fixture
async def gw(gateway_factory: Any, upstream: str, tmp_path: Path, media: dict[str, Path]) -> Any:
    library = tmp_path / "library"
    (library / "album").mkdir(parents=True)
    (library / "album" / "song.flac").write_bytes(media["comments.flac"].read_bytes())
    ff("-f", "lavfi", "-i", "testsrc=s=300x200:d=1", "-frames:v", "1", str(library / "album" / "cover.jpg"))
    (library / "moov_end.m4a").write_bytes(media["alac_moov_end.m4a"].read_bytes())
    port = upstream.rsplit(":", 1)[1]
    return await asyncio.to_thread(
        gateway_factory, library, **{"sources.url": {"allow_hosts": [f"127.0.0.1:{port}"]}}
    )


async def register(client: httpx.AsyncClient, gw: Any, url: str) -> dict[str, Any]:
    r = await client.post(f"{gw.url}/v1/tracks", json={"url": url})
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


async def complete_manifest(client: httpx.AsyncClient, gw: Any, track_id: str) -> dict[str, Any]:
    for _ in range(600):
        r = await client.get(f"{gw.url}/v1/tracks/{track_id}/manifest")
        assert r.status_code == 200, r.text
        if r.json()["complete"]:
            return dict(r.json())
        await asyncio.sleep(0.1)
    raise AssertionError("the transcode did not complete")


async def webm_of(client: httpx.AsyncClient, gw: Any, track_id: str) -> bytes:
    manifest = await complete_manifest(client, gw, track_id)
    parts = [(await client.get(f"{gw.url}/v1/tracks/{track_id}/init")).content]
    for c in manifest["chunks"]:
        parts.append((await client.get(f"{gw.url}/v1/tracks/{track_id}/chunks/{c['index']}")).content)
    return b"".join(parts)


def metric(text: str, name: str, labels: str = "") -> float:
    m = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


async def library_track(client: httpx.AsyncClient, gw: Any, name: str) -> dict[str, Any]:
    tracks = (await client.get(f"{gw.url}/v1/tracks")).json()["tracks"]
    found = [t for t in tracks if t["source"] == "local" and t["title"] == name]
    assert len(found) == 1, tracks
    return dict(found[0])


async def test_moov_at_end_plays_in_full_via_range_spool_and_file(gw: Any, upstream: str) -> None:
    async with httpx.AsyncClient(timeout=60) as client:
        for kind in ("ranged", "plain"):
            for name in ("aac_moov_end.m4a", "alac_moov_end.m4a"):
                track = await register(client, gw, f"{upstream}/{kind}/{name}")
                webm = await webm_of(client, gw, track["id"])
                assert abs(decoded_seconds(webm) - SECONDS) <= 0.3, (kind, name)
        local = await library_track(client, gw, "moov end")
        assert abs(decoded_seconds(await webm_of(client, gw, local["id"])) - SECONDS) <= 0.3
        text = (await client.get(f"{gw.url}/metrics")).text
        assert metric(text, "ztream_transcode_inputs_total", '{mode="range"}') == 2
        assert metric(text, "ztream_transcode_inputs_total", '{mode="spool"}') == 2
        assert metric(text, "ztream_transcode_inputs_total", '{mode="file"}') == 1
        assert metric(text, "ztream_spooled_bytes_total") > 0


async def test_tags_fill_track_embed_and_oembed(gw: Any, upstream: str) -> None:
    async with httpx.AsyncClient(timeout=60) as client:
        for name in ("cover.mp3", "aac_faststart.m4a", "aac_moov_end.m4a"):
            track = await register(client, gw, f"{upstream}/ranged/{name}")
            assert track["title"] == name.rsplit(".", 1)[0].replace("_", " ")  # the file name, until read
            manifest = await complete_manifest(client, gw, track["id"])
            got = (await client.get(f"{gw.url}/v1/tracks/{track['id']}")).json()
            assert (got["title"], got["artist"], got["album"], got["track_number"], got["year"]) == (
                "Night Drive", "The Examples", "Examples Live", 3, 2021), name
            assert got["artwork_url"] == f"{gw.url}/v1/tracks/{track['id']}/artwork"
            assert got["waveform_url"] == f"{gw.url}/v1/tracks/{track['id']}/waveform"
            assert got["duration"] == manifest["duration"]
        flac = await register(client, gw, f"{upstream}/ranged/comments.flac")
        await complete_manifest(client, gw, flac["id"])
        got = (await client.get(f"{gw.url}/v1/tracks/{flac['id']}")).json()
        assert (got["title"], got["artist"], got["track_number"], got["year"]) == ("Flac Title", "Flac Artist", 7, 1999)
        assert "album" not in got

        evil = await register(client, gw, f"{upstream}/ranged/hostile.mp3")
        await complete_manifest(client, gw, evil["id"])
        got = (await client.get(f"{gw.url}/v1/tracks/{evil['id']}")).json()
        title, artist = got["title"], got["artist"]
        assert title.startswith('<script>alert("x")</script>') and len(title) <= 200 and title.endswith("\u2026")
        assert not any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 or c == "\u202e" for c in title + artist)
        assert artist == "<b>Bold</b> & Co"
        page = (await client.get(f"{gw.url}/embed/{evil['id']}")).text
        assert "<script>alert" not in page and "<img src=x" not in page and "<b>Bold" not in page
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page and "&lt;b&gt;Bold&lt;/b&gt; &amp; Co" in page
        assert "A" * 300 not in page
        oembed = (await client.get(f"{gw.url}/oembed", params={"url": f"{gw.url}/embed/{evil['id']}"})).json()
        assert oembed["title"] == title and oembed["author_name"] == artist
        assert "<script>" not in oembed["html"] and "&lt;script&gt;" in oembed["html"]
        assert oembed["thumbnail_url"] == f"{gw.url}/v1/tracks/{evil['id']}/artwork"
        assert (oembed["thumbnail_width"], oembed["thumbnail_height"]) == (500, 500)


async def test_artwork_scaled_placeholder_refused_and_beside_library_file(gw: Any, upstream: str) -> None:
    async with httpx.AsyncClient(timeout=60) as client:
        cover = await register(client, gw, f"{upstream}/ranged/cover.mp3")
        r = await client.get(f"{gw.url}/v1/tracks/{cover['id']}/artwork", headers={"Origin": "https://host.example"})
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        assert jpeg_size(r.content) == (500, 500)  # 800x800 scaled down
        assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert r.headers["access-control-allow-origin"] in ("*", "https://host.example")
        etag = r.headers["etag"]
        again = await client.get(f"{gw.url}/v1/tracks/{cover['id']}/artwork", headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        placeholders = []
        for name in ("comments.flac", "hugeart.mp3"):  # none; refused (64 megapixels), not decoded
            track = await register(client, gw, f"{upstream}/plain/{name}")
            r = await client.get(f"{gw.url}/v1/tracks/{track['id']}/artwork")
            assert r.status_code == 200 and jpeg_size(r.content) == (500, 500), name
            assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
            assert r.content != (await client.get(f"{gw.url}/v1/tracks/{cover['id']}/artwork")).content
            # The placeholder is the track's own gradient, from its tags as they are once transcoded.
            got = (await client.get(f"{gw.url}/v1/tracks/{track['id']}")).json()
            assert r.content == placeholder_artwork(FF, got["title"], got.get("artist")), name
            placeholders.append(r.content)
        assert placeholders[0] != placeholders[1]
        song = await library_track(client, gw, "song")
        r = await client.get(f"{gw.url}/v1/tracks/{song['id']}/artwork")
        assert jpeg_size(r.content) == (300, 200)  # cover.jpg beside the file, never scaled up
        got = (await client.get(f"{gw.url}/v1/tracks/{song['id']}")).json()
        assert (got["artwork_width"], got["artwork_height"]) == (300, 200)
        assert got["title"] == "Flac Title"  # the tags win over the file name for library files too
        missing = await client.get(f"{gw.url}/v1/tracks/ffffffffffffffff/artwork")
        assert missing.status_code == 404 and missing.json()["error"] == "track_not_found"


async def test_waveform_while_running_then_complete_and_loudness(gw: Any, upstream: str) -> None:
    async with httpx.AsyncClient(timeout=60) as client:
        track = await register(client, gw, f"{upstream}/slow/envelope.wav")
        r = await client.get(f"{gw.url}/v1/tracks/{track['id']}/waveform")
        assert r.status_code == 200, r.text
        live = r.json()
        assert live["version"] == 1 and live["complete"] is False and r.headers["cache-control"] == "no-cache"
        assert "etag" not in r.headers and live["length"] == len(live["peaks"])
        assert 0 < live["duration"] < 50
        manifest = await complete_manifest(client, gw, track["id"])
        assert manifest["loudness_lufs"] == pytest.approx(-23.0, abs=0.5)
        assert manifest["true_peak_db"] == pytest.approx(-23.0, abs=0.5)
        r = await client.get(f"{gw.url}/v1/tracks/{track['id']}/waveform")
        done = r.json()
        assert done["complete"] is True and done["length"] == 1800 == len(done["peaks"])
        assert done["duration"] == pytest.approx(60.0, abs=0.1)
        assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert (await client.get(f"{gw.url}/v1/tracks/{track['id']}/waveform",
                                 headers={"If-None-Match": r.headers["etag"]})).status_code == 304
        peaks = done["peaks"]
        level = 10 ** (-23 / 20)
        assert max(peaks[: 1800 * 29 // 60]) <= 0.001  # silence
        assert all(abs(p - level) <= 0.01 for p in peaks[1800 * 31 // 60 :])  # the tone's envelope
        # The live answer was a prefix of the final one.
        n = live["length"]
        assert live["peaks"][: n - 1] == pytest.approx(peaks[: n - 1], abs=0.002) or n > 1800 // 2


async def transcoded_extras(client: httpx.AsyncClient, gw: Any, url: str) -> tuple[str, httpx.Response, httpx.Response]:
    """Register ``url``, wait for its transcode: (track id, its artwork answer, its waveform answer)."""
    track = await register(client, gw, url)
    await complete_manifest(client, gw, track["id"])
    art = await client.get(f"{gw.url}/v1/tracks/{track['id']}/artwork")
    wave = await client.get(f"{gw.url}/v1/tracks/{track['id']}/waveform")
    return track["id"], art, wave


async def test_restart_keeps_artwork_and_waveform(gw: Any, upstream: str) -> None:
    async with httpx.AsyncClient(timeout=60) as client:
        tid, art, wave = await transcoded_extras(client, gw, f"{upstream}/ranged/cover.mp3")
        await asyncio.to_thread(gw.stop)
        await asyncio.to_thread(gw.start)
        art2 = await client.get(f"{gw.url}/v1/tracks/{tid}/artwork")
        wave2 = await client.get(f"{gw.url}/v1/tracks/{tid}/waveform")
        assert art2.content == art.content and art2.headers["etag"] == art.headers["etag"]
        assert wave2.json() == wave.json() and wave2.json()["complete"] is True
        got = (await client.get(f"{gw.url}/v1/tracks/{tid}")).json()
        assert got["title"] == "Night Drive"
        text = (await client.get(f"{gw.url}/metrics")).text
        assert metric(text, "ztream_transcodes_total", '{result="ok"}') == 0  # answered from the store
        assert json.loads(wave2.content)["peaks"]


async def test_evicted_artwork_and_waveform_are_made_again(gw: Any, upstream: str) -> None:
    """The extras store is bounded: a record gone from it (here: all of them) comes back through a new transcode."""
    import shutil

    async with httpx.AsyncClient(timeout=60) as client:
        tid, art, wave = await transcoded_extras(client, gw, f"{upstream}/ranged/cover.mp3")
        await asyncio.to_thread(gw.stop)
        shutil.rmtree(Path(gw.config["cache"]["dir"]).expanduser() / "extras")
        await asyncio.to_thread(gw.start)
        wave2 = await client.get(f"{gw.url}/v1/tracks/{tid}/waveform")
        for _ in range(100):  # the first answer may be the running transcode's
            if wave2.json()["complete"]:
                break
            await asyncio.sleep(0.1)
            wave2 = await client.get(f"{gw.url}/v1/tracks/{tid}/waveform")
        art2 = await client.get(f"{gw.url}/v1/tracks/{tid}/artwork")
        assert art2.status_code == 200 and art2.content == art.content and art2.headers["etag"] == art.headers["etag"]
        assert wave2.json() == wave.json()
        text = (await client.get(f"{gw.url}/metrics")).text
        assert metric(text, "ztream_transcodes_total", '{result="ok"}') == 1  # made again, once
