"""The SoundCloud :class:`~gateway.sources.base.Source`: register resolves, open plays.

Registering resolves once, for the id and the metadata, which the resolver
caches. ``open`` runs once per transcode (the transcoder is single-flight):
it resolves the signed media URL right before fetching and hands it to the
generic :class:`~gateway.sources.hls_follow.HlsFollower`, which re-resolves
through the same callable when SoundCloud refuses a segment midway and
resumes at that segment. SoundCloud's per-client-id stream limits thus
see one resolution per transcode, never one per listener.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator, Callable

import httpx

from ...config import SoundCloudConfig
from ...errors import Forbidden, NotFound, UpstreamError, ZtreamError
from ...media.catalog import Track, track_id_for
from ...media.upstream import BoundedSource
from ..base import CountBytes
from ..fetch import SafeFetcher
from ..hls_follow import FollowPolicy, HlsFollower, Target
from .client import ApiClient, SiteEndpoints
from .credentials import Credentials
from .parsing import TrackInfo, is_soundcloud_url, locator_id, parse_soundcloud_set_url, parse_soundcloud_url, track_info
from .resolver import Resolver

__all__ = ["SoundCloudDisabled", "SoundCloudSource"]


class SoundCloudDisabled:
    """Stands in for the SoundCloud source when no credentials are configured.

    It takes SoundCloud URLs so that none falls through to the URL source:
    the gateway never fetches SoundCloud's web pages.
    """

    def accepts(self, url: str) -> bool:
        return is_soundcloud_url(url)

    async def register(self, url: str) -> Track:
        raise Forbidden(
            "SoundCloud is not configured on this gateway ([sources.soundcloud] client_id)",
            code="soundcloud_disabled",
        )


class _MediaPolicy(FollowPolicy):
    """SoundCloud's words and codes for the follower, and its 429 back-off."""

    name = "SoundCloud"

    def __init__(self, client: ApiClient) -> None:
        self._client = client

    def before_request(self) -> None:
        self._client.check_backoff()

    def status_error(self, status: int, headers: httpx.Headers) -> ZtreamError:
        if status == 429:
            return self._client.rate_limited(headers)
        if status in (404, 410):
            return NotFound("SoundCloud's media is gone", code="soundcloud_media_gone")
        return super().status_error(status, headers)

    def bad_answer(self, detail: str) -> ZtreamError:
        return UpstreamError(detail, code="soundcloud_bad_answer")

    def refused(self) -> ZtreamError:
        return Forbidden("SoundCloud refused its own signed media URL", code="soundcloud_media_refused")


class SoundCloudSource(BoundedSource):
    name = "soundcloud"

    def __init__(
        self,
        fetcher: SafeFetcher,
        config: SoundCloudConfig,
        *,
        max_bytes: int,
        count: CountBytes | None = None,
        site: SiteEndpoints | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Build the source.

        Takes the shared fetcher, the ``[sources.soundcloud]`` section (its
        ``client_id`` must be set; ``"auto"`` discovers one, api-v2 only),
        the byte limit for one track's media, and the byte counter.

        Raises:
            ValueError: no client_id, or "auto" together with a client_secret.
        """
        self._client = ApiClient(fetcher, count, site=site or SiteEndpoints(), clock=clock)
        self._credentials = Credentials(self._client, config)
        self.official = self._credentials.official
        self.auto = self._credentials.auto
        self.config = config
        self.api_base = config.api_base.rstrip("/")
        self.auth_base = self._credentials.auth_base
        self.max_bytes = max_bytes
        self._resolver = Resolver(self._client, self._credentials, self.api_base)
        self._follower = HlsFollower(fetcher, max_bytes=max_bytes, count=count, policy=_MediaPolicy(self._client))

    # The clock, the site and the request counts live in the shared client;
    # these keep them settable on the source (tests swap the clock and site).

    @property
    def clock(self) -> Callable[[], float]:
        return self._client.clock

    @clock.setter
    def clock(self, clock: Callable[[], float]) -> None:
        self._client.clock = clock

    @property
    def site(self) -> SiteEndpoints:
        return self._client.site

    @site.setter
    def site(self, site: SiteEndpoints) -> None:
        self._client.site = site

    @property
    def requests(self) -> Counter[str]:
        """Requests by purpose ("token", "discovery", "resolve", "stream_url", "short")."""
        return self._client.requests

    # -- the Source interface ------------------------------------------------

    def accepts(self, url: str) -> bool:
        """Every SoundCloud URL, so none falls through to a plain page fetch."""
        return is_soundcloud_url(url)

    async def register(self, url: str) -> Track:
        """Resolve ``url`` to its track (metadata only; the stream is resolved in ``open``).

        Raises BadRequest (not a track URL), NotFound (removed or private),
        Forbidden, Unavailable, RateLimited, UpstreamError, UpstreamTimeout.
        """
        ref = parse_soundcloud_url(url)
        if ref.kind == "short":
            ref = await self._resolver.expand_short(ref.value)
        return self._track(track_info(await self._resolver.track_json(ref), official=self.official))

    async def register_set(self, url: str) -> tuple[str, str | None, list[Track]]:
        """Resolve a set URL to (title, permalink, tracks): its playable tracks, in the set's order.

        Takes ``soundcloud.com/<user>/sets/<name>`` and
        ``api(-v2).soundcloud.com/playlists/<id>``. Every track is resolved
        here, also those beyond the few api-v2 sends whole, up to
        ``parsing.MAX_SET_TRACKS``; private, removed, geo-blocked or
        not-streamable tracks are left out. The tracks are the same
        ``Track``s :meth:`register` gives for their own URLs (the same ids).

        Raises BadRequest (not a set URL, or the URL names no set), NotFound
        (the set is private or removed, or has no playable track), and the
        API errors of :meth:`register`.
        """
        ref = parse_soundcloud_set_url(url)
        info = await self._resolver.set_json(ref)
        found = await self._resolver.set_tracks(info)
        tracks = [self._track(track_info(data, official=self.official)) for data in found]
        if not tracks:
            raise NotFound("this SoundCloud set has no track the gateway can play", code="soundcloud_not_found")
        return info.title, info.permalink, tracks

    @staticmethod
    def _track(info: TrackInfo) -> Track:
        title = f"{info.title} (preview)" if info.preview else info.title
        return Track(
            id=track_id_for("soundcloud", f"tracks:{info.id}"),
            source="soundcloud",
            locator=f"soundcloud:tracks:{info.id}",
            title=title,
            duration=info.duration,
            artist=info.artist,
            artwork=info.artwork,
            permalink=info.permalink,
            preview=info.preview,
        )

    async def open(self, track: Track) -> AsyncIterator[bytes]:
        """The track's media bytes (progressive, or HLS init + segments in order).

        Resolves the signed media URL first, and again (up to
        ``hls_follow.MAX_RENEWALS`` times) when SoundCloud refuses it midway,
        resuming at the refused segment. Raises the errors of
        :meth:`register`, plus NotAudio (encrypted HLS, an HTML answer),
        TooLarge.
        """
        numeric = locator_id(track.locator)
        if numeric is None:
            raise NotFound(f"not a SoundCloud track locator: {track.locator!r}", code="track_not_found")

        async def resolve(fresh: bool) -> Target:
            stream = await self._resolver.stream(numeric, fresh=fresh)
            if stream.preview and not track.preview:
                # Never pass a 30 s snippet off as the track that was registered.
                raise Forbidden("SoundCloud now offers only a preview of this track", code="soundcloud_preview_only")
            return Target(stream.url, stream.protocol)

        async for piece in self._follower.follow(resolve):
            yield piece
