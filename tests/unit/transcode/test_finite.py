"""transcode/finite.py against the first bytes of files as ffmpeg writes them, to a file and to a pipe."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest

from transcode.ffmpeg import find_ffmpeg
from transcode.finite import HEAD_BYTES, declares_finite

SINE = ["-f", "lavfi", "-i", "sine=f=440:d=3"]


def ffmpeg_head(tmp_path: Path, *args: str, to_pipe: bool) -> bytes:
    """The first HEAD_BYTES ffmpeg writes: to a seekable file (headers patched at the end) or to a pipe."""
    argv = [find_ffmpeg(""), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *SINE, *args]
    if to_pipe:
        out = subprocess.run([*argv, "pipe:1"], capture_output=True, check=True).stdout
    else:
        target = tmp_path / "out"
        subprocess.run([*argv, str(target)], capture_output=True, check=True)
        out = target.read_bytes()
    return out[:HEAD_BYTES]


@pytest.mark.parametrize(("args", "file_finite", "pipe_finite"), [
    (("-f", "wav"), True, False),  # to a pipe the RIFF size is 0xFFFFFFFF
    (("-f", "flac"), True, False),  # to a pipe STREAMINFO's total samples stay 0
    (("-f", "mp3", "-c:a", "libmp3lame"), True, True),  # an ID3v2 tag either way
    (("-f", "mp3", "-c:a", "libmp3lame", "-id3v2_version", "0", "-write_xing", "0"), False, False),
    (("-f", "ogg", "-c:a", "libopus"), False, False),
    (("-f", "adts", "-c:a", "aac"), False, False),
])
def test_what_ffmpeg_writes(tmp_path: Path, args: tuple[str, ...], file_finite: bool, pipe_finite: bool) -> None:
    assert declares_finite(ffmpeg_head(tmp_path, *args, to_pipe=False)) is file_finite
    assert declares_finite(ffmpeg_head(tmp_path, *args, to_pipe=True)) is pipe_finite


def test_xing_header_without_id3(tmp_path: Path) -> None:
    head = ffmpeg_head(tmp_path, "-f", "mp3", "-c:a", "libmp3lame", "-id3v2_version", "0", to_pipe=False)
    assert head[:3] != b"ID3" and (b"Xing" in head[:64] or b"Info" in head[:64])
    assert declares_finite(head)


def test_short_or_foreign_heads_are_not_files() -> None:
    assert not declares_finite(b"")
    assert not declares_finite(b"RIFF")
    assert not declares_finite(b"RIFF" + struct.pack("<I", 0) + b"WAVE")
    assert not declares_finite(b"fLaC\x00")
    assert not declares_finite(b"OggS" + bytes(100))
    assert declares_finite(b"\x00\x00\x00\x20ftypM4A " + bytes(24))
