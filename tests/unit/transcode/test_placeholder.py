"""The placeholder artwork: each track its own diagonal gradient, the colours the client draws too."""

from __future__ import annotations

import subprocess

from transcode.artwork import jpeg_size, placeholder_artwork, placeholder_colours
from transcode.ffmpeg import find_ffmpeg

FF = find_ffmpeg("")


def hsl(hue: int, s: float, lightness: float) -> tuple[int, int, int]:
    import colorsys

    r, g, b = colorsys.hls_to_rgb(hue / 360, lightness, s)
    return round(r * 255), round(g * 255), round(b * 255)


def test_colours_are_the_clients() -> None:
    # tests/js/waveform-art.test.mjs pins the same hues for the same track (client/format.js placeholderArt).
    assert placeholder_colours("Night Drive", "Band") == (hsl(284, 0.62, 0.46), hsl(7, 0.70, 0.28))
    assert placeholder_colours("night_drive") == (hsl(56, 0.62, 0.46), hsl(145, 0.70, 0.28))


def corners(jpeg: bytes) -> tuple[list[int], list[int]]:
    rgb = subprocess.run([FF, "-hide_banner", "-loglevel", "error", "-i", "pipe:0", "-f", "rawvideo", "-pix_fmt", "rgb24",
                          "pipe:1"], input=jpeg, capture_output=True, check=True).stdout
    side = 500
    top_left = list(rgb[(10 * side + 10) * 3 : (10 * side + 10) * 3 + 3])
    bottom_right = list(rgb[(490 * side + 490) * 3 : (490 * side + 490) * 3 + 3])
    return top_left, bottom_right


def test_a_gradient_per_track_not_a_flat_square() -> None:
    jpeg = placeholder_artwork(FF, "Night Drive", "Band")
    assert jpeg_size(jpeg) == (500, 500)
    top_left, bottom_right = corners(jpeg)
    first, second = placeholder_colours("Night Drive", "Band")
    assert all(abs(a - b) <= 8 for a, b in zip(top_left, first, strict=True)), (top_left, first)
    assert all(abs(a - b) <= 8 for a, b in zip(bottom_right, second, strict=True)), (bottom_right, second)
    assert placeholder_artwork(FF, "Other", "Band") != jpeg
    assert placeholder_artwork(FF, "Night Drive", "Band") is jpeg  # kept
