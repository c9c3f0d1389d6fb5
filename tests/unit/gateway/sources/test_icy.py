"""The ICY metadata demuxer (gateway/sources/icy.py), fed at every split."""

from __future__ import annotations

import pytest

from gateway.media.upstream import NowPlaying
from gateway.sources.icy import IcyDemuxer, IcyError, parse_metaint, stream_title


def block(text: bytes) -> bytes:
    padded = text + b"\x00" * (-len(text) % 16)
    return bytes([len(padded) // 16]) + padded


AUDIO = bytes(range(256)) * 4
METAINT = 100


def icy_body(titles: list[bytes | None]) -> bytes:
    """AUDIO cut every METAINT bytes, each cut followed by a block (None: an empty one)."""
    body = bytearray()
    for n, offset in enumerate(range(0, len(AUDIO), METAINT)):
        piece = AUDIO[offset : offset + METAINT]
        body += piece
        if len(piece) == METAINT:
            title = titles[n % len(titles)]
            body += b"\x00" if title is None else block(b"StreamTitle='" + title + b"';StreamUrl='';")
    return bytes(body)


def run(body: bytes, cuts: list[int]) -> tuple[bytes, list[str]]:
    demuxer = IcyDemuxer(METAINT)
    audio, titles = bytearray(), []
    last = 0
    for cut in [*cuts, len(body)]:
        for item in demuxer.feed(body[last:cut]):
            if isinstance(item, NowPlaying):
                titles.append(item.title)
            else:
                audio += item
        last = cut
    return bytes(audio), titles


def test_audio_comes_out_whole_and_titles_once_per_change_at_every_split() -> None:
    body = icy_body([b"A - One", None, b"A - One", b"B - Two", b"Caf\xc3\xa9 - It's"])
    expected_titles = ["A - One", "B - Two", "Café - It's", "A - One", "B - Two", "Café - It's"]
    audio, titles = run(body, [])
    assert audio == AUDIO
    assert titles == expected_titles
    for cut in range(1, len(body)):
        assert run(body, [cut]) == (AUDIO, expected_titles), cut
    # Byte by byte.
    assert run(body, list(range(1, len(body)))) == (AUDIO, expected_titles)


def test_titles_latin1_empty_and_missing() -> None:
    assert stream_title(b"StreamTitle='Caf\xe9';\x00\x00") == "Café"
    assert stream_title(b"StreamTitle='';") == ""
    assert stream_title(b"StreamUrl='x';") is None
    assert stream_title(b"StreamTitle='a';b';StreamUrl='u';") == "a';b"
    assert stream_title(b"StreamTitle='bell\x07';") == "bell"


@pytest.mark.parametrize("value", ["0", "-5", "abc", "99999999", "１２"])
def test_bad_metaint_is_refused(value: str) -> None:
    with pytest.raises(IcyError):
        parse_metaint(value)


def test_metaint_parses() -> None:
    assert parse_metaint(None) is None
    assert parse_metaint(" 16000 ") == 16000


@pytest.mark.parametrize(("status", "headers", "live"), [
    (200, {"content-type": "audio/mpeg", "icy-name": "Radio"}, True),
    (200, {"content-type": "audio/mpeg", "icy-metaint": "16000", "content-length": "5"}, True),
    (200, {"content-type": "audio/ogg"}, True),
    (200, {"content-type": "audio/wav", "transfer-encoding": "chunked"}, False),
    (200, {"content-type": "audio/mpeg", "transfer-encoding": "chunked", "icy-br": "128"}, True),
    (200, {"content-type": "application/ogg"}, True),
    (200, {"content-type": "audio/mpeg", "content-length": "123456"}, False),
    (200, {"content-type": "audio/mpegurl"}, False),
    (200, {"content-type": "audio/x-scpls"}, False),
    (200, {"content-type": "application/octet-stream"}, False),
    (200, {"content-type": "text/html"}, False),
    (404, {"content-type": "audio/mpeg", "icy-name": "Radio"}, False),
])
def test_a_live_answer_is_told_by_its_headers(status: int, headers: dict[str, str], live: bool) -> None:
    import httpx

    from gateway.sources.url import is_live_answer

    assert is_live_answer(status, httpx.Headers(headers)) is live
