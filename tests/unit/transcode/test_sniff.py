"""The live format sniffer (transcode/sniff.py) on real encoder output, cut anywhere."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.audio import ffmpeg_bin
from transcode.sniff import sniff_format

ENCODINGS = {
    "mp3": ["-c:a", "libmp3lame", "-b:a", "128k", "-f", "mp3"],
    "mp3-22k": ["-c:a", "libmp3lame", "-b:a", "32k", "-ar", "22050", "-f", "mp3"],
    "aac": ["-c:a", "aac", "-b:a", "96k", "-f", "adts"],
    "ogg": ["-c:a", "libopus", "-f", "ogg"],
    # What live HLS segments carry: AAC or MP3 in MPEG-TS, AAC in fragmented MP4.
    "ts-aac": ["-c:a", "aac", "-b:a", "64k", "-f", "mpegts"],
    "ts-mp3": ["-c:a", "libmp3lame", "-b:a", "64k", "-f", "mpegts"],
    "fmp4-aac": ["-c:a", "aac", "-b:a", "64k", "-movflags", "+frag_keyframe+empty_moov+default_base_moof",
                 "-frag_duration", "1000000", "-f", "mp4"],
}


@pytest.fixture(scope="module")
def encoded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    out = {}
    for name, options in ENCODINGS.items():
        path: Path = tmp_path_factory.mktemp("sniff") / name
        subprocess.run([ffmpeg_bin(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
                        "-i", "sine=f=440:d=3", "-id3v2_version", "0", *options, str(path)], check=True, timeout=60)
        out[name] = path.read_bytes()
    return out


@pytest.mark.parametrize(("name", "expected"), [("mp3", "mp3"), ("mp3-22k", "mp3"), ("aac", "aac"), ("ogg", "ogg")])
def test_a_stream_joined_anywhere_is_named(encoded: dict[str, bytes], name: str, expected: str) -> None:
    data = encoded[name]
    assert sniff_format(data[:16384]) == expected
    if expected != "ogg":  # Icecast starts Ogg listeners at a page; MPEG streams anywhere
        for offset in range(1, 3000, 7):
            assert sniff_format(data[offset : offset + 16384]) == expected, offset


@pytest.mark.parametrize(("name", "expected"), [("ts-aac", "mpegts"), ("ts-mp3", "mpegts"), ("fmp4-aac", None)])
def test_containers_are_not_mistaken_for_the_frames_they_carry(
    encoded: dict[str, bytes], name: str, expected: str | None
) -> None:
    """A live HLS playlist's segments start at a packet or a box; the frames inside must not name the demuxer."""
    data = encoded[name]
    starts = range(0, len(data) - 16384, 188) if name.startswith("ts") else [0]
    for offset in starts:  # any TS packet may start a segment
        assert sniff_format(data[offset : offset + 16384]) == expected, offset


def test_nothing_certain_is_none() -> None:
    assert sniff_format(b"") is None
    assert sniff_format(b"\xff\xfb\x90") is None  # one header, no second frame in sight
    assert sniff_format(bytes(range(256)) * 64) is None
    assert sniff_format(b"ID3\x04") == "mp3"
