"""Which ffmpeg, with which argv, and the rendition id that names its output.

ffmpeg only ever reads ``pipe:0`` and writes ``pipe:1``: ``-protocol_whitelist
pipe`` makes it refuse any URL even if one slipped into the input. The bitexact
flags make the same input give byte-identical WebM, which is what lets a chunk
be evicted and transcoded again without changing its SHA-256.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import subprocess
from dataclasses import dataclass

import ffmpeg as ffmpeg_python

__all__ = ["Rendition", "find_ffmpeg", "ffmpeg_version", "make_rendition", "FFmpegNotFound"]


class FFmpegNotFound(RuntimeError):
    pass


def find_ffmpeg(configured: str = "") -> str:
    """The binary from config, else ``ffmpeg`` on PATH, else imageio-ffmpeg's."""
    if configured:
        path = shutil.which(configured)
        if path is None:
            raise FFmpegNotFound(f"transcode.ffmpeg: {configured!r} is not an executable")
        return path
    path = shutil.which("ffmpeg")
    if path is not None:
        return path
    try:
        import imageio_ffmpeg
    except ImportError:  # pragma: no cover - a declared dependency
        raise FFmpegNotFound("no ffmpeg on PATH and imageio-ffmpeg is not installed") from None
    return str(imageio_ffmpeg.get_ffmpeg_exe())


@functools.lru_cache(maxsize=8)
def ffmpeg_version(binary: str) -> str:
    """First line of ``ffmpeg -version``: part of the rendition id."""
    try:
        out = subprocess.run(
            [binary, "-hide_banner", "-version"], capture_output=True, timeout=20, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise FFmpegNotFound(f"{binary}: cannot run ({exc})") from None
    return out.decode("utf-8", "replace").splitlines()[0].strip()


@dataclass(frozen=True, slots=True)
class Rendition:
    """One fixed way to encode a track; ``id`` hashes everything that shapes the bytes."""

    id: str
    binary: str
    version: str
    argv: tuple[str, ...]
    bitrate: int
    chunk_seconds: float
    mime: str = 'audio/webm; codecs="opus"'


def build_argv(binary: str, *, bitrate: int, chunk_seconds: float) -> list[str]:
    stream = ffmpeg_python.input("pipe:0", protocol_whitelist="pipe").output(
        "pipe:1",
        vn=None,
        sn=None,
        map_metadata=-1,
        acodec="libopus",
        audio_bitrate=bitrate,
        ar=48000,
        f="webm",
        live=1,
        cluster_time_limit=int(chunk_seconds * 1000),
        fflags="+bitexact",
        flags="+bitexact",
    )
    compiled = stream.compile(cmd=binary)
    # Global options first: after the output file ffmpeg may ignore them.
    return [compiled[0], "-hide_banner", "-nostdin", "-loglevel", "error", *compiled[1:]]


def make_rendition(binary: str, *, bitrate: int, chunk_seconds: float) -> Rendition:
    argv = build_argv(binary, bitrate=bitrate, chunk_seconds=chunk_seconds)
    version = ffmpeg_version(binary)
    # The binary's path is not part of the identity, its version and argv are.
    identity = "\n".join([version, *argv[1:], str(bitrate), repr(chunk_seconds)])
    rid = hashlib.sha256(identity.encode()).hexdigest()[:12]
    return Rendition(
        id=rid,
        binary=binary,
        version=version,
        argv=tuple(argv),
        bitrate=bitrate,
        chunk_seconds=chunk_seconds,
    )
