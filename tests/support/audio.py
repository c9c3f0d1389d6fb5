"""Generated audio and an independent decoder to measure it."""

from __future__ import annotations

import subprocess

from bench.harness import ffmpeg_bin, make_audio

__all__ = ["decoded_seconds", "ffmpeg_bin", "make_audio"]


def decoded_seconds(webm: bytes) -> float:
    """Decode with ffmpeg to raw PCM and measure: independent of our parser."""
    out = subprocess.run(
        [ffmpeg_bin(), "-hide_banner", "-loglevel", "error", "-i", "pipe:0", "-f", "s16le", "-ac", "1",
         "-ar", "48000", "pipe:1"],
        input=webm, capture_output=True, check=True, timeout=60,
    ).stdout
    return len(out) / 2 / 48000
