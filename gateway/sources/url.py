"""Any http(s) URL, fetched through the SSRF-safe fetcher."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import unquote, urlsplit

from ..errors import NotAudio
from ..media.catalog import Track, track_id_for
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


class UrlSource:
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

    async def open(self, track: Track) -> AsyncIterator[bytes]:
        async with self.fetcher.stream(track.locator, max_bytes=self.max_bytes) as response:
            ctype = response.headers.get("content-type", "").lower()
            if ctype.startswith(_NOT_AUDIO):
                raise NotAudio(f"the upstream answered {ctype.split(';')[0]}, not audio")
            async for piece in response.aiter_bytes():
                if self._count is not None:
                    self._count(len(piece))
                yield piece
