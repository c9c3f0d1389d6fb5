"""A track's artwork: the file's attached picture, scaled by ffmpeg to at most 500x500 JPEG.

Theory of operation
-------------------

The picture cannot be an extra output of the transcode itself: ffmpeg fails
the whole run when an output has no stream, and most files have no picture.
So it is two short, bounded ffmpeg runs of its own over what is already at
hand, never a second fetch: the first bytes of a piped upstream
(``MediaAnalysis.head``: ID3v2, FLAC and Vorbis-comment pictures and a
faststart ``moov`` sit at the start) or the spooled/local file.

1. *Copy*: ``-map 0:v:0 -c:v copy -frames:v 1``: the embedded picture's own
   bytes, undecoded. Over ``max_bytes`` is ``ArtworkRefused`` (the run is
   killed as soon as the cap is passed); nothing there means no artwork.
2. *Size*: a JPEG or PNG whose header says more than ``max_pixels`` is
   ``ArtworkRefused`` without decoding (a small file can decode to a huge
   bitmap); other formats meet the decoder's own ``-max_pixels``.
3. *Scale*: those bytes alone, decoded and scaled down, never up, to fit
   500x500, written as baseline JPEG with bitexact flags.

``placeholder_artwork(binary, title, artist)`` is the picture of a track
without one: a diagonal two-colour gradient whose hues come from the track's
artist and title (``placeholder_colours``, the same hash and colours as the
client's ``placeholderArt`` in client/format.js, which adds the initials where
it draws one), so a track keeps its colours from the list to the player, and
the ``/player/`` background with ``visual=true`` looks intended, not broken.
Made by ffmpeg (``geq``, no font needed), kept for the last few hundred tracks.
"""

from __future__ import annotations

import asyncio
import colorsys
import contextlib
import functools
import os
import signal
import struct
import subprocess
from dataclasses import dataclass

from .ffmpeg import file_input_argv

__all__ = [
    "Artwork",
    "ArtworkRefused",
    "extract_artwork",
    "placeholder_artwork",
    "jpeg_size",
    "image_size",
    "MAX_PICTURE_BYTES",
    "MAX_PICTURE_PIXELS",
    "ARTWORK_SIZE",
]

ARTWORK_SIZE = 500
MAX_PICTURE_BYTES = 8 * 1024 * 1024
# 40 megapixels: more than any cover art (a 6000x6000 scan is 36 MP).
MAX_PICTURE_PIXELS = 40_000_000
_MAX_JPEG_OUT = 2 * 1024 * 1024


class ArtworkRefused(Exception):
    """The picture is over the byte cap or the pixel cap: not decoded, not stored."""


@dataclass(frozen=True, slots=True)
class Artwork:
    jpeg: bytes
    width: int
    height: int


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's first SOFn marker (ITU T.81 B.2.2), or None."""
    if not data.startswith(b"\xff\xd8"):
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack_from(">H", data, i + 2)
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            if i + 9 > len(data):
                return None
            height, width = struct.unpack_from(">HH", data, i + 5)
            return width, height
        i += 2 + length
    return None


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG or PNG header (PNG: the IHDR chunk, RFC 2083 4.1.1), or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24 and data[12:16] == b"IHDR":
        width, height = struct.unpack_from(">II", data, 16)
        return width, height
    return jpeg_size(data)


def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


async def _run(argv: list[str], data: bytes | None, cap: int, timeout: float) -> tuple[int | None, bytes, bool]:
    """(exit status or None if killed, stdout up to ``cap``, whether stdout went past ``cap``)."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if data is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    assert proc.stdout is not None

    async def feed() -> None:
        assert proc.stdin is not None
        try:
            proc.stdin.write(data or b"")
            await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # ffmpeg had what it wanted
        finally:
            with contextlib.suppress(Exception):
                proc.stdin.close()

    feeder = asyncio.create_task(feed()) if data is not None else None
    out = bytearray()
    over = False
    try:
        async with asyncio.timeout(timeout):
            while True:
                piece = await proc.stdout.read(64 * 1024)
                if not piece:
                    break
                out += piece
                if len(out) > cap:
                    over = True
                    _kill(proc)
                    break
            code = await proc.wait() if not over else None
    except TimeoutError:
        code = None
    finally:
        _kill(proc)
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(proc.wait(), 5.0)
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(proc.stdout.read(), 5.0)
        if feeder is not None:
            feeder.cancel()
            with contextlib.suppress(BaseException):
                await feeder
    return code, bytes(out[:cap]), over


async def extract_artwork(
    binary: str,
    *,
    data: bytes | None = None,
    path: str | None = None,
    input_format: str | None = None,
    max_bytes: int = MAX_PICTURE_BYTES,
    max_pixels: int = MAX_PICTURE_PIXELS,
    timeout: float = 20.0,
) -> Artwork | None:
    """The attached picture of ``data`` (the file's first bytes) or the file ``path``, as JPEG.

    Returns None when there is no picture (or it does not decode); raises
    ``ArtworkRefused`` when it is over ``max_bytes`` or ``max_pixels``.
    """
    if (data is None) == (path is None):
        raise ValueError("give exactly one of data and path")
    copy = [
        binary, "-hide_banner", "-nostdin", "-loglevel", "error", "-protocol_whitelist", "pipe",
        "-i", "pipe:0", "-map", "0:v:0", "-an", "-sn", "-dn", "-c:v", "copy", "-frames:v", "1",
        "-f", "image2pipe", "pipe:1",
    ]
    if path is not None:
        copy = file_input_argv(copy, path, input_format=input_format)
    code, picture, over = await _run(copy, data, max_bytes, timeout)
    if over:
        raise ArtworkRefused(f"the picture is larger than {max_bytes} bytes")
    if not picture:
        return None
    dims = image_size(picture)
    if dims is not None and dims[0] * dims[1] > max_pixels:
        raise ArtworkRefused(f"the picture is {dims[0]}x{dims[1]}, more than {max_pixels} pixels")
    side = ARTWORK_SIZE
    scale = (
        f"scale=w='min({side},iw)':h='min({side},ih)':force_original_aspect_ratio=decrease,"
        "format=yuvj420p"
    )
    convert = [
        binary, "-hide_banner", "-nostdin", "-loglevel", "error", "-protocol_whitelist", "pipe",
        "-max_pixels", str(max_pixels), "-i", "pipe:0", "-frames:v", "1", "-vf", scale,
        "-c:v", "mjpeg", "-q:v", "3", "-fflags", "+bitexact", "-flags", "+bitexact",
        "-f", "image2pipe", "pipe:1",
    ]
    code, jpeg, over = await _run(convert, picture, _MAX_JPEG_OUT, timeout)
    size = jpeg_size(jpeg) if code == 0 and not over else None
    if size is None:
        return None  # not a picture ffmpeg decodes (or -max_pixels stopped an unknown format)
    return Artwork(jpeg=jpeg, width=size[0], height=size[1])


def placeholder_colours(title: str | None, artist: str | None = None) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """The gradient's two RGB colours: FNV-1a over ``artist\0title``, as client/format.js does."""
    h = 2166136261
    for ch in f"{artist or ''}\u0000{title or ''}":
        h ^= ord(ch)
        h = (h * 16777619) & 0xFFFFFFFF
    hue = h % 360
    hue2 = (hue + 40 + ((h >> 9) % 60)) % 360

    def rgb(hue: int, saturation: float, lightness: float) -> tuple[int, int, int]:
        r, g, b = colorsys.hls_to_rgb(hue / 360, lightness, saturation)
        return round(r * 255), round(g * 255), round(b * 255)

    return rgb(hue, 0.62, 0.46), rgb(hue2, 0.70, 0.28)


@functools.lru_cache(maxsize=256)
def placeholder_artwork(binary: str, title: str | None = None, artist: str | None = None) -> bytes:
    """A 500x500 JPEG: the track's diagonal gradient (``placeholder_colours``), top left to bottom right."""
    side = ARTWORK_SIZE
    (r0, g0, b0), (r1, g1, b1) = placeholder_colours(title, artist)

    def channel(a: int, b: int) -> str:
        return f"{a}+({b - a})*(X+Y)/(W+H)"

    gradient = f"format=rgb24,geq=r='{channel(r0, r1)}':g='{channel(g0, g1)}':b='{channel(b0, b1)}',format=yuvj420p"
    out = subprocess.run(
        [binary, "-hide_banner", "-nostdin", "-loglevel", "error",
         "-f", "lavfi", "-i", f"color=c=black:s={side}x{side}:d=1",
         "-frames:v", "1", "-vf", gradient, "-c:v", "mjpeg", "-q:v", "3",
         "-fflags", "+bitexact", "-flags", "+bitexact", "-f", "image2pipe", "pipe:1"],
        capture_output=True, timeout=30, check=True,
    ).stdout
    if jpeg_size(out) != (side, side):
        raise RuntimeError("ffmpeg made no placeholder JPEG")
    return out
