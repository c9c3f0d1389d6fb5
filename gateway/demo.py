"""The demo library: a few short pieces made with ffmpeg on first start.

So that `make run` on a fresh machine plays music with no configuration and
no network: each piece is a little melody over a bass line, synthesized by
ffmpeg's `aevalsrc` and saved as FLAC under the cache directory.
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

__all__ = ["ensure_demo_library", "DEMO_TRACKS"]

log = logging.getLogger("ztream.demo")


def _melody(notes: list[int], bass: list[int], beat: float) -> str:
    """An aevalsrc expression: square-ish melody plus sine bass, semitones from A4."""

    def pick(seq: list[int], period: float) -> str:
        # Nested if() picks seq[floor(t/period) mod len(seq)].
        expr = str(seq[-1])
        n = len(seq)
        for i in range(n - 2, -1, -1):
            expr = f"if(eq(mod(floor(t/{period}),{n}),{i}),{seq[i]},{expr})"
        return expr

    freq = f"440*pow(2,({pick(notes, beat)})/12)"
    bfreq = f"110*pow(2,({pick(bass, beat * 4)})/12)"
    envelope = f"exp(-3*mod(t,{beat}))"
    return (
        f"0.22*{envelope}*(sin(2*PI*{freq}*t)+0.3*sin(4*PI*{freq}*t))"
        f"+0.18*sin(2*PI*{bfreq}*t)"
    )


DEMO_TRACKS: dict[str, tuple[list[int], list[int], float, int]] = {
    "Demo - Morning Arpeggio": ([0, 4, 7, 12, 7, 4, 0, -5, -3, 0, 4, 9, 4, 0, -3, -5], [0, -3, 5, 7], 0.25, 40),
    "Demo - Slow Walk": ([0, 2, 4, 5, 7, 5, 4, 2], [0, 5, -2, 3], 0.5, 36),
    "Demo - Minor Waltz": ([0, 3, 7, 3, 8, 7, 3, 2, 0, -2, -4, -5], [0, -4, -2, -5], 0.333, 30),
}


def ensure_demo_library(directory: Path, ffmpeg: str) -> Path:
    """Create the demo tracks in ``directory`` unless they exist; returns it."""
    directory.mkdir(parents=True, exist_ok=True)
    for title, (notes, bass, beat, seconds) in DEMO_TRACKS.items():
        target = directory / f"{title}.flac"
        if target.exists():
            continue
        partial = target.with_suffix(".partial.flac")
        argv = [
            ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"aevalsrc='{_melody(notes, bass, beat)}':s=44100:d={seconds}",
            "-ac", "2", "-c:a", "flac", "-f", "flac", str(partial),
        ]
        log.info("making demo track %s", target.name)
        subprocess.run(argv, check=True, timeout=120, capture_output=True)
        partial.rename(target)
    return directory
