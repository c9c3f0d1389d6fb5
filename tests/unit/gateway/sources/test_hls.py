"""The pure HLS playlist parser (gateway.sources.hls): no I/O, synchronous."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sources import hls
from gateway.sources.hls import (
    ByteRange,
    EncryptedPlaylist,
    InitSection,
    MasterPlaylist,
    MediaPlaylist,
    PlaylistError,
    parse_attributes,
    parse_byterange,
    parse_playlist,
)

BASE = "https://cf-hls-media.sndcdn.com/media/a1b2/playlist.m3u8?Policy=xyz&Signature=abc"

# As ffmpeg writes it: -f hls -hls_segment_type fmp4 -hls_playlist_type vod
FFMPEG_FMP4 = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-MAP:URI="init.mp4"
#EXTINF:2.020136,
aac_0.m4s
#EXTINF:1.996916,
aac_1.m4s
#EXTINF:1.012336,
aac_2.m4s
#EXT-X-ENDLIST
"""

# SoundCloud's HLS MP3 shape: absolute, individually signed segment URLs.
SOUNDCLOUD_MP3 = """#EXTM3U
#EXT-X-VERSION:6
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-TARGETDURATION:10
#EXT-X-MEDIA-SEQUENCE:0
#EXTINF:1.985272,
https://cf-hls-media.sndcdn.com/media/0/31762/Xy.128.mp3?Policy=p0&Signature=s0&Key-Pair-Id=k
#EXTINF:9.978776,
https://cf-hls-media.sndcdn.com/media/31762/191633/Xy.128.mp3?Policy=p1&Signature=s1&Key-Pair-Id=k
#EXT-X-ENDLIST
"""


def test_ffmpeg_fmp4_playlist_with_map_and_relative_uris() -> None:
    playlist = parse_playlist(FFMPEG_FMP4, BASE)
    assert isinstance(playlist, MediaPlaylist)
    root = "https://cf-hls-media.sndcdn.com/media/a1b2/"
    assert [s.uri for s in playlist.segments] == [root + "aac_0.m4s", root + "aac_1.m4s", root + "aac_2.m4s"]
    assert [s.duration for s in playlist.segments] == [2.020136, 1.996916, 1.012336]
    assert all(s.init == InitSection(root + "init.mp4") for s in playlist.segments)
    assert playlist.endlist and playlist.complete and playlist.playlist_type == "VOD"
    assert playlist.target_duration == 2 and playlist.media_sequence == 0
    assert playlist.duration == pytest.approx(5.029388)
    kinds = [(r.kind, r.segment, r.uri.rsplit("/", 1)[1]) for r in playlist.requests()]
    assert kinds == [("init", 0, "init.mp4"), ("segment", 0, "aac_0.m4s"), ("segment", 1, "aac_1.m4s"),
                     ("segment", 2, "aac_2.m4s")]


def test_absolute_signed_segment_urls_are_kept_verbatim() -> None:
    playlist = parse_playlist(SOUNDCLOUD_MP3, BASE)
    assert isinstance(playlist, MediaPlaylist)
    assert playlist.segments[1].uri.endswith("Xy.128.mp3?Policy=p1&Signature=s1&Key-Pair-Id=k")
    assert all(s.init is None for s in playlist.segments)
    assert [r.kind for r in playlist.requests()] == ["segment", "segment"]


def test_resume_midway_sends_no_second_init() -> None:
    playlist = parse_playlist(FFMPEG_FMP4, BASE)
    assert isinstance(playlist, MediaPlaylist)
    # Nothing held yet: resuming at 1 starts with the init section.
    assert [r.kind for r in playlist.requests(1)] == ["init", "segment", "segment"]
    # The init written for segment 0 still applies to segment 1 (the same MAP),
    # even though a re-signed playlist has new URIs.
    resigned = parse_playlist(FFMPEG_FMP4, BASE.replace("a1b2", "c3d4"))
    assert isinstance(resigned, MediaPlaylist)
    assert [r.kind for r in resigned.requests(1, holding=0)] == ["segment", "segment"]
    assert [(r.kind, r.segment) for r in resigned.requests(0, holding=0)] == [
        ("segment", 0), ("segment", 1), ("segment", 2)]
    assert resigned.requests(3) == []


def test_map_changing_midway_is_requested_again() -> None:
    text = """#EXTM3U
#EXT-X-MAP:URI="a.mp4"
#EXTINF:2,
a0.m4s
#EXT-X-DISCONTINUITY
#EXT-X-MAP:URI="b.mp4"
#EXTINF:2,
b0.m4s
#EXTINF:2,
b1.m4s
#EXT-X-ENDLIST
"""
    playlist = parse_playlist(text, "http://h/x/p.m3u8")
    assert isinstance(playlist, MediaPlaylist)
    names = [r.uri.rsplit("/", 1)[1] for r in playlist.requests()]
    assert names == ["a.mp4", "a0.m4s", "b.mp4", "b0.m4s", "b1.m4s"]
    assert [r.uri.rsplit("/", 1)[1] for r in playlist.requests(2, holding=1)] == ["b1.m4s"]


def test_byteranges_for_map_and_segments() -> None:
    text = """#EXTM3U
#EXT-X-TARGETDURATION:4
#EXT-X-MAP:URI="main.mp4",BYTERANGE="720@0"
#EXTINF:4.0,
#EXT-X-BYTERANGE:1000@720
main.mp4
#EXTINF:4.0,
#EXT-X-BYTERANGE:1200
main.mp4
#EXTINF:2.5,
#EXT-X-BYTERANGE:500
main.mp4
#EXT-X-ENDLIST
"""
    playlist = parse_playlist(text, "http://h/a/list.m3u8")
    assert isinstance(playlist, MediaPlaylist)
    assert playlist.segments[0].init == InitSection("http://h/a/main.mp4", ByteRange(720, 0))
    assert [s.byterange for s in playlist.segments] == [ByteRange(1000, 720), ByteRange(1200, 1720),
                                                        ByteRange(500, 2920)]
    requests = playlist.requests()
    assert [r.byterange.header() for r in requests if r.byterange] == [
        "bytes=0-719", "bytes=720-1719", "bytes=1720-2919", "bytes=2920-3419"]


def test_map_byterange_without_offset_starts_at_zero() -> None:
    text = '#EXTM3U\n#EXT-X-MAP:URI="i.mp4",BYTERANGE="616"\n#EXTINF:1,\ns.m4s\n#EXT-X-ENDLIST\n'
    playlist = parse_playlist(text, "http://h/p.m3u8")
    assert isinstance(playlist, MediaPlaylist)
    assert playlist.segments[0].init == InitSection("http://h/i.mp4", ByteRange(616, 0))


def test_segment_byterange_without_offset_needs_a_previous_range() -> None:
    text = "#EXTM3U\n#EXTINF:1,\n#EXT-X-BYTERANGE:100\na.ts\n#EXT-X-ENDLIST\n"
    with pytest.raises(PlaylistError, match="no offset"):
        parse_playlist(text, "http://h/p.m3u8")


def test_master_playlist_lists_variants() -> None:
    text = """#EXTM3U
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-STREAM-INF:BANDWIDTH=165000,CODECS="mp4a.40.2",AUDIO="aac"
aac_160/playlist.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=100000,CODECS="mp4a.40.5"
https://other.example/aac_96.m3u8
"""
    playlist = parse_playlist(text, "https://h/tracks/1/master.m3u8")
    assert isinstance(playlist, MasterPlaylist)
    assert [(v.uri, v.bandwidth, v.codecs) for v in playlist.variants] == [
        ("https://h/tracks/1/aac_160/playlist.m3u8", 165000, "mp4a.40.2"),
        ("https://other.example/aac_96.m3u8", 100000, "mp4a.40.5"),
    ]


@pytest.mark.parametrize("method", ["AES-128", "SAMPLE-AES", "SAMPLE-AES-CTR"])
def test_encrypted_playlists_are_refused(method: str) -> None:
    text = f'#EXTM3U\n#EXT-X-KEY:METHOD={method},URI="https://k/key",IV=0x1234\n#EXTINF:2,\na.ts\n#EXT-X-ENDLIST\n'
    with pytest.raises(EncryptedPlaylist, match=method):
        parse_playlist(text, "http://h/p.m3u8")


def test_key_method_none_is_fine() -> None:
    text = "#EXTM3U\n#EXT-X-KEY:METHOD=NONE\n#EXTINF:2,\na.ts\n#EXT-X-ENDLIST\n"
    playlist = parse_playlist(text, "http://h/p.m3u8")
    assert isinstance(playlist, MediaPlaylist) and len(playlist.segments) == 1


def test_live_playlist_is_not_complete() -> None:
    text = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:41\n#EXTINF:2,\na41.ts\n"
    playlist = parse_playlist(text, "http://h/p.m3u8")
    assert isinstance(playlist, MediaPlaylist)
    assert not playlist.endlist and not playlist.complete and playlist.media_sequence == 41


def test_bom_crlf_blank_lines_and_unknown_tags() -> None:
    text = "\ufeff#EXTM3U\r\n\r\n#EXT-X-VERSION:3\r\n#EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:00:00Z\r\n" \
           "#EXTINF:3.5,title, with comma\r\n a.ts \r\n# a comment\r\n#EXT-X-ENDLIST\r\n"
    playlist = parse_playlist(text, "http://h/dir/p.m3u8")
    assert isinstance(playlist, MediaPlaylist)
    assert playlist.segments[0].uri == "http://h/dir/a.ts" and playlist.segments[0].duration == 3.5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "EXTM3U"),
        ("<html>not a playlist</html>", "EXTM3U"),
        ("#EXTM3U\na.ts\n", "no #EXTINF"),
        ("#EXTM3U\n#EXTINF:abc,\na.ts\n", "not a number"),
        ("#EXTM3U\n#EXTINF:-1,\na.ts\n", "out of range"),
        ("#EXTM3U\n#EXT-X-MAP:BYTERANGE=\"1@0\"\n", "without URI"),
        ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n#EXTINF:1,\na.ts\n", "mixes"),
        ("#EXTM3U\n#EXTINF:1,\n#EXT-X-BYTERANGE:x@y\na.ts\n", "malformed byte range"),
    ],
)
def test_malformed_playlists(text: str, message: str) -> None:
    with pytest.raises(PlaylistError, match=message):
        parse_playlist(text, "http://h/p.m3u8")


def test_attribute_lists() -> None:
    assert parse_attributes('URI="a,b.mp4",BYTERANGE="10@0"') == {"URI": "a,b.mp4", "BYTERANGE": "10@0"}
    assert parse_attributes("METHOD=AES-128, IV=0x00ff") == {"METHOD": "AES-128", "IV": "0x00ff"}
    with pytest.raises(PlaylistError):
        parse_attributes("not an attribute list")


def test_byterange_parsing() -> None:
    assert parse_byterange("10@5", previous_end=None) == ByteRange(10, 5)
    assert parse_byterange("10", previous_end=7) == ByteRange(10, 7)
    assert ByteRange(10, 5).header() == "bytes=5-14" and ByteRange(10, 5).end == 15


def test_all_is_exported() -> None:
    assert sorted(hls.__all__) == sorted(n for n in hls.__all__ if hasattr(hls, n))
    assert {"parse_playlist", "MediaPlaylist", "MasterPlaylist", "PlaylistError"} <= set(hls.__all__)


# -- untrusted input: every cost bounded, every refusal a PlaylistError ----------------------------

ONE = "#EXTINF:1,\na.ts\n#EXT-X-ENDLIST\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("#EXTM3U\n#EXTINF:1,\njavascript:alert(1)\n", "not an http"),
        ("#EXTM3U\n#EXTINF:1,\nfile:///etc/passwd\n", "not an http"),
        ("#EXTM3U\n#EXTINF:1,\ndata:audio/mpeg;base64,AAAA\n", "not an http"),
        ("#EXTM3U\n#EXTINF:1,\nhttps://user:pw@cdn.example/a.ts\n", "not an http"),
        ("#EXTM3U\n#EXTINF:1,\nhttp:///a.ts\n", "not an http"),
        ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\ngopher://h:70/x\n", "not an http"),
        ('#EXTM3U\n#EXT-X-MAP:URI="javascript:alert(1)"\n' + ONE, "not an http"),
        ('#EXTM3U\n#EXT-X-MAP:URI="file:///etc/passwd"\n' + ONE, "not an http"),
        ("#EXTM3U\n#EXTINF:1,\nhttp://[::1\n", "malformed"),
        ("#EXTM3U\n#EXTINF:1,\n//[x]/a.ts\n", "malformed"),
        ("#EXTM3U\n#EXTINF:1,\nhttp://h:port/a.ts\n", "malformed"),
        ("#EXTM3U\n#EXTINF:1,\nhttp://h:99999/a.ts\n", "malformed"),
        ("#EXTM3U\n#EXTINF:1,\na\x00b.ts\n", "control characters"),
        ("#EXTM3U\n#EXTINF:1,\na b.ts\n", "whitespace"),
        ("#EXTM3U\n#EXTINF:1,\na\x85b.ts\n", "control characters"),
        ("#EXTM3U\n#EXTINF:nan,\na.ts\n", "out of range"),
        ("#EXTM3U\n#EXTINF:inf,\na.ts\n", "out of range"),
        ("#EXTM3U\n#EXTINF:1e308,\na.ts\n", "out of range"),
        ("#EXTM3U\n#EXTINF:1000000000,\na.ts\n", "out of range"),
        ("#EXTM3U\n#EXT-X-TARGETDURATION:1e308\n" + ONE, "out of range"),
        ("#EXTM3U\n#EXTINF:1,\n#EXT-X-BYTERANGE:" + "9" * 5000 + "@0\na.ts\n", "malformed byte range"),
        ('#EXTM3U\n#EXT-X-MAP:URI="i.mp4",BYTERANGE="' + "9" * 16 + '@0"\n' + ONE, "malformed byte range"),
        ("#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:" + "9" * 5000 + "\n" + ONE, "decimal integer"),
        ("#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:4.5\n" + ONE, "decimal integer"),
        ("#EXTM3U\n" + "#EXT-X-DISCONTINUITY\n" * (hls.MAX_PLAYLIST_CHARS // 21 + 1) + ONE, "characters"),
        ("#EXTM3U\n#EXTINF:1,\n" + "a" * hls.MAX_LINE_CHARS + ".ts\n", "line over"),
        ("#EXTM3U\n" + '#EXT-X-MAP:URI="i.mp4"\n' * (hls.MAX_ATTRIBUTE_TAGS + 1) + ONE, "EXT-X-MAP/KEY/STREAM-INF"),
        ("#EXTM3U\n" + "#EXT-X-KEY:METHOD=NONE\n" * (hls.MAX_ATTRIBUTE_TAGS + 1) + ONE, "EXT-X-MAP/KEY/STREAM-INF"),
        ("#EXTM3U\n" + "#EXTINF:1,\na.ts\n" * (hls.MAX_SEGMENTS + 1), "segments"),
    ],
)
def test_hostile_playlists_are_refused(text: str, message: str) -> None:
    with pytest.raises(PlaylistError, match=message):
        parse_playlist(text, "https://cdn.example/a/p.m3u8")


def test_limits_leave_real_playlists_alone() -> None:
    segments = "".join(f"#EXTINF:9.98,\nhttps://cf-hls-media.sndcdn.com/media/{i}/Xy.128.mp3?Policy=" + "p" * 400
                       + f"&Signature=s{i}\n" for i in range(hls.MAX_SEGMENTS // 100))
    playlist = parse_playlist("#EXTM3U\n#EXT-X-TARGETDURATION:10\n" + segments + "#EXT-X-ENDLIST\n", BASE)
    assert isinstance(playlist, MediaPlaylist) and len(playlist.segments) == hls.MAX_SEGMENTS // 100
    day = parse_playlist("#EXTM3U\n#EXTINF:86400,\nHTTPS://cdn.example/a.ts\n", BASE)
    assert isinstance(day, MediaPlaylist) and day.duration == hls.MAX_SEGMENT_SECONDS


def test_huge_bandwidth_is_ignored_not_a_crash() -> None:
    playlist = parse_playlist("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=" + "9" * 5000 + "\nv.m3u8\n", BASE)
    assert isinstance(playlist, MasterPlaylist) and playlist.variants[0].bandwidth is None


def test_only_lf_ends_a_line() -> None:
    # str.splitlines would also split at U+2028, U+0085, FF...: a title must not smuggle a URI line in.
    text = "#EXTM3U\n#EXTINF:1,title\u2028https://evil.example/x.ts\na.ts\n#EXT-X-ENDLIST\n"
    playlist = parse_playlist(text, "https://cdn.example/a/p.m3u8")
    assert isinstance(playlist, MediaPlaylist)
    assert [s.uri for s in playlist.segments] == ["https://cdn.example/a/a.ts"]



# A grammar of playlist lines, hostile values included, so that generated texts reach deep into the parser.
TAGS = ["#EXTINF:", "#EXT-X-MAP:URI=", "#EXT-X-MAP:BYTERANGE=", "#EXT-X-BYTERANGE:", "#EXT-X-KEY:METHOD=",
        "#EXT-X-STREAM-INF:BANDWIDTH=", "#EXT-X-MEDIA-SEQUENCE:", "#EXT-X-TARGETDURATION:", "#EXT-X-ENDLIST",
        "#EXT-X-PLAYLIST-TYPE:", "#EXT-X-DISCONTINUITY", "#", "#EXTM3U"]
VALUES = ["1", "2.5,", "12.5,title", "9" * 30, "-1", "nan", "inf", "1e308", "10@0", "10", "x@y", "@", "NONE", "AES-128",
          '"i.mp4"', '"i.mp4",BYTERANGE="5"', '"javascript:x"', '"http://["', ",", "=", '"', "VOD", "\x00", " "]
URIS = ["a.ts", "http://h/x.ts", "HTTPS://H/x", "javascript:x", "file:///etc/passwd", "//h/x", "//[x]/a", "/abs",
        "..", "http://[", "http://[::1", "http://h:port/", "http://h:99999/", "http://u@h/", "a b", "a\x00b",
        "a\u2028b", "a\x85b", "%zz", "é.ts", "?q", "#frag"]
LINE = st.one_of(
    st.tuples(st.sampled_from(TAGS), st.lists(st.sampled_from(VALUES), max_size=3)).map(lambda t: t[0] + "".join(t[1])),
    st.sampled_from(URIS),
    st.text(max_size=12),
)


@given(st.lists(LINE, max_size=30), st.sampled_from(["\n", "\r\n", "\r"]))
@settings(max_examples=600, deadline=None)
def test_any_text_is_a_playlist_or_a_playlist_error(lines: list[str], end: str) -> None:
    text = "#EXTM3U" + end + end.join(lines)
    try:
        playlist = parse_playlist(text, "https://cdn.example/a/p.m3u8")
    except PlaylistError:
        return
    if isinstance(playlist, MediaPlaylist):
        uris = [s.uri for s in playlist.segments] + [s.init.uri for s in playlist.segments if s.init]
    else:
        uris = [v.uri for v in playlist.variants]
    assert all(uri.lower().startswith(("http://", "https://")) for uri in uris)
