"""Any http(s) URL, fetched through the SSRF-safe fetcher."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from urllib.parse import unquote, urlsplit

from transcode.seekable import MAX_MOOV_BYTES, FetchTail

from ..errors import NotAudio, UpstreamError
from ..media.catalog import Track, track_id_for
from ..media.upstream import BoundedSource, SizedStream, TailSource
from .base import CountBytes
from .fetch import SafeFetcher

__all__ = ["UrlSource"]

# Content types that are certainly not audio; anything else goes to ffmpeg,
# which is the real judge (upstreams often say application/octet-stream).
_NOT_AUDIO = ("text/", "application/json", "application/xml", "application/xhtml", "image/")


def _title_from_url(url: str) -> str:
    path = urlsplit(url).path.rstrip("/")
    name = unquote(path.rsplit("/", 1)[-1]) if path else ""
    if "." in name:
        name = name.rsplit(".", 1)[0]
    return name.replace("_", " ").strip() or urlsplit(url).hostname or url


class UrlSource(TailSource, BoundedSource):
    name = "url"

    def __init__(self, fetcher: SafeFetcher, *, max_bytes: int, count: CountBytes | None = None) -> None:
        self.fetcher = fetcher
        self.max_bytes = max_bytes
        self._count = count

    def accepts(self, url: str) -> bool:
        """The catch-all: every other URL is tried as a plain http(s) upstream."""
        return True

    async def register(self, url: str) -> Track:
        """Validate ``url`` (scheme, host policy, resolved address) and name its track."""
        normalized = await self.fetcher.check_url(url)
        return Track(
            id=track_id_for("url", normalized),
            source="url",
            locator=normalized,
            title=_title_from_url(normalized),
        )

    def open(self, track: Track) -> SizedStream:
        """The upstream's body; its ``size`` is the Content-Length (for the expected duration)."""
        sized = SizedStream()
        return sized.attach(self._body(track, sized))

    async def _body(self, track: Track, sized: SizedStream) -> AsyncGenerator[bytes, None]:
        async with self.fetcher.stream(track.locator, max_bytes=self.max_bytes) as response:
            ctype = response.headers.get("content-type", "").lower()
            if ctype.startswith(_NOT_AUDIO):
                raise NotAudio(f"the upstream answered {ctype.split(';')[0]}, not audio")
            sized.size = response.content_length
            async for piece in response.aiter_bytes():
                if self._count is not None:
                    self._count(len(piece))
                yield piece

    def tail_fetcher(self, track: Track, *, max_bytes: int = MAX_MOOV_BYTES) -> FetchTail:
        """``fetch_tail(offset)`` for ``transcode.seekable.prepare_input``: one Range request.

        Only a 206 whose Content-Range starts at ``offset`` is read (at most
        ``max_bytes``); a server that ignores ranges answers 200, which is
        refused unread, and ``prepare_input`` spools instead.
        """

        async def fetch_tail(offset: int) -> bytes:
            headers = {"Range": f"bytes={offset}-"}
            async with self.fetcher.stream(track.locator, max_bytes=max_bytes, headers=headers) as response:
                content_range = response.headers.get("content-range", "")
                if response.status != 206 or not content_range.startswith(f"bytes {offset}-"):
                    raise UpstreamError("the upstream does not answer Range requests", code="upstream_no_range")
                data = bytearray()
                async for piece in response.aiter_bytes():
                    if self._count is not None:
                        self._count(len(piece))
                    data += piece
                return bytes(data)

        return fetch_tail
