"""gateway.sources.ogg_titles against chained Ogg streams ffmpeg writes (Opus, Vorbis, FLAC), fed in pieces."""

from __future__ import annotations

import base64
import random
import subprocess
from pathlib import Path

import pytest

from bench.harness import ffmpeg_bin
from gateway.media.upstream import NowPlaying
from gateway.sources.ogg_titles import MAX_COMMENTS, MAX_PAGE, OggTitles, comment_title

ENCODERS = {"opus": "libopus", "vorbis": "libvorbis", "flac": "flac"}


def ogg(path: Path, codec: str, freq: int, **tags: str) -> bytes:
    """Two seconds of tone in Ogg, with ``tags`` as its comments."""
    meta = [arg for key, value in tags.items() for arg in ("-metadata", f"{key}={value}")]
    subprocess.run([ffmpeg_bin(), "-v", "error", "-y", "-f", "lavfi", "-i", f"sine=f={freq}:d=2",
                    "-c:a", ENCODERS[codec], *meta, "-f", "ogg", str(path)], check=True, timeout=60)
    return path.read_bytes()


def fed(data: bytes, seed: int = 0, most: int = 5000) -> list[NowPlaying]:
    titles, rng, pos = OggTitles(), random.Random(seed), 0
    out: list[NowPlaying] = []
    while pos < len(data):
        n = rng.randint(1, most)
        out += titles.feed(data[pos : pos + n])
        pos += n
    assert len(titles._buf) <= MAX_PAGE
    return out


@pytest.mark.parametrize("codec", ENCODERS)
def test_each_stream_of_a_chain_gives_its_title(tmp_path: Path, codec: str) -> None:
    first = ogg(tmp_path / "a.ogg", codec, 440, title="First Song", artist="Ärtist Öne")
    second = ogg(tmp_path / "b.ogg", codec, 660, TITLE="Second Song")
    third = ogg(tmp_path / "c.ogg", codec, 550)  # no title: cleared
    chain = first + second + third + first
    want = [NowPlaying("Ärtist Öne - First Song"), NowPlaying("Second Song"), NowPlaying(""),
            NowPlaying("Ärtist Öne - First Song")]
    for seed in range(5):
        assert fed(chain, seed) == want
    assert fed(chain, most=1)[:2] == want[:2]  # a byte at a time
    # The same title twice in a row is one event.
    assert fed(first + first) == want[:1]


def test_junk_between_and_inside_is_skipped(tmp_path: Path) -> None:
    first = ogg(tmp_path / "a.ogg", "opus", 440, title="One")
    second = ogg(tmp_path / "b.ogg", "opus", 660, title="Two")
    junk = bytes(random.Random(7).randrange(256) for _ in range(20_000)) + b"OggS\x07" + b"OggS"
    assert fed(junk + first + junk + second) == [NowPlaying("One"), NowPlaying("Two")]
    # A first page cut short (a listener joined mid-page): the next stream still names itself.
    assert fed(first[100:] + second) == [NowPlaying("Two")]


def test_comments_past_the_bound_give_no_title_and_hold_nothing(tmp_path: Path) -> None:
    # Embedded cover art: a comment header far over MAX_COMMENTS.
    art = base64.b64encode(random.Random(3).randbytes(MAX_COMMENTS)).decode()
    big = ogg(tmp_path / "big.ogg", "vorbis", 440, title="Hidden", METADATA_BLOCK_PICTURE=art)
    small = ogg(tmp_path / "small.ogg", "vorbis", 660, title="Shown")
    assert fed(big + small) == [NowPlaying("Shown")]


def test_random_bytes_never_raise_nor_grow() -> None:
    rng = random.Random(11)
    titles = OggTitles()
    for _ in range(300):
        assert titles.feed(rng.randbytes(rng.randint(0, 9000))) == []
        assert len(titles._buf) <= MAX_PAGE


def test_comment_blocks_cut_or_lying() -> None:
    block = (b"OpusTags" + (3).to_bytes(4, "little") + b"ven" + (2).to_bytes(4, "little")
             + (10).to_bytes(4, "little") + b"TITLE=Song" + (9).to_bytes(4, "little") + b"ARTIST=Me")
    assert comment_title(block, 8) == "Me - Song"
    assert comment_title(block[:-3], 8) == "Song"  # cut inside the second comment
    lying = b"OpusTags" + (1 << 31).to_bytes(4, "little")
    assert comment_title(lying, 8) == ""
    many = b"OpusTags" + (0).to_bytes(4, "little") + (1 << 30).to_bytes(4, "little")
    assert comment_title(many, 8) == ""
    control = (b"OpusTags" + (0).to_bytes(4, "little") + (1).to_bytes(4, "little")
               + (12).to_bytes(4, "little") + b"title=A\x00\x1b\nB\xff")
    assert comment_title(control, 8) == "AB\ufffd"
