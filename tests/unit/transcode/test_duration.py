"""The expected duration: ffmpeg's input dump parsed, its error lines kept apart."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.support.audio import make_audio
from transcode.duration import FFmpegLog, InputInfo, parse_bitrate, parse_clock
from transcode.ebml import Cluster
from transcode.ffmpeg import find_ffmpeg, make_rendition
from transcode.runner import TranscodeFailed, transcode

# What ffmpeg 5.1 logs at level+info for an MP3 on a pipe (no size: no duration, a bit rate).
MP3_PIPE = b"""[mp3 @ 0x55a6038ea9c0] [warning] invalid concatenated file detected - using bitrate for duration
[info] Input #0, mp3, from 'pipe:0':
[info]   Metadata:
[info]     encoder         : Lavf59.27.100
[info]   Duration: N/A, start: 0.025057, bitrate: 128 kb/s
[info]   Stream #0:0: Audio: mp3, 44100 Hz, mono, fltp, 128 kb/s
[info] Stream mapping:
[info]   Stream #0:0 -> #0:0 (mp3 (mp3float) -> opus (libopus))
[info] Output #0, webm, to 'pipe:1':
[info]   Metadata:
[info]     encoder         : Lavf59.27.100
[info]   Duration: 00:09:59.00, start: 0.000000, bitrate: N/A
[info]   Stream #0:0: Audio: opus, 48000 Hz, mono, flt, 64 kb/s
[info] size=     304kB time=00:00:30.03 bitrate=  82.9kbits/s speed=64.6x
"""
FLAC_PIPE = b"""[info] Input #0, flac, from 'pipe:0':
[info]   Duration: 00:03:25.52, start: 0.000000, bitrate: N/A
[info]   Stream #0:0: Audio: flac, 44100 Hz, stereo, s16
[flac @ 0x5600] [error] invalid sync code
[info] Input #1, mp3, from 'other':
[info]   Duration: 00:00:01.00, start: 0.000000, bitrate: 8 kb/s
"""
OGG_PIPE = b"""[info] Input #0, ogg, from 'pipe:0':
[info]   Duration: N/A, start: 0.000000, bitrate: N/A
[info]   Stream #0:0: Audio: vorbis, 44100 Hz, stereo, fltp, 112 kb/s
"""


def feed(log: FFmpegLog, data: bytes, size: int) -> None:
    for i in range(0, len(data), size):
        log.feed(data[i : i + size])
    log.finish()


def test_clock_and_bitrate() -> None:
    assert parse_clock("00:03:25.52") == pytest.approx(205.52)
    assert parse_clock("01:00:00.00") == 3600.0
    assert parse_clock("N/A") is None and parse_clock("00:00:00.00") is None and parse_clock("") is None
    assert parse_bitrate("128 kb/s") == 128_000 and parse_bitrate("705.6 kb/s") == 705_600
    assert parse_bitrate("N/A") is None and parse_bitrate("0 kb/s") is None


@pytest.mark.parametrize("piece", [1, 7, 4096])
def test_mp3_on_a_pipe_gives_the_bitrate_and_no_duration(piece: int) -> None:
    log = FFmpegLog()
    feed(log, MP3_PIPE, piece)
    # The output's "Duration" is not the input's; warnings and info are not errors.
    assert log.info.duration is None and log.info.bitrate == 128_000
    assert log.errors() == ""
    log.info.size = 480_000  # Content-Length
    assert log.info.expected_duration() == 30.0


def test_the_header_duration_wins_and_only_the_first_input_counts() -> None:
    log = FFmpegLog(InputInfo(size=10))
    feed(log, FLAC_PIPE, 5)
    assert log.info.duration == pytest.approx(205.52) and log.info.bitrate is None
    assert log.info.expected_duration() == 205.52
    # The error line is kept as -loglevel error printed it: component prefix, no level tag.
    assert log.errors() == "[flac @ 0x5600] invalid sync code\n"


def test_stream_bitrate_when_the_container_has_none() -> None:
    log = FFmpegLog(InputInfo(size=420_000))
    feed(log, OGG_PIPE, 4096)
    assert log.info.bitrate == 112_000 and log.info.expected_duration() == 30.0


def test_nothing_known_is_none() -> None:
    assert InputInfo().expected_duration() is None
    assert InputInfo(size=1000).expected_duration() is None
    assert InputInfo(bitrate=128_000).expected_duration() is None


def test_errors_are_bounded_and_lines_cut() -> None:
    log = FFmpegLog(limit=100)
    feed(log, b"[error] " + b"x" * 10_000 + b"\n" + b"[error] last\n", 333)
    assert len(log.errors()) <= 100 and log.errors().endswith("last\n")


@pytest.fixture(scope="module")
def rendition():  # type: ignore[no-untyped-def]
    return make_rendition(find_ffmpeg(""), bitrate=96000, chunk_seconds=2.0)


async def pieces(data: bytes, hold: asyncio.Event, after: int) -> object:
    for i in range(0, len(data), 8192):
        if i >= after:
            await hold.wait()
        yield data[i : i + 8192]


@pytest.mark.parametrize(("fmt", "needs_size"), [("flac", False), ("mp3", True), ("wav", True)])
async def test_the_runner_knows_the_duration_before_the_end(rendition, tmp_path: Path, fmt: str, needs_size: bool) -> None:  # type: ignore[no-untyped-def]
    """A 30 s input fed to a third: the first cluster comes with the duration (or the bit rate) known."""
    data = make_audio(tmp_path / f"a.{fmt}", 30, freq=440, fmt=fmt).read_bytes()
    info = InputInfo(size=len(data) if needs_size else None)
    hold = asyncio.Event()
    gen = transcode(rendition, pieces(data, hold, len(data) // 3), timeout=60, input_info=info)  # type: ignore[arg-type]
    async for event in gen:
        if isinstance(event, Cluster):
            break
    await asyncio.sleep(0.2)  # the stderr reader runs beside the output
    assert info.expected_duration() == pytest.approx(30.0, abs=0.5)
    hold.set()
    await gen.aclose()


async def test_errors_still_name_the_cause(rendition) -> None:  # type: ignore[no-untyped-def]
    async def garbage() -> object:
        yield b"garbage" * 500

    with pytest.raises(TranscodeFailed) as failed:
        async for _ in transcode(rendition, garbage(), timeout=60):  # type: ignore[arg-type]
            pass
    assert failed.value.reason == "pipe:0: Invalid data found when processing input"
    assert "[info]" not in failed.value.stderr and "Input #" not in failed.value.stderr
