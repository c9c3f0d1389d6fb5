"""HTTP to SoundCloud on top of SafeFetcher's per-hop checks, with the shared back-off.

SafeFetcher's public API only GETs, follows every redirect and turns error
statuses into exceptions; SoundCloud needs a POST (the token), one
unfollowed redirect (short links) and the statuses themselves (401, 403,
429, Retry-After). :class:`Http` builds those from the fetcher's own
per-hop primitive ``SafeFetcher.open``, so every request still goes through
the same address checks. :class:`ApiClient` adds what every request to
SoundCloud shares: the clock, where the site lives, the 429 back-off during
which nothing is sent, and the request counter.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from ...errors import UpstreamError
from ..base import CountBytes
from ..fetch import SafeFetcher, UpstreamResponse
from .errors import RateLimited
from .parsing import retry_after_seconds

__all__ = ["API_MAX_BYTES", "ApiClient", "Http", "Opened", "Reply", "SiteEndpoints"]

log = logging.getLogger("ztream.soundcloud")

API_MAX_BYTES = 2_000_000  # one API answer (track JSON, stream URLs, token)
DEFAULT_RETRY_AFTER = 60.0  # a 429 without a usable Retry-After
MAX_RETRY_AFTER = 3600.0


@dataclass(frozen=True, slots=True)
class SiteEndpoints:
    """Where SoundCloud's public web site lives (client-id discovery, short links).

    Not configuration: tests point these at a fake SoundCloud.
    """

    page: str = "https://soundcloud.com/"
    assets: str = "https://a-v2.sndcdn.com/assets/"
    short: str = "https://on.soundcloud.com/"


@dataclass(slots=True)
class Reply:
    """A small answer, read whole (the body only for 2xx)."""

    status: int
    url: str
    headers: httpx.Headers
    body: bytes


@dataclass(slots=True)
class Opened:
    """An answer whose body is still unread."""

    status: int
    url: str
    headers: httpx.Headers
    body: UpstreamResponse


class Http:
    """GET with redirects, a single hop (POST, or a redirect left unfollowed), statuses kept.

    Every hop goes through ``SafeFetcher.open`` (one lookup, every address
    checked, the connection pinned to it). Every body byte read is counted.
    """

    def __init__(self, fetcher: SafeFetcher, count: CountBytes | None) -> None:
        self.fetcher = fetcher
        self.count = count

    @contextlib.asynccontextmanager
    async def open(self, url: str, *, max_bytes: int, headers: Mapping[str, str] | None = None,
                   method: str = "GET", body: bytes | None = None, follow: bool = True) -> AsyncIterator[Opened]:
        """Send the request; yield the final response with its body unread.

        Raises BadRequest, Forbidden, UpstreamError, UpstreamTimeout as
        ``SafeFetcher.stream`` does, but never for an HTTP status.
        """
        async with self.fetcher.open(url, max_bytes=max_bytes, headers=headers, method=method, body=body,
                                     follow_redirects=follow) as response:
            yield Opened(response.status, response.url, response.headers, response)

    async def read(self, opened: Opened, limit: int | None = None) -> bytes:
        """The whole body; ``limit`` refuses a bigger one with UpstreamError."""
        out = bytearray()
        async for piece in opened.body.aiter_bytes():
            if self.count is not None:
                self.count(len(piece))
            out += piece
            if limit is not None and len(out) > limit:
                raise UpstreamError(f"SoundCloud sent more than {limit} bytes where a small document was expected",
                                    code="soundcloud_bad_answer")
        return bytes(out)

    async def request(self, url: str, *, max_bytes: int, headers: Mapping[str, str] | None = None,
                      method: str = "GET", body: bytes | None = None, follow: bool = True) -> Reply:
        """A small document whole; the body is read for 2xx answers only."""
        async with self.open(url, max_bytes=max_bytes, headers=headers, method=method, body=body,
                             follow=follow) as opened:
            data = await self.read(opened) if 200 <= opened.status < 300 else b""
        return Reply(opened.status, opened.url, opened.headers, data)


class ApiClient:
    """What every request to SoundCloud shares: clock, site, back-off, request counts.

    ``clock`` and ``site`` are plain attributes, read at every use, so that
    whoever holds the client (tests too) may swap them.
    """

    def __init__(self, fetcher: SafeFetcher, count: CountBytes | None, *, site: SiteEndpoints,
                 clock: Callable[[], float]) -> None:
        self.http = Http(fetcher, count)
        self.site = site
        self.clock = clock
        self.backoff_until = 0.0
        # Requests by purpose ("token", "discovery", "resolve", "stream_url",
        # "short"), for tests and the admin page.
        self.requests: Counter[str] = Counter()

    def check_backoff(self) -> None:
        """Raise RateLimited while a 429 back-off runs: SoundCloud is not asked at all."""
        if self.backoff_until > self.clock():
            raise RateLimited("SoundCloud is rate limiting the gateway; try again later",
                              retry_at=self.backoff_until, clock=self.clock)

    def rate_limited(self, headers: httpx.Headers) -> RateLimited:
        """Start (or extend) the back-off a 429 asks for; the error to raise."""
        seconds = retry_after_seconds(headers.get("retry-after"), time.time())
        seconds = min(MAX_RETRY_AFTER, max(1.0, seconds if seconds is not None else DEFAULT_RETRY_AFTER))
        self.backoff_until = max(self.backoff_until, self.clock() + seconds)
        log.warning("SoundCloud answered 429; backing off for %.0f s", seconds)
        return RateLimited("SoundCloud is rate limiting the gateway; try again later",
                           retry_at=self.backoff_until, clock=self.clock)

    async def get(self, url: str, purpose: str, *, headers: Mapping[str, str] | None = None,
                  follow: bool = True) -> Reply:
        """One API GET: refused at once while backing off, 429 starts a back off."""
        self.check_backoff()
        self.requests[purpose] += 1
        reply = await self.http.request(url, max_bytes=API_MAX_BYTES, headers=headers, follow=follow)
        if reply.status == 429:
            raise self.rate_limited(reply.headers)
        return reply

    @staticmethod
    def json(reply: Reply) -> Any:
        """The reply's JSON; UpstreamError(code="soundcloud_bad_answer") if it is none."""
        try:
            return json.loads(reply.body)
        except ValueError:
            raise UpstreamError("SoundCloud answered something that is not JSON",
                                code="soundcloud_bad_answer") from None
