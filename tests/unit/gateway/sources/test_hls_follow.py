"""The generic HLS follower (gateway.sources.hls_follow) on a plain HLS server on loopback.

No SoundCloud here: the server is any signed-URL HLS upstream, and the
follower is driven only through its small interface, ``resolve(fresh) ->
Target``. Segment bodies are distinct byte patterns, so every assertion on
the output is exact: each init section and segment once, in order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from gateway.errors import Forbidden, NotAudio, NotFound, UpstreamError, ZtreamError
from gateway.sources.fetch import SafeFetcher
from gateway.sources.hls_follow import MAX_RENEWALS, FollowPolicy, HlsFollower, Target
from tests.support.browser import serve_on_loopback

SEGMENTS = 6
INIT = b"INIT:ftyp+moov:" * 40
BODIES = [bytes([65 + i]) * (3000 + 257 * i) for i in range(SEGMENTS)]


def media_playlist(*, with_map: bool = True, endlist: bool = True, count: int = SEGMENTS) -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-TARGETDURATION:2", "#EXT-X-PLAYLIST-TYPE:VOD" if endlist else ""]
    if with_map:
        lines.append('#EXT-X-MAP:URI="init.mp4"')
    for i in range(count):
        lines += ["#EXTINF:2.0,", f"seg{i}.m4s"]
    if endlist:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(line for line in lines if line) + "\n"


def byterange_playlist() -> str:
    """The init section and every segment as byte ranges of one resource, ``all.mp4``."""
    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:2", f'#EXT-X-MAP:URI="all.mp4",BYTERANGE="{len(INIT)}@0"']
    for i, body in enumerate(BODIES):
        lines += ["#EXTINF:2.0,", f"#EXT-X-BYTERANGE:{len(body)}" + (f"@{len(INIT)}" if i == 0 else ""), "all.mp4"]
    return "\n".join(lines + ["#EXT-X-ENDLIST"]) + "\n"


@dataclass
class PlainHls:
    """An HLS upstream whose URLs carry a signature: ``/s<sig>/...``.

    ``expire[sig] = n`` refuses segments ``n..`` of signature ``sig`` with 403,
    as a CDN does once a signed URL has expired. ``log`` lists every request.
    """

    base: str = ""
    expire: dict[int, int] = field(default_factory=dict)
    playlists: dict[int, str] = field(default_factory=dict)  # sig -> another playlist text
    honour_range: bool = True
    log: list[tuple[int, str, int]] = field(default_factory=list)  # (sig, file, status)
    received: list[int] = field(default_factory=list)  # what the consumer held at each refusal
    consumer: list[bytes] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/s{sig:\\d+}/{file}", self.serve)
        return app

    async def serve(self, request: web.Request) -> web.StreamResponse:
        sig, name = int(request.match_info["sig"]), request.match_info["file"]
        status, body, ctype = self._answer(sig, name)
        if status == 403:
            self.received.append(len(self.consumer))
        range_header = request.headers.get("Range")
        if status == 200 and range_header and self.honour_range:
            first, last = (int(n) for n in range_header.removeprefix("bytes=").split("-"))
            body, status = body[first : last + 1], 206
        self.log.append((sig, name, status))
        return web.Response(status=status, body=body, content_type=ctype)

    def _answer(self, sig: int, name: str) -> tuple[int, bytes, str]:
        if name.endswith(".m3u8"):
            text = self.playlists.get(sig) or {
                "playlist.m3u8": media_playlist(),
                "master.m3u8": '#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=160000,CODECS="mp4a.40.2"\nplaylist.m3u8\n',
                "bytes.m3u8": byterange_playlist(),
                "live.m3u8": media_playlist(endlist=False),
            }.get(name)
            if text is None:
                return 404, b"", "text/plain"
            return 200, text.encode(), "application/vnd.apple.mpegurl"
        if name == "init.mp4":
            return 200, INIT, "video/mp4"
        if name == "all.mp4":
            return 200, INIT + b"".join(BODIES), "video/mp4"
        if name == "page.html":
            return 200, b"<html>a login page</html>", "text/html"
        if name == "audio.mp3":
            return 200, b"".join(BODIES), "audio/mpeg"
        if name.startswith("seg") and name.endswith(".m4s"):
            index = int(name[3:-4])
            if index >= SEGMENTS:
                return 404, b"", "text/plain"
            if sig in self.expire and index >= self.expire[sig]:
                return 403, b"Request has expired", "text/plain"
            return 200, BODIES[index], "video/iso.segment"
        return 404, b"", "text/plain"


@dataclass
class Resolutions:
    """The follower's only view of the upstream: every call signs anew (``/s1/``, ``/s2/``...)."""

    base: str
    file: str = "playlist.m3u8"
    kind: str = "hls"
    calls: list[bool] = field(default_factory=list)

    async def __call__(self, fresh: bool) -> Target:
        self.calls.append(fresh)
        return Target(f"{self.base}/s{len(self.calls)}/{self.file}", self.kind)  # type: ignore[arg-type]


@pytest.fixture
async def upstream() -> AsyncIterator[PlainHls]:
    server = PlainHls()
    runner, port = await serve_on_loopback(server.app())
    server.base = f"http://127.0.0.1:{port}"
    yield server
    await runner.cleanup()


@pytest.fixture
def counted() -> list[int]:
    """The size of every body piece the follower read, as the byte metric sees them."""
    return []


@pytest.fixture
async def follower(upstream: PlainHls, counted: list[int]) -> AsyncIterator[HlsFollower]:
    port = upstream.base.rsplit(":", 1)[1]
    fetcher = SafeFetcher(allow_hosts=[f"127.0.0.1:{port}"])
    yield HlsFollower(fetcher, max_bytes=10_000_000, count=counted.append)
    await fetcher.aclose()


async def drain(follower: HlsFollower, resolve: Resolutions, sink: list[bytes]) -> bytes:
    async for piece in follower.follow(resolve):
        sink.append(piece)
    return b"".join(sink)


async def test_plain_playlist_is_followed_in_order(
    upstream: PlainHls, follower: HlsFollower, counted: list[int]
) -> None:
    resolve = Resolutions(upstream.base)
    pieces: list[bytes] = []
    assert await drain(follower, resolve, pieces) == INIT + b"".join(BODIES)
    assert pieces == [INIT, *BODIES]  # one piece per init section / segment, each whole
    assert resolve.calls == [False]
    assert upstream.log == [(1, "playlist.m3u8", 200), (1, "init.mp4", 200)] + [
        (1, f"seg{i}.m4s", 200) for i in range(SEGMENTS)]
    # Every body byte read was counted, the playlist's too.
    assert sum(counted) == len(media_playlist()) + len(INIT) + sum(map(len, BODIES))


@pytest.mark.parametrize("expire_at", [0, 3, SEGMENTS - 1])
async def test_mid_stream_403_re_resolves_and_resumes_at_that_segment(
    upstream: PlainHls, follower: HlsFollower, expire_at: int
) -> None:
    upstream.expire[1] = expire_at  # the first signature expires at that segment
    resolve = Resolutions(upstream.base)
    out = await drain(follower, resolve, upstream.consumer)
    assert out == INIT + b"".join(BODIES)  # nothing lost, nothing twice
    assert resolve.calls == [False, True]  # re-resolved once, asking for a fresh URL
    assert upstream.log == (
        [(1, "playlist.m3u8", 200), (1, "init.mp4", 200)]
        + [(1, f"seg{i}.m4s", 200) for i in range(expire_at)]
        + [(1, f"seg{expire_at}.m4s", 403), (2, "playlist.m3u8", 200)]
        # The consumer holds the init section already: the new signature starts at the refused segment.
        + [(2, f"seg{i}.m4s", 200) for i in range(expire_at, SEGMENTS)]
    )
    # The refusal came while the consumer was already playing what preceded it: streamed, not buffered.
    assert upstream.received == [1 + expire_at]


async def test_refusals_are_bounded(upstream: PlainHls, follower: HlsFollower) -> None:
    for sig in range(1, 10):
        upstream.expire[sig] = 2  # every signature is refused at segment 2
    resolve = Resolutions(upstream.base)
    with pytest.raises(Forbidden) as info:
        await drain(follower, resolve, upstream.consumer)
    assert info.value.code == "upstream_media_refused"
    assert resolve.calls == [False] + [True] * MAX_RENEWALS
    assert [entry for entry in upstream.log if entry[2] == 403] == [(s, "seg2.m4s", 403) for s in range(1, 5)]
    assert upstream.consumer == [INIT, BODIES[0], BODIES[1]]


async def test_resigned_playlist_listing_other_segments_is_refused(upstream: PlainHls, follower: HlsFollower) -> None:
    upstream.expire[1] = 2
    upstream.playlists[2] = media_playlist(count=SEGMENTS - 1)
    with pytest.raises(UpstreamError) as info:
        await drain(follower, Resolutions(upstream.base), upstream.consumer)
    assert info.value.code == "hls_changed"
    assert upstream.consumer == [INIT, BODIES[0], BODIES[1]]


async def test_master_playlist_plays_its_first_variant(upstream: PlainHls, follower: HlsFollower) -> None:
    upstream.expire[1] = 4
    resolve = Resolutions(upstream.base, file="master.m3u8")
    assert await drain(follower, resolve, []) == INIT + b"".join(BODIES)
    assert [entry[1] for entry in upstream.log[:3]] == ["master.m3u8", "playlist.m3u8", "init.mp4"]
    assert (2, "master.m3u8", 200) in upstream.log and (2, "seg4.m4s", 200) in upstream.log


@pytest.mark.parametrize("honour_range", [True, False])
async def test_byte_ranges_of_one_resource(upstream: PlainHls, follower: HlsFollower, honour_range: bool) -> None:
    upstream.honour_range = honour_range  # a server that ignores Range sends it all; the follower cuts
    pieces: list[bytes] = []
    assert await drain(follower, Resolutions(upstream.base, file="bytes.m3u8"), pieces) == INIT + b"".join(BODIES)
    assert pieces == [INIT, *BODIES]
    assert {entry[2] for entry in upstream.log[1:]} == {206 if honour_range else 200}


async def test_a_progressive_target_passes_through(upstream: PlainHls, follower: HlsFollower) -> None:
    # "auto": the answer's content type (audio/mpeg) says it is no playlist.
    resolve = Resolutions(upstream.base, file="audio.mp3", kind="auto")
    assert await drain(follower, resolve, []) == b"".join(BODIES)
    assert resolve.calls == [False]


@pytest.mark.parametrize(("file", "error", "code"), [
    ("live.m3u8", UpstreamError, "hls_live"),
    ("missing.m3u8", NotFound, "upstream_not_found"),
    ("init.mp4", UpstreamError, "hls_bad_playlist"),  # said to be a playlist, is not one
])
async def test_errors_name_what_went_wrong(
    upstream: PlainHls, follower: HlsFollower, file: str, error: type[ZtreamError], code: str
) -> None:
    with pytest.raises(error) as info:
        await drain(follower, Resolutions(upstream.base, file=file), [])
    assert info.value.code == code and info.value.detail


async def test_text_answer_for_progressive_is_not_audio(upstream: PlainHls, follower: HlsFollower) -> None:
    with pytest.raises(NotAudio) as info:
        await drain(follower, Resolutions(upstream.base, file="page.html", kind="progressive"), [])
    assert "text/html" in info.value.detail


async def test_a_policy_guards_every_request_and_names_the_upstream(upstream: PlainHls) -> None:
    port = upstream.base.rsplit(":", 1)[1]
    fetcher = SafeFetcher(allow_hosts=[f"127.0.0.1:{port}"])

    class Budget(FollowPolicy):
        name = "Example CDN"
        left = 3

        def before_request(self) -> None:
            self.left -= 1
            if self.left < 0:
                raise UpstreamError("out of budget", code="budget")

    follower = HlsFollower(fetcher, max_bytes=10_000_000, policy=Budget())
    try:
        with pytest.raises(UpstreamError) as info:
            await drain(follower, Resolutions(upstream.base), [])
        assert info.value.code == "budget"
        assert [entry[1] for entry in upstream.log] == ["playlist.m3u8", "init.mp4", "seg0.m4s"]
    finally:
        await fetcher.aclose()

