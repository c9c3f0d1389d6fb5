"""Files other tools make, and damaged ones: every one that decodes plays in full.

The inputs come from Debian's own encoders and muxers (sox, lame, flac,
oggenc, opusenc, mkvmerge; scripts/system-deps.sh installs them), not from
the ffmpeg command the rest of the suite uses, plus files with the timestamp
faults real files have (a gap after the first packet, packets that overlap)
and every channel layout ``ffmpeg -layouts`` knows. They go through
``POST /v1/tracks`` by URL, as a user's would, or (the layouts) straight
through the runner.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from gateway.media.transcoding import error_of
from tests.support.gateway import fetch_all, post_url
from tests.support.upstream import Upstream
from transcode.ebml import Cluster, InitSegment
from transcode.ffmpeg import OPUS_LAYOUTS, build_argv, find_ffmpeg, make_rendition
from transcode.runner import EncoderFailed, TranscodeFailed, transcode

FFMPEG = find_ffmpeg("")
SECONDS = 6


def run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=120)


def ffmpeg(*args: str) -> None:
    run(FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args)


def layouts() -> list[str]:
    out = subprocess.run([FFMPEG, "-hide_banner", "-layouts"], capture_output=True, text=True, check=True).stdout
    names = out.split("Standard channel layouts:", 1)[1].splitlines()
    return [line.split()[0] for line in names if line.strip() and not line.startswith("NAME")]


def packets(webm: bytes) -> list[float]:
    """Packet timestamps (s) as an independent demuxer (ffprobe) reads them."""
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "packet=pts_time", "-of", "csv=p=0", "-"],
                         input=webm, capture_output=True, check=True, timeout=60).stdout.decode()
    return [float(line.strip().rstrip(",")) for line in out.splitlines() if line.strip()]


def channels(webm: bytes) -> tuple[int, str]:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=channels,channel_layout",
                          "-of", "csv=p=0", "-"], input=webm, capture_output=True, check=True).stdout.decode()
    count, layout = out.strip().split(",")[:2]
    return int(count), layout


def assert_clean_timeline(webm: bytes, seconds: float, tolerance: float = 0.1) -> None:
    times = packets(webm)
    assert times and times[0] <= 0.0 + 1e-9, times[:3]  # Opus pre-skip: starts at 0 or just before
    bad = [(a, b) for a, b in zip(times, times[1:], strict=False) if b <= a]
    assert not bad, f"non-monotonic timestamps: {bad[:5]}"
    assert abs(times[-1] + 0.02 - seconds) < tolerance, (times[-1], seconds)


# -- every channel layout -----------------------------------------------------------------


@pytest.fixture(scope="module")
def rendition():  # type: ignore[no-untyped-def]
    return make_rendition(FFMPEG, bitrate=96000, chunk_seconds=2.0)


async def from_file(path: Path) -> Any:
    yield path.read_bytes()


@pytest.mark.parametrize("layout", layouts())
async def test_every_channel_layout_encodes(rendition: Any, layout: str, tmp_path: Path) -> None:
    wav = tmp_path / "in.wav"
    ffmpeg("-f", "lavfi", "-i", "sine=f=440:r=44100:d=2", "-af", f"aformat=channel_layouts={layout}",
           "-c:a", "pcm_s16le", str(wav))
    events = [e async for e in transcode(rendition, from_file(wav), timeout=60)]
    assert isinstance(events[0], InitSegment) and all(isinstance(e, Cluster) for e in events[1:])
    webm = b"".join(e.data for e in events)
    count, name = channels(webm)
    assert name in OPUS_LAYOUTS, (layout, name)
    assert_clean_timeline(webm, 2.0)


# -- files other tools make, through POST /v1/tracks ----------------------------------------


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path is not None, f"{name} is missing: run scripts/system-deps.sh"
    return path


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, float]]:
    """name -> (file, seconds of audio it decodes to)."""
    d = tmp_path_factory.mktemp("othertools")
    files: dict[str, tuple[Path, float]] = {}
    sox = _tool("sox")
    tone = d / "tone.wav"
    run(sox, "-n", "-r", "44100", "-c", "2", "-b", "16", str(tone), "synth", str(SECONDS), "sine", "440", "sine", "660")
    # sox: a 4-channel AIFF (ffmpeg reads it as 4.0, which libopus refuses as such),
    # 3 and 6 channels, 8-bit, 24-bit at 96 kHz.
    for name, args in {
        "four.aiff": ["-c", "4", "-b", "16"],
        "three.wav": ["-c", "3", "-b", "16"],
        "six.aif": ["-c", "6", "-b", "16"],
        "eight-bit.wav": ["-c", "1", "-b", "8", "-r", "8000"],
        "hires.flac": ["-c", "2", "-b", "24", "-r", "96000"],
    }.items():
        run(sox, "-n", *args, str(d / name), "synth", str(SECONDS), "sine", "300-900")
        files[name] = (d / name, SECONDS)
    run(_tool("lame"), "--quiet", "-b", "128", str(tone), str(d / "lame.mp3"))
    run(_tool("lame"), "--quiet", "-V", "4", "-m", "m", str(tone), str(d / "lame-vbr-mono.mp3"))
    run(_tool("flac"), "--silent", "-8", "-o", str(d / "cli.flac"), str(tone))
    run(_tool("oggenc"), "--quiet", "-q", "3", "-o", str(d / "oggenc.ogg"), str(tone))
    run(_tool("opusenc"), "--quiet", str(tone), str(d / "opusenc.opus"))
    # mkvmerge: the Opus stream remuxed, shifted to start at 1.94 s.
    run(_tool("mkvmerge"), "-q", "-o", str(d / "late.mka"), "--sync", "0:1940", str(d / "opusenc.opus"))
    for name in ("lame.mp3", "lame-vbr-mono.mp3", "cli.flac", "oggenc.ogg", "opusenc.opus", "late.mka"):
        files[name] = (d / name, SECONDS)
    # WMA whose second packet sits at 1.94 s, and WMA whose packets overlap
    # (the asf muxer "fixes" them to 1 ms apart), as in the corpus that failed.
    wma = d / "tone.wma"
    ffmpeg("-i", str(tone), "-c:a", "wmav2", "-b:a", "128k", str(wma))
    ffmpeg("-i", str(wma), "-c", "copy", "-bsf:a", "setts=ts=if(eq(N\\,0)\\,PTS\\,PTS+1940)", str(d / "gap.wma"))
    ffmpeg("-i", str(wma), "-c", "copy", "-bsf:a", "setts=ts=if(gte(N\\,60)\\,PTS-500\\,PTS)", str(d / "overlap.wma"))
    files["gap.wma"] = (d / "gap.wma", SECONDS)
    files["overlap.wma"] = (d / "overlap.wma", SECONDS)
    # Damaged: an MP3 cut in the middle of a frame, an MP3 with garbage spliced in.
    data = (d / "lame.mp3").read_bytes()
    (d / "cut.mp3").write_bytes(data[: len(data) // 2 + 77])
    files["cut.mp3"] = (d / "cut.mp3", SECONDS / 2)
    (d / "spliced.mp3").write_bytes(data[: len(data) // 3] + bytes(range(256)) * 8 + data[len(data) // 3:])
    files["spliced.mp3"] = (d / "spliced.mp3", SECONDS)
    return files


@pytest.fixture
async def files_upstream(made: dict[str, tuple[Path, float]]) -> Any:
    up = Upstream({name: path for name, (path, _) in made.items()})
    server = TestServer(up.app, host="127.0.0.1")
    await server.start_server()
    up.base = f"http://127.0.0.1:{server.port}"  # type: ignore[attr-defined]
    up.host = f"127.0.0.1:{server.port}"  # type: ignore[attr-defined]
    yield up
    await server.close()


NAMES = ["four.aiff", "three.wav", "six.aif", "eight-bit.wav", "hires.flac", "lame.mp3", "lame-vbr-mono.mp3",
         "cli.flac", "oggenc.ogg", "opusenc.opus", "late.mka", "gap.wma", "overlap.wma", "cut.mp3", "spliced.mp3"]


@pytest.mark.parametrize("name", NAMES)
async def test_files_other_tools_make_play_in_full(make_gateway: Any, files_upstream: Any,
                                                   made: dict[str, tuple[Path, float]], name: str) -> None:
    client = await make_gateway(**{"sources.url": {"allow_hosts": [files_upstream.host]}})
    r = await post_url(client, f"{files_upstream.base}/audio/{name}")
    assert r.status == 201, await r.text()
    track_id = (await r.json())["id"]
    manifest, init, chunks = await fetch_all(client, track_id)
    seconds = made[name][1]
    webm = init + b"".join(chunks)
    # The damaged ones lose a frame or two around the damage.
    assert_clean_timeline(webm, seconds, tolerance=0.1 if not name.startswith(("cut", "spliced")) else 0.3)
    # The manifest's duration is the decoded samples' (not 1.94 s longer for gap.wma).
    assert abs(manifest["duration"] - seconds) < (0.15 if not name.startswith(("cut", "spliced")) else 0.35), manifest
    assert channels(webm)[1] in OPUS_LAYOUTS


async def test_undecodable_input_is_not_audio_without_memory_addresses(make_gateway: Any, tmp_path: Path) -> None:
    # An MP4 with no moov: ffmpeg says "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55...] moov atom not found".
    bad = tmp_path / "lib" / "broken.m4a"
    bad.parent.mkdir()
    bad.write_bytes(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + bytes(4000))
    client = await make_gateway(**{"sources.local": {"dirs": [str(bad.parent)]}})
    tracks = (await (await client.get("/v1/tracks")).json())["tracks"]
    r = await client.get(f"/v1/tracks/{tracks[0]['id']}/manifest")
    body = await r.json()
    assert r.status == 415 and body["error"] == "upstream_not_audio", body
    assert "[mov,mp4" in body["detail"] and "0x" not in body["detail"], body


async def test_an_encoder_failure_is_reported_as_such(tmp_path: Path) -> None:
    # libopus refuses 44.1 kHz: the input decodes, the encoder does not open.
    rendition = make_rendition(FFMPEG, bitrate=96000, chunk_seconds=2.0)
    argv = build_argv(FFMPEG, bitrate=96000, chunk_seconds=2.0)
    argv[argv.index("-ar") + 1] = "44100"
    broken = type(rendition)(**{**{f: getattr(rendition, f) for f in rendition.__dataclass_fields__},
                                "argv": tuple(argv)})
    wav = tmp_path / "in.wav"
    ffmpeg("-f", "lavfi", "-i", "sine=d=1", str(wav))
    with pytest.raises(EncoderFailed) as info:
        async for _ in transcode(broken, from_file(wav), timeout=60):
            pass
    assert "0x" not in info.value.stderr and info.value.reason.startswith("[libopus]"), info.value.stderr

    error = error_of(info.value, chunks_so_far=False)
    assert (error.status, error.code) == (500, "encoder_failed")
    assert "Opus encoder" in error.detail and "44100" in error.detail
    # A decoder's failure stays the input's.
    not_audio = error_of(TranscodeFailed("x", "[mp3] Header missing\npipe:0: Invalid data"), chunks_so_far=False)
    assert not_audio.code == "upstream_not_audio"
