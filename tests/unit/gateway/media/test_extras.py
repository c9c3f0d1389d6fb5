"""Issue 13 at the transcode level: seeking containers, tags, artwork, waveform, loudness.

Every input is made by the real ffmpeg here; every transcode is the real
runner; the Range/no-Range upstreams are aiohttp servers on loopback, read
with httpx.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.support.audio import decoded_seconds
from transcode.analysis import (
    MediaAnalysis,
    Waveform,
    clean_text,
    parse_ffmetadata,
    parse_loudness,
)
from transcode.artwork import (
    ArtworkRefused,
    extract_artwork,
    jpeg_size,
    placeholder_artwork,
)
from transcode.ebml import Cluster, InitSegment
from transcode.ffmpeg import find_ffmpeg, make_rendition
from transcode.probe import ProbeError, faststart_moov, find_box, probe_container
from transcode.runner import transcode
from transcode.seekable import SpoolTooLarge, prepare_input, spool

FF = find_ffmpeg("")
SECONDS = 8.0


def ff(*args: str) -> None:
    subprocess.run([FF, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args], check=True, timeout=120)


def tone(seconds: float = SECONDS) -> list[str]:
    expr = "0.4*sin(2*PI*440*t)*(0.6+0.4*sin(2*PI*0.7*t))|0.4*sin(2*PI*660*t)"
    return ["-f", "lavfi", "-i", f"aevalsrc={expr}:s=44100:d={seconds}"]


def cover(path: Path, size: int) -> Path:
    ff("-f", "lavfi", "-i", f"testsrc=s={size}x{size}:d=1", "-frames:v", "1", str(path))
    return path


HOSTILE = "<script>alert(1)</script>\x07\x1b[31m Night\u202e Drive\n\ttwo"


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("media13")
    pic = cover(d / "cover.jpg", 800)
    tags = ["-metadata", "title=Night Drive", "-metadata", "artist=The Examples",
            "-metadata", "album=Examples Live", "-metadata", "track=3/10", "-metadata", "date=2021-05-01"]
    files = {
        "aac_moov_end.m4a": [*tone(), "-c:a", "aac", "-b:a", "128k", *tags],
        "alac_moov_end.m4a": [*tone(), "-c:a", "alac", *tags],
        "aac_faststart.m4a": [*tone(), "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart", *tags],
        "cover.mp3": [*tone(), "-i", str(pic), "-map", "0", "-map", "1", "-c:a", "libmp3lame", "-c:v", "copy",
                      "-disposition:v", "attached_pic", "-id3v2_version", "3", *tags],
        "comments.flac": [*tone(), "-c:a", "flac", "-metadata", "TITLE=Flac Title", "-metadata", "ARTIST=Flac Artist",
                          "-metadata", "TRACKNUMBER=7", "-metadata", "DATE=1999"],
        "vorbis.ogg": [*tone(), "-c:a", "libvorbis", "-metadata", "title=Ogg Title", "-metadata", "artist=Ogg Artist"],
        "opus.opus": [*tone(), "-c:a", "libopus", "-metadata", "title=Opus Title"],
    }
    out = {}
    for name, args in files.items():
        ff(*args, str(d / name))
        out[name] = d / name
    return out


async def chunks_of(data: bytes, piece: int = 16384) -> AsyncIterator[bytes]:
    for i in range(0, len(data), piece):
        yield data[i : i + piece]
        await asyncio.sleep(0)


@pytest.fixture(scope="module")
def plain() -> Any:
    return make_rendition(FF, bitrate=96000, chunk_seconds=2.0)


@pytest.fixture(scope="module")
def extras() -> Any:
    return make_rendition(FF, bitrate=96000, chunk_seconds=2.0, extras=True)


async def run(rendition: Any, source: AsyncIterator[bytes] | None = None, **kw: Any) -> dict[str, Any]:
    """Transcode; the output, chunk hashes, and when the first and last events came."""
    t0 = time.monotonic()
    init = b""
    clusters: list[bytes] = []
    first = None
    async for event in transcode(rendition, source, timeout=120, **kw):
        if isinstance(event, InitSegment):
            init = event.data
        else:
            assert isinstance(event, Cluster)
            if first is None:
                first = time.monotonic() - t0
            clusters.append(event.data)
    return {
        "webm": init + b"".join(clusters),
        "hashes": [hashlib.sha256(c).hexdigest() for c in [init, *clusters]],
        "first": first,
        "total": time.monotonic() - t0,
        "count": len(clusters),
    }


# -- loopback upstreams: one with Range (aiohttp's FileResponse), one without ------------


@pytest.fixture
async def upstreams(media: dict[str, Path]) -> AsyncIterator[dict[str, str]]:
    async def ranged(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(media[request.match_info["name"]])

    async def unranged(request: web.Request) -> web.StreamResponse:
        # An upstream without ranges: it ignores Range and sends everything, with 200.
        data = media[request.match_info["name"]].read_bytes()
        response = web.StreamResponse(headers={"Content-Type": "audio/mp4"})
        await response.prepare(request)
        for i in range(0, len(data), 32768):
            await response.write(data[i : i + 32768])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/ranged/{name}", ranged)
    app.router.add_get("/plain/{name}", unranged)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield {"ranged": f"http://127.0.0.1:{server.port}/ranged/", "plain": f"http://127.0.0.1:{server.port}/plain/"}
    finally:
        await server.close()


async def http_body(client: httpx.AsyncClient, url: str, box: dict[str, Any]) -> AsyncIterator[bytes]:
    async with client.stream("GET", url) as response:
        response.raise_for_status()
        box["accept_ranges"] = response.headers.get("accept-ranges") == "bytes"
        async for piece in response.aiter_bytes():
            yield piece


def tail_fetcher(client: httpx.AsyncClient, url: str, calls: list[int]) -> Callable[[int], Any]:
    async def fetch_tail(offset: int) -> bytes:
        calls.append(offset)
        response = await client.get(url, headers={"Range": f"bytes={offset}-"})
        if response.status_code != 206:
            raise ValueError(f"no range: {response.status_code}")
        return response.content

    return fetch_tail


# -- 1. containers that need seeking -------------------------------------------------------


def test_probe_sees_moov_after_mdat(media: dict[str, Path]) -> None:
    for name in ("aac_moov_end.m4a", "alac_moov_end.m4a"):
        data = media[name].read_bytes()
        probe = probe_container(data[:4096])
        assert probe.isobmff and probe.needs_seek and probe.decided, name
        assert probe.moov_offset is not None and data[probe.moov_offset + 4 : probe.moov_offset + 8] in (b"moov", b"free")
        assert probe.prefix_end == int.from_bytes(data[:4], "big")
    fast = probe_container(media["aac_faststart.m4a"].read_bytes()[:4096])
    assert fast.isobmff and not fast.needs_seek and fast.decided
    for name in ("cover.mp3", "comments.flac", "vorbis.ogg"):
        assert not probe_container(media[name].read_bytes()[:4096]).isobmff, name
    # Too few bytes to decide, and garbage, never crash.
    assert not probe_container(media["aac_moov_end.m4a"].read_bytes()[:30]).decided
    assert not probe_container(os.urandom(4096)).needs_seek
    assert not probe_container(b"").isobmff


def test_probe_box_sizes_largesize_and_to_end() -> None:
    ftyp = (16).to_bytes(4, "big") + b"ftypisom" + b"\0\0\0\0"
    large = (1).to_bytes(4, "big") + b"mdat" + (16 + 1000).to_bytes(8, "big")
    probe = probe_container(ftyp + large + b"\0" * 100)
    assert probe.needs_seek and probe.moov_offset == 16 + 16 + 1000
    to_end = (0).to_bytes(4, "big") + b"mdat"
    probe = probe_container(ftyp + to_end + b"\0" * 100)
    assert probe.needs_seek and probe.moov_offset is None
    bad = (3).to_bytes(4, "big") + b"mdat"
    assert not probe_container(ftyp + bad).needs_seek  # malformed: ffmpeg judges
    with pytest.raises(ProbeError):
        faststart_moov(ftyp, 10)


def test_faststart_moov_matches_ffmpegs_own_faststart(media: dict[str, Path], tmp_path: Path) -> None:
    """Patched by us, the moov-at-end file plays from a pipe and decodes to the same PCM."""
    data = media["aac_moov_end.m4a"].read_bytes()
    probe = probe_container(data)
    assert probe.moov_offset is not None
    start, end = find_box(data[probe.moov_offset :], b"moov") or (0, 0)
    moov = data[probe.moov_offset + start : probe.moov_offset + end]
    moved = data[: probe.prefix_end] + faststart_moov(moov, len(moov)) + data[probe.prefix_end : probe.moov_offset]

    def pcm(blob: bytes) -> bytes:
        return subprocess.run([FF, "-hide_banner", "-loglevel", "error", "-protocol_whitelist", "pipe", "-i",
                               "pipe:0", "-f", "s16le", "pipe:1"], input=blob, capture_output=True, check=True).stdout

    reference = subprocess.run([FF, "-hide_banner", "-loglevel", "error", "-i", str(media["aac_moov_end.m4a"]),
                                "-f", "s16le", "pipe:1"], capture_output=True, check=True).stdout
    assert pcm(moved) == reference and len(reference) > 44100 * 4 * 7
    failed = subprocess.run([FF, "-hide_banner", "-loglevel", "error", "-protocol_whitelist", "pipe", "-i", "pipe:0",
                             "-f", "s16le", "pipe:1"], input=data, capture_output=True)
    assert failed.returncode != 0 or len(failed.stdout) < len(reference) // 2  # why all this exists


@pytest.mark.parametrize("name", ["aac_moov_end.m4a", "alac_moov_end.m4a", "aac_faststart.m4a"])
async def test_mp4_plays_in_full_via_range_and_via_spool(
    name: str, media: dict[str, Path], upstreams: dict[str, str], plain: Any, tmp_path: Path
) -> None:
    results: dict[str, dict[str, Any]] = {}
    async with httpx.AsyncClient() as client:
        for kind in ("ranged", "plain"):
            url = upstreams[kind] + name
            box: dict[str, Any] = {}
            calls: list[int] = []
            spooled: list[int] = []
            body = http_body(client, url, box)
            # As a source would: a tail fetcher only for an upstream that offers ranges.
            first = await anext(body)

            async def rest(first: bytes = first, body: AsyncIterator[bytes] = body) -> AsyncIterator[bytes]:
                yield first
                async for piece in body:
                    yield piece

            fetch = tail_fetcher(client, url, calls) if box["accept_ranges"] else None
            async with prepare_input(rest(), max_bytes=50_000_000, fetch_tail=fetch, spool_dir=str(tmp_path),
                                     on_spool=spooled.append) as prepared:
                out = await run(plain, prepared.stream, input_path=prepared.path,
                                input_format=prepared.input_format)
                if prepared.path is not None:
                    assert Path(prepared.path).exists()
            assert not list(tmp_path.iterdir()), "the spool is deleted afterwards"
            out["mode"] = prepared.mode
            out["calls"] = calls
            out["spooled"] = sum(spooled)
            results[kind] = out
    for kind, out in results.items():
        assert abs(decoded_seconds(out["webm"]) - SECONDS) <= 0.3, (name, kind)
        assert out["first"] is not None and out["first"] < out["total"] and out["count"] >= 3
    if name == "aac_faststart.m4a":
        assert results["ranged"]["mode"] == results["plain"]["mode"] == "pipe"
        assert results["ranged"]["calls"] == []
    else:
        assert results["ranged"]["mode"] == "range" and len(results["ranged"]["calls"]) == 1
        assert results["plain"]["mode"] == "spool" and results["plain"]["spooled"] == media[name].stat().st_size
    # Range and spool read the same samples: the same chunks, bit for bit.
    assert results["ranged"]["hashes"] == results["plain"]["hashes"]


async def test_spool_is_bounded_and_always_deleted(tmp_path: Path) -> None:
    seen: list[str] = []
    with pytest.raises(SpoolTooLarge):
        async with spool(chunks_of(b"x" * 100_000), max_bytes=50_000, directory=str(tmp_path)) as spooled:
            seen.append(spooled.path)
    assert seen == [] and not list(tmp_path.iterdir())

    async def failing() -> AsyncIterator[bytes]:
        yield b"a" * 1000
        raise ConnectionResetError("upstream went away")

    with pytest.raises(ConnectionResetError):
        async with spool(failing(), max_bytes=50_000, directory=str(tmp_path)):
            pass
    assert not list(tmp_path.iterdir())
    with pytest.raises(RuntimeError):
        async with spool(chunks_of(b"y" * 3000), max_bytes=50_000, directory=str(tmp_path)) as spooled:
            assert Path(spooled.path).read_bytes() == b"y" * 3000 and spooled.size == 3000
            assert (Path(spooled.path).stat().st_mode & 0o777) == 0o600
            raise RuntimeError("the transcode failed")
    assert not list(tmp_path.iterdir())


def test_file_input_argv_whitelists_one_path(extras: Any) -> None:
    from transcode.ffmpeg import file_input_argv

    argv = file_input_argv(extras.argv, "/tmp/ztream-spool-x/input", input_format="mov")
    assert argv[argv.index("-protocol_whitelist") + 1] == "file,pipe"
    assert argv[argv.index("-i") + 1] == "file:/tmp/ztream-spool-x/input"
    assert argv[argv.index("-i") - 1] == "mov"
    assert [a for a in argv if a.startswith("file:")] == ["file:/tmp/ztream-spool-x/input"]
    assert not any("://" in a for a in argv)
    with pytest.raises(ValueError):
        file_input_argv(extras.argv, "http://example.com/x.m4a")


# -- 2.-5. tags, waveform, loudness, in the same run; chunks bit-exact ----------------------


@pytest.mark.parametrize(
    "name, title, artist",
    [
        ("cover.mp3", "Night Drive", "The Examples"),
        ("aac_faststart.m4a", "Night Drive", "The Examples"),
        ("comments.flac", "Flac Title", "Flac Artist"),
        ("vorbis.ogg", "Ogg Title", "Ogg Artist"),
        ("opus.opus", "Opus Title", None),
    ],
)
async def test_extras_in_the_same_run_and_chunks_bit_exact(
    name: str, title: str, artist: str | None, media: dict[str, Path], plain: Any, extras: Any
) -> None:
    data = media[name].read_bytes()
    without = await run(plain, chunks_of(data))
    analysis = MediaAnalysis()
    with_extras = await run(extras, chunks_of(data), analysis=analysis)
    assert with_extras["hashes"] == without["hashes"]
    assert abs(decoded_seconds(with_extras["webm"]) - SECONDS) <= 0.3
    tags = analysis.tags
    assert tags is not None and tags.title == title and tags.artist == artist
    if name in ("cover.mp3", "aac_faststart.m4a"):
        assert (tags.album, tags.track, tags.year) == ("Examples Live", 3, 2021)
    if name == "comments.flac":
        assert (tags.track, tags.year) == (7, 1999)
    assert analysis.loudness is not None and -40 < analysis.loudness.loudness_lufs < -3
    wave = analysis.waveform.json()
    # 50 peaks per second of decoded audio (MP3/AAC decoders add a few ms of padding).
    assert wave["version"] == 1 and wave["complete"] and wave["length"] == len(wave["peaks"])
    assert abs(wave["length"] - SECONDS * 50) <= 5 and abs(wave["duration"] - SECONDS) < 0.1
    assert min(wave["peaks"][10:-10]) > 0.1


def test_rendition_id_changes_with_extras(plain: Any, extras: Any) -> None:
    assert extras.id != plain.id and extras.extras and not plain.extras
    assert make_rendition(FF, bitrate=96000, chunk_seconds=2.0, extras=True).id == extras.id
    assert make_rendition(FF, bitrate=64000, chunk_seconds=2.0, extras=True).id != extras.id
    assert "pipe:3" in extras.argv and "pipe:4" in extras.argv
    assert extras.argv[: extras.argv.index("pipe:1") + 1] == plain.argv  # the WebM output is untouched


async def test_hostile_tags_are_cleaned(tmp_path: Path, extras: Any) -> None:
    path = tmp_path / "hostile.mp3"
    huge = "A" * 100_000
    (tmp_path / "meta.txt").write_text(
        ";FFMETADATA1\ntitle=" + huge + "\nartist=" + HOSTILE.replace("\n", "\\\n") + "\nalbum=a\\=b\\;c\n",
        encoding="utf-8",
    )
    ff(*tone(3), "-i", str(tmp_path / "meta.txt"), "-map_metadata", "1", "-c:a", "libmp3lame", str(path))
    analysis = MediaAnalysis()
    await run(extras, chunks_of(path.read_bytes()), analysis=analysis)
    tags = analysis.tags
    assert tags is not None and tags.title is not None and tags.artist is not None
    assert len(tags.title) <= 200 and tags.title.startswith("AAAA")
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or c == "\u202e" for c in tags.artist)
    # HTML stays as text (escaping is the job of whoever shows it); control chars are gone.
    assert tags.artist.startswith("<script>alert(1)</script>") and "Night Drive" in tags.artist
    assert tags.album == "a=b;c"


def test_clean_text_and_ffmetadata_parser_alone() -> None:
    assert clean_text("  a\x00b\x1b[0m\u0085c\u202ed \n e ") == "a b [0m cd e"
    assert clean_text("\x01\x02 ") is None and clean_text(None) is None
    assert len(clean_text("x" * 10_000) or "") == 200
    tags = parse_ffmetadata(";FFMETADATA1\nTITLE=T\\\nU\nTRACK=04/12\nDATE=May 1987\nTLEN=181000\n[STREAM]\nartist=no\n")
    assert (tags.title, tags.artist, tags.track, tags.year, tags.duration) == ("T U", None, 4, 1987, 181.0)
    assert parse_ffmetadata("garbage\n\\\n=\n").title is None
    summary = "Summary:\n\n  Integrated loudness:\n    I:         -14.2 LUFS\n  True peak:\n    Peak:       -1.3 dBFS\n"
    loud = parse_loudness("noise\n" + summary)
    assert loud is not None and (loud.loudness_lufs, loud.true_peak_db) == (-14.2, -1.3)
    assert parse_loudness("no summary") is None


def test_waveform_downsamples_folds_and_grows() -> None:
    wave = Waveform(max_raw=1000)
    for i in range(2500):
        wave.add(1.0 if i == 1234 else 0.25)
    assert len(wave._raw) <= 1000  # folded, bounded
    peaks = wave.peaks(100)
    assert len(peaks) == 100 and max(peaks) == 1.0 and min(peaks) == 0.25
    stream = Waveform()
    record = b"frame:0    pts:0       pts_time:0\nlavfi.astats.Overall.Peak_level=-6.020600\n"
    blob = record * 3 + b"lavfi.astats.Overall.Peak_level=-inf\n"
    for i in range(len(blob)):  # cut at every byte
        stream.feed(blob[i : i + 1])
    assert stream.peaks() == [0.5, 0.5, 0.5, 0.0] and stream.seconds == 4 / 50
    stream.feed(b"x" * 10_000)  # a junk line is dropped, bounded
    stream.feed(b"\nlavfi.astats.Overall.Peak_level=0\n")
    assert stream.peaks()[-1] == 1.0


async def test_waveform_shape_and_loudness_of_known_signals(tmp_path: Path, extras: Any) -> None:
    """4 s of silence then 6 s of a 1 kHz stereo sine at -23 dBFS: peaks ~0 then ~0.0708; I = -23 LUFS."""
    path = tmp_path / "known.flac"
    amp = 10 ** (-23 / 20)
    expr = f"gte(t\\,4)*{amp}*sin(2*PI*1000*t)"
    ff("-f", "lavfi", "-i", f"aevalsrc={expr}|{expr}:s=48000:d=10", "-c:a", "flac", str(path))
    analysis = MediaAnalysis()
    seen_partial: list[int] = []
    data = path.read_bytes()

    async def slow() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 8192):
            yield data[i : i + 8192]
            seen_partial.append(analysis.waveform.json()["length"])
            await asyncio.sleep(0.002)

    await run(extras, slow(), analysis=analysis)
    assert any(0 < n < 500 for n in seen_partial), "the waveform grows while the transcode runs"
    peaks = analysis.waveform.json()["peaks"]
    assert len(peaks) == 500
    assert max(peaks[:195]) < 0.002
    assert all(abs(p - amp) < 0.01 for p in peaks[205:]), [p for p in peaks[200:] if abs(p - amp) >= 0.01]
    loud = analysis.loudness
    # The silence is below R128's absolute gate (-70 LUFS): only the tone counts.
    assert loud is not None and abs(loud.loudness_lufs - -23.0) <= 0.5
    assert loud.true_peak_db is not None and abs(loud.true_peak_db - -23.0) <= 0.5


def children_running(marker: str) -> list[int]:
    """Our child processes whose command line contains ``marker``."""
    pids: list[int] = []
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as f:
            for pid in f.read().split():
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                except FileNotFoundError:
                    continue
                if marker.encode() in cmdline:
                    pids.append(int(pid))
    return pids


def open_pipes() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:")
    return count


async def test_runner_kills_both_processes_midway(media: dict[str, Path], extras: Any) -> None:
    from tests.support.process import wait_dead

    hold = asyncio.Event()  # never set: the source stalls halfway, both processes stay alive
    data = media["comments.flac"].read_bytes()

    async def stalls() -> AsyncIterator[bytes]:
        yield data[: len(data) // 2]
        await hold.wait()

    pipes = open_pipes()
    pids: list[int] = []
    gen = transcode(extras, stalls(), timeout=60, on_spawn=pids.append, analysis=MediaAnalysis())
    assert isinstance(await anext(gen), InitSegment)
    analysis_pids = children_running("ebur128")
    assert len(analysis_pids) == 1
    await gen.aclose()
    assert await wait_dead(pids[0]) and await wait_dead(analysis_pids[0])
    assert open_pipes() <= pipes


# -- 3. artwork --------------------------------------------------------------------------


async def test_artwork_extracted_scaled_and_refused(media: dict[str, Path], tmp_path: Path) -> None:
    head = media["cover.mp3"].read_bytes()[:1 << 20]
    art = await extract_artwork(FF, data=head)
    assert art is not None and (art.width, art.height) == (500, 500) and jpeg_size(art.jpeg) == (500, 500)
    # From a spooled/local file, MP4 covr too.
    m4a = tmp_path / "cover.m4a"
    ff(*tone(2), "-i", str(cover(tmp_path / "small.png", 300)), "-map", "0", "-map", "1", "-c:a", "aac",
       "-c:v", "png", "-disposition:v", "attached_pic", str(m4a))
    art = await extract_artwork(FF, path=str(m4a), input_format="mov")
    assert art is not None and (art.width, art.height) == (300, 300)  # scaled down, never up
    assert await extract_artwork(FF, data=media["comments.flac"].read_bytes()) is None
    with pytest.raises(ArtworkRefused):
        await extract_artwork(FF, data=head, max_bytes=10_000)
    huge = tmp_path / "huge.mp3"
    ff(*tone(1), "-f", "lavfi", "-i", "color=s=8000x8000:d=1", "-map", "0", "-map", "1", "-frames:v", "1",
       "-c:a", "libmp3lame", "-c:v", "png", "-disposition:v", "attached_pic", str(huge))
    with pytest.raises(ArtworkRefused):
        await extract_artwork(FF, data=huge.read_bytes())
    placeholder = placeholder_artwork(FF)
    assert jpeg_size(placeholder) == (500, 500) and placeholder is placeholder_artwork(FF)


async def test_head_is_kept_for_artwork(media: dict[str, Path], extras: Any) -> None:
    analysis = MediaAnalysis(head_limit=1 << 20)
    await run(extras, chunks_of(media["cover.mp3"].read_bytes()), analysis=analysis)
    assert len(analysis.head) == min(1 << 20, media["cover.mp3"].stat().st_size)
    art = await extract_artwork(FF, data=bytes(analysis.head))
    assert art is not None and art.width == 500


# -- the URL source's Range request, through the SSRF-safe fetcher -------------------------


async def test_url_source_tail_fetcher(media: dict[str, Path], upstreams: dict[str, str], plain: Any) -> None:
    from gateway.sources.fetch import SafeFetcher
    from gateway.sources.url import UrlSource

    fetcher = SafeFetcher(allow_hosts=["127.0.0.1"])
    counted: list[int] = []
    source = UrlSource(fetcher, max_bytes=50_000_000, count=counted.append)
    try:
        modes = {}
        for kind in ("ranged", "plain"):
            track = await source.register(upstreams[kind] + "aac_moov_end.m4a")
            async with prepare_input(source.open(track), max_bytes=50_000_000,
                                     fetch_tail=source.tail_fetcher(track)) as prepared:
                out = await run(plain, prepared.stream, input_path=prepared.path, input_format=prepared.input_format)
            modes[kind] = prepared.mode
            assert abs(decoded_seconds(out["webm"]) - SECONDS) <= 0.3
        # The plain upstream answered the Range request 200: refused unread, the body is spooled.
        assert modes == {"ranged": "range", "plain": "spool"}
        assert sum(counted) >= 2 * media["aac_moov_end.m4a"].stat().st_size * 0.9
    finally:
        await fetcher.aclose()


def test_extras_store_is_bounded_least_recently_used_first(tmp_path: Path) -> None:
    """Artworks beyond the bound push out the least recently used; what stays reads back whole."""
    from gateway.media.extras import ExtrasStore, StoredArtwork, extras_bound

    assert extras_bound(2_000_000_000) == 100_000_000 and extras_bound(1_000) == 32 * 2**20
    bound = 2_000_000
    store = ExtrasStore(tmp_path / "extras", bound)
    pictures = {f"t{i:03d}": StoredArtwork(jpeg=bytes([i % 256]) * 50_000, width=500, height=500) for i in range(100)}
    for track, art in pictures.items():
        store.put_artwork(track, "r1", art)
        assert store.get_artwork("t000", "r1") is not None  # read after every write: the most recently used
    assert store.volume() <= bound * 1.2, store.volume()  # 5 MB were written
    kept = [t for t in pictures if store.get_artwork(t, "r1") is not None]
    assert 10 <= len(kept) < 100 and "t099" in kept and "t000" in kept and "t001" not in kept, kept
    assert all(store.get_artwork(t, "r1") == pictures[t] for t in kept)
    store.close()
