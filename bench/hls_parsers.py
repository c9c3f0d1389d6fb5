"""Our HLS parser against the ``m3u8`` package on hostile playlists (docs/hls.md has the results).

    .venv/bin/pip install --target /tmp/m3u8 'm3u8>=6,<7'
    PYTHONPATH=.:/tmp/m3u8 .venv/bin/python bench/hls_parsers.py [CASE-SUBSTRING...]

``m3u8`` is not a dependency of the gateway (docs/hls.md says why): install
it anywhere for this comparison only. For each case, each parser's outcome
(accepted with what, refused, or an exception that leaks), the time of one
plain run and the peak memory of a second run under ``tracemalloc``. First,
both parse a few valid playlists and must agree. Nothing is asserted on
time: this prints.
"""

from __future__ import annotations

import sys
import time
import tracemalloc
from collections.abc import Callable
from importlib import metadata

from gateway.sources import hls

try:
    import m3u8  # type: ignore[import-untyped]
except ImportError:
    sys.exit("this comparison needs the m3u8 package: see the docstring")

BASE = "https://cdn.example/a/playlist.m3u8"
MB = 1_000_000


def tags(line: str, size: int = 10 * MB) -> str:
    return "#EXTM3U\n" + line * (size // len(line)) + "#EXTINF:1,\na.ts\n#EXT-X-ENDLIST\n"


def keys(count: int) -> str:
    lines = "".join(f'#EXT-X-KEY:METHOD=NONE,URI="k{i}"\n' for i in range(count))
    return "#EXTM3U\n" + lines + "#EXTINF:1,\na.ts\n#EXT-X-ENDLIST\n"


CASES: dict[str, str] = {
    "10 MB of DISCONTINUITY tags": tags("#EXT-X-DISCONTINUITY\n"),
    "10 MB of comments": tags("# " + "x" * 60 + "\n"),
    "10 MB of EXT-X-MAP lines": tags('#EXT-X-MAP:URI="init.mp4"\n'),
    "10k distinct EXT-X-KEY NONE": keys(10_000),
    "20k distinct EXT-X-KEY NONE": keys(20_000),
    "1.9 MB of EXT-X-MAP lines": tags('#EXT-X-MAP:URI="init.mp4"\n', 1_900_000),
    "1.9 MB of comments": tags("# " + "x" * 60 + "\n", 1_900_000),
    "20k segments, absolute signed URLs": "#EXTM3U\n" + "".join(
        f"#EXTINF:9.98,\nhttps://cdn.example/m/{i}/x.mp3?Policy={'p' * 10}&Signature=s{i}\n" for i in range(20_000))
        + "#EXT-X-ENDLIST\n",
    "800k segments (10 MB)": "#EXTM3U\n" + "#EXTINF:1,\na.ts\n" * 800_000 + "#EXT-X-ENDLIST\n",
    "one 10 MB URI line": "#EXTM3U\n#EXTINF:1,\n" + "a" * (10 * MB) + ".ts\n#EXT-X-ENDLIST\n",
    "EXTINF:1e308 twice": "#EXTM3U\n#EXTINF:1e308,\na.ts\n#EXTINF:1e308,\nb.ts\n#EXT-X-ENDLIST\n",
    "EXTINF:inf": "#EXTM3U\n#EXTINF:inf,\na.ts\n#EXT-X-ENDLIST\n",
    "EXTINF:nan": "#EXTM3U\n#EXTINF:nan,\na.ts\n#EXT-X-ENDLIST\n",
    "EXTINF:-5": "#EXTM3U\n#EXTINF:-5,\na.ts\n#EXT-X-ENDLIST\n",
    "EXTINF:1e9 (31 years)": "#EXTM3U\n#EXTINF:1000000000,\na.ts\n#EXT-X-ENDLIST\n",
    "segment without EXTINF": "#EXTM3U\na.ts\n#EXT-X-ENDLIST\n",
    "javascript: segment": "#EXTM3U\n#EXTINF:1,\njavascript:alert(1)\n#EXT-X-ENDLIST\n",
    "file: segment": "#EXTM3U\n#EXTINF:1,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n",
    "data: segment": "#EXTM3U\n#EXTINF:1,\ndata:audio/mpeg;base64,AAAA\n#EXT-X-ENDLIST\n",
    "gopher: variant": "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\ngopher://h:70/x\n",
    "unclosed IPv6 host": "#EXTM3U\n#EXTINF:1,\nhttp://[::1/a.ts\n#EXT-X-ENDLIST\n",
    "port out of range": "#EXTM3U\n#EXTINF:1,\nhttp://h:99999/a.ts\n#EXT-X-ENDLIST\n",
    "NUL in a segment URI": "#EXTM3U\n#EXTINF:1,\na\x00b.ts\n#EXT-X-ENDLIST\n",
    "space in a segment URI": "#EXTM3U\n#EXTINF:1,\na b.ts\n#EXT-X-ENDLIST\n",
    "MAP URI javascript:": '#EXTM3U\n#EXT-X-MAP:URI="javascript:alert(1)"\n#EXTINF:1,\na.m4s\n#EXT-X-ENDLIST\n',
    "MAP URI file:": '#EXTM3U\n#EXT-X-MAP:URI="file:///etc/passwd"\n#EXTINF:1,\na.m4s\n#EXT-X-ENDLIST\n',
    "MAP BYTERANGE 10^21 bytes": '#EXTM3U\n#EXT-X-MAP:URI="i.mp4",BYTERANGE="999999999999999999999@0"\n'
                                 '#EXTINF:1,\na.m4s\n#EXT-X-ENDLIST\n',
    "MAP BYTERANGE garbage": '#EXTM3U\n#EXT-X-MAP:URI="i.mp4",BYTERANGE="x@y"\n#EXTINF:1,\na.m4s\n#EXT-X-ENDLIST\n',
    "MAP without URI": '#EXTM3U\n#EXT-X-MAP:BYTERANGE="10@0"\n#EXTINF:1,\na.m4s\n#EXT-X-ENDLIST\n',
    "MAP changing every segment (100k)": "#EXTM3U\n" + "".join(
        f'#EXT-X-MAP:URI="i{i}.mp4"\n#EXTINF:1,\ns{i}.m4s\n' for i in range(100_000)) + "#EXT-X-ENDLIST\n",
    "BYTERANGE with 5000 digits": "#EXTM3U\n#EXTINF:1,\n#EXT-X-BYTERANGE:" + "9" * 5000 + "@0\na.ts\n#EXT-X-ENDLIST\n",
    "MEDIA-SEQUENCE with 5000 digits": "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:" + "9" * 5000 + "\n#EXTINF:1,\na.ts\n",
    "BANDWIDTH with 5000 digits": "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=" + "9" * 5000 + "\nv.m3u8\n",
    "TARGETDURATION 1e308": "#EXTM3U\n#EXT-X-TARGETDURATION:1e308\n#EXTINF:1,\na.ts\n#EXT-X-ENDLIST\n",
    "KEY AES-128": '#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI="k"\n#EXTINF:1,\na.ts\n#EXT-X-ENDLIST\n',
    "KEY attribute list 1 MB of quotes": "#EXTM3U\n#EXT-X-KEY:METHOD=NONE," + 'A="' * 300_000 + "\n#EXTINF:1,\na.ts\n",
    "HTML page": "<html><body>login</body></html>",
    "master and media mixed": "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n#EXTINF:1,\na.ts\n",
}


# Valid playlists on which the two parsers must agree (segment URIs, durations, init sections).
VALID: dict[str, str] = {
    "ffmpeg fMP4 VOD": "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n#EXT-X-PLAYLIST-TYPE:VOD\n"
                       '#EXT-X-MAP:URI="init.mp4"\n#EXTINF:2.020136,\naac_0.m4s\n#EXTINF:1.996916,\naac_1.m4s\n'
                       "#EXT-X-ENDLIST\n",
    "SoundCloud MP3 (absolute signed URIs)": "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:1.985272,\n"
        "https://cf-hls-media.sndcdn.com/media/0/31762/Xy.128.mp3?Policy=p0&Signature=s0\n#EXTINF:9.978776,\n"
        "https://cf-hls-media.sndcdn.com/media/31762/191633/Xy.128.mp3?Policy=p1&Signature=s1\n#EXT-X-ENDLIST\n",
    "MAP changing midway": '#EXTM3U\n#EXT-X-MAP:URI="a.mp4"\n#EXTINF:2,\na0.m4s\n#EXT-X-DISCONTINUITY\n'
                           '#EXT-X-MAP:URI="b.mp4"\n#EXTINF:2,\nb0.m4s\n#EXT-X-ENDLIST\n',
    "CRLF, BOM, title with comma": "\ufeff#EXTM3U\r\n#EXTINF:3.5,title, with comma\r\na.ts\r\n#EXT-X-ENDLIST\r\n",
}


def agreement() -> None:
    for name, text in VALID.items():
        a = hls.parse_playlist(text, BASE)
        b = m3u8.loads(text, uri=BASE)
        assert isinstance(a, hls.MediaPlaylist)
        ours_view = [(s.uri, s.duration, s.init.uri if s.init else None) for s in a.segments]
        their_view = [(s.absolute_uri, s.duration, s.init_section.absolute_uri if s.init_section else None)
                      for s in b.segments]
        print(f"  {'agree' if ours_view == their_view else 'DIFFER'}: {name}")


def ours(text: str) -> str:
    playlist = hls.parse_playlist(text, BASE)
    if isinstance(playlist, hls.MasterPlaylist):
        return f"accepted: master, variant {playlist.variants[0].uri[:40]!r}"
    first = playlist.segments[0] if playlist.segments else None
    return (f"accepted: {len(playlist.segments)} segments, {playlist.duration:.3g} s"
            + (f", first {first.uri[:40]!r}" if first else "")
            + (f", init {first.init.uri[:30]!r} {first.init.byterange}" if first and first.init else ""))


def theirs(text: str) -> str:
    playlist = m3u8.loads(text, uri=BASE)
    if playlist.is_variant:
        return f"accepted: master, variant {playlist.playlists[0].absolute_uri[:40]!r}"
    segments = playlist.segments
    duration = sum(s.duration or 0 for s in segments)
    first = segments[0] if segments else None
    init = first.init_section if first else None
    return (f"accepted: {len(segments)} segments, {duration:.3g} s"
            + (f", first {first.absolute_uri[:40]!r}" if first else "")
            + (f", init {init.absolute_uri[:30]!r} {init.byterange!r}" if init else ""))


def attempt(parse: Callable[[str], str], text: str) -> str:
    try:
        return parse(text)
    except hls.PlaylistError as exc:
        return f"refused: PlaylistError({str(exc)[:70]})"
    except m3u8.ParseError as exc:
        return f"refused: ParseError({str(exc)[:60]})"
    except Exception as exc:  # what leaks out is the point of the measurement
        return f"RAISED {type(exc).__name__}({str(exc)[:60]})"


def run(parse: Callable[[str], str], text: str) -> tuple[str, float, float | None]:
    """Outcome, seconds (a plain run), peak MB allocated (a second run under tracemalloc, if the first was short)."""
    start = time.perf_counter()
    outcome = attempt(parse, text)
    elapsed = time.perf_counter() - start
    if elapsed > 5:
        return outcome, elapsed, None
    tracemalloc.start()
    attempt(parse, text)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return outcome, elapsed, peak / MB


def main() -> None:
    only = sys.argv[1:]
    print(f"python {sys.version.split()[0]}, m3u8 {metadata.version('m3u8')}\n\n## valid playlists")
    agreement()
    for name, text in CASES.items():
        if only and not any(o in name for o in only):
            continue
        print(f"\n## {name} ({len(text) / MB:.2f} MB)")
        for label, parse in (("ours", ours), ("m3u8", theirs)):
            outcome, elapsed, peak = run(parse, text)
            memory = f"{peak:7.1f} MB" if peak is not None else "      - MB"
            print(f"  {label:5} {elapsed * 1000:9.1f} ms {memory} peak  {outcome}")


if __name__ == "__main__":
    main()
