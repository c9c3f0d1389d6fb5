"""From a SoundCloud URL to the track's JSON, and from a track to its signed media URL.

* api-v2: ``/resolve`` and ``/tracks/<id>`` answer the track's JSON; its
  ``media.transcodings`` list the streams (:func:`parsing.choose_transcoding`
  picks one), and ``GET <transcoding.url>`` answers ``{"url": <signed URL>}``.
* official: ``/resolve`` then ``/tracks/<urn>/streams``; since November 2025
  that answers ``hls_aac_160_url`` (sometimes ``hls_aac_96_url``) and
  ``preview_mp3_128_url`` only, so the official path is HLS AAC (fMP4 with
  an ``EXT-X-MAP`` init section).

Sets (playlists): api-v2 ``/resolve`` or ``/playlists/<id>``, official
``/resolve`` (a redirect to ``/playlists/<urn>``) or ``/playlists/<urn>``.
api-v2 sends whole track objects for the first few tracks of a set and
only ids for the rest; those are fetched with ``/tracks?ids=`` (official:
``/tracks?urns=``) in batches of ``TRACK_BATCH``, at most
``MAX_SET_TRACKS / TRACK_BATCH`` requests for one set.

The track's JSON is cached for ``META_TTL`` (only for playable tracks:
nothing is cached for an error). The signed media URL expires within
minutes, so :meth:`Resolver.stream` asks for it every time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote, urljoin

from ...errors import Forbidden, NotFound, UpstreamError, ZtreamError
from ...netpolicy import parse_url
from .client import ApiClient, Reply
from .credentials import Credentials
from .errors import Unavailable
from .parsing import (
    SetInfo,
    SoundCloudRef,
    choose_official_stream,
    choose_transcoding,
    numeric_id,
    parse_soundcloud_url,
    playlist_info,
    track_info,
    tracks_answer,
)

__all__ = ["META_TTL", "Resolver", "Stream", "TRACK_BATCH"]

META_TTL = 600.0  # seconds a resolved track's JSON is reused
MAX_SHORT_HOPS = 3
TRACK_BATCH = 50  # ids per /tracks?ids= request (api-v2 refuses more)
_CACHE_LIMIT = 2048
_REDIRECTS = (301, 302, 303, 307, 308)


@dataclass(frozen=True, slots=True)
class Stream:
    """A signed media URL, how to play it, and whether it is a 30-second preview."""

    url: str
    protocol: Literal["hls", "progressive", "auto"]
    preview: bool


@dataclass(slots=True)
class _Entry:
    expires: float
    value: Any


@dataclass
class _TtlCache:
    clock: Callable[[], float]
    ttl: float
    entries: dict[str, _Entry] = field(default_factory=dict)

    def get(self, key: str) -> Any:
        entry = self.entries.get(key)
        if entry is None:
            return None
        if entry.expires <= self.clock():
            del self.entries[key]
            return None
        return entry.value

    def put(self, key: str, value: Any) -> None:
        now = self.clock()
        if len(self.entries) >= _CACHE_LIMIT:
            for stale in [k for k, e in self.entries.items() if e.expires <= now] or list(self.entries)[:256]:
                del self.entries[stale]
        self.entries[key] = _Entry(now + self.ttl, value)


class Resolver:
    """Resolves refs to track JSON (cached) and tracks to signed stream URLs (never cached)."""

    def __init__(self, client: ApiClient, credentials: Credentials, api_base: str) -> None:
        self._client = client
        self._credentials = credentials
        self.official = credentials.official
        self.api_base = api_base.rstrip("/")
        self._meta = _TtlCache(lambda: self._client.clock(), META_TTL)

    async def expand_short(self, code: str) -> SoundCloudRef:
        """Follow an ``on.soundcloud.com`` link one hop: its Location names the track page."""
        cached = self._meta.get(f"short:{code}")
        if isinstance(cached, SoundCloudRef):
            return cached
        short = self._client.site.short
        url = urljoin(short, quote(code))
        for _ in range(MAX_SHORT_HOPS):
            reply = await self._client.get(url, "short", follow=False)
            location = reply.headers.get("location")
            if reply.status in (404, 410):
                raise NotFound("this SoundCloud short link leads nowhere", code="soundcloud_not_found")
            if reply.status not in _REDIRECTS or not location:
                raise UpstreamError(f"the SoundCloud short link answered HTTP {reply.status}, not a redirect",
                                    code="upstream_status")
            target = urljoin(url, location)
            ref = parse_soundcloud_url(target)
            if ref.kind == "short":  # a short link to a short link
                url = urljoin(short, quote(ref.value))
                continue
            self._meta.put(f"short:{code}", ref)
            return ref
        raise UpstreamError("the SoundCloud short link redirects too often", code="too_many_redirects")

    async def _lookup(self, ref: SoundCloudRef, collection: Literal["tracks", "playlists"]) -> Reply:
        """A page ref through ``/resolve``, an id ref at ``/<collection>/<id>``
        (the official API names it by URN, ``soundcloud:<collection>:<id>``)."""
        api = self._credentials
        if ref.kind == "page":
            return await api.get(f"{self.api_base}/resolve", "resolve", {"url": ref.value})
        if self.official:
            return await api.get(f"{self.api_base}/{collection}/{quote(f'soundcloud:{collection}:' + ref.value)}", "resolve")
        return await api.get(f"{self.api_base}/{collection}/{ref.value}", "resolve")

    async def track_json(self, ref: SoundCloudRef, *, fresh: bool = False) -> dict[str, Any]:
        """The track's JSON, from the TTL cache or the API; only playable tracks are cached."""
        if not fresh:
            cached = self._meta.get(ref.cache_key)
            if cached is not None:
                return dict(cached)
        reply = await self._lookup(ref, "tracks")
        if reply.status != 200:
            raise api_error(reply, "track")
        data = self._client.json(reply)
        info = track_info(data, official=self.official)  # raises for what must not be cached
        self._meta.put(ref.cache_key, data)
        self._meta.put(f"id:{info.id}", data)
        return dict(data)

    async def set_json(self, ref: SoundCloudRef) -> SetInfo:
        """A set's JSON, checked and listed (not cached here: the player caches what it resolved)."""
        reply = await self._lookup(ref, "playlists")
        if reply.status != 200:
            raise api_error(reply, "set")
        return playlist_info(self._client.json(reply))

    async def set_tracks(self, info: SetInfo) -> list[dict[str, Any]]:
        """The playable tracks' JSON of a set, in the set's order.

        Stubs are completed with ``/tracks?ids=`` in batches; a track that
        SoundCloud leaves out of that answer (private, removed) or that is
        not playable (geo-blocked, not streamable, encrypted only) is
        skipped. Every playable track's JSON goes into the TTL cache, so
        registering and opening it asks SoundCloud nothing more.
        """
        missing = [entry.id for entry in info.entries if entry.data is None]
        fetched: dict[int, dict[str, Any]] = {}
        for start in range(0, len(missing), TRACK_BATCH):
            batch = missing[start:start + TRACK_BATCH]
            if self.official:
                params = {"urns": ",".join(f"soundcloud:tracks:{n}" for n in batch)}
            else:
                params = {"ids": ",".join(str(n) for n in batch)}
            reply = await self._credentials.get(f"{self.api_base}/tracks", "resolve", params)
            if reply.status != 200:
                raise api_error(reply, "set's tracks")
            fetched.update(tracks_answer(self._client.json(reply)))
        playable: list[dict[str, Any]] = []
        for entry in info.entries:
            data = entry.data if entry.data is not None else fetched.get(entry.id)
            if data is None:
                continue
            try:
                numeric = track_info(data, official=self.official).id
            except ZtreamError:
                continue  # one unplayable track does not sink the set
            if numeric != entry.id:
                continue
            self._meta.put(f"id:{numeric}", data)
            playable.append(dict(data))
        return playable

    async def stream(self, numeric: int, *, fresh: bool) -> Stream:
        """Resolve the signed media URL right now (and the track JSON, if stale or ``fresh``)."""
        data = await self.track_json(SoundCloudRef("id", str(numeric)), fresh=fresh)
        if self.official:
            return await self._official_stream(data)
        return await self._v2_stream(data, numeric, fresh=fresh)

    async def _v2_stream(self, data: dict[str, Any], numeric: int, *, fresh: bool) -> Stream:
        media = data.get("media")
        transcoding, preview = choose_transcoding(media.get("transcodings") if isinstance(media, dict) else None)
        params = {}
        if isinstance(data.get("track_authorization"), str):
            params["track_authorization"] = data["track_authorization"]
        reply = await self._credentials.get(transcoding["url"], "stream_url", params)
        if reply.status in (401, 403) and not fresh:
            # track_authorization may have expired with the cached JSON.
            return await self.stream(numeric, fresh=True)
        if reply.status != 200:
            raise api_error(reply, "stream")
        answer = self._client.json(reply)
        url = answer.get("url") if isinstance(answer, dict) else None
        if not isinstance(url, str) or not url:
            raise UpstreamError("SoundCloud's stream answer has no url", code="soundcloud_bad_answer")
        # choose_transcoding ranks only "progressive" and "hls" transcodings.
        protocol: Literal["hls", "progressive"] = "progressive" if transcoding["format"]["protocol"] == "progressive" \
            else "hls"
        return Stream(url=url, protocol=protocol, preview=preview)

    async def _official_stream(self, data: dict[str, Any]) -> Stream:
        # The official API names tracks by URN since 2025.
        urn = f"soundcloud:tracks:{numeric_id(data)}"
        reply = await self._credentials.get(f"{self.api_base}/tracks/{quote(urn)}/streams", "stream_url")
        if reply.status != 200:
            raise api_error(reply, "stream")
        url, protocol, preview = choose_official_stream(self._client.json(reply))
        if parse_url(url).origin == parse_url(self.api_base).origin:
            # An API URL wants the token and answers with a redirect to the
            # signed media URL, which must not get the token: stop at the hop.
            reply = await self._credentials.get(url, "stream_url", follow=False)
            if reply.status >= 400:
                raise api_error(reply, "stream")
            location = reply.headers.get("location")
            answer = self._client.json(reply) if reply.status == 200 else None
            if reply.status in _REDIRECTS and location:
                url = urljoin(url, location)
            elif isinstance(answer, dict) and isinstance(answer.get("url"), str):
                url = answer["url"]
            else:
                raise UpstreamError("SoundCloud's stream URL led to no media", code="soundcloud_bad_answer")
        return Stream(url=url, protocol=protocol, preview=preview)


def api_error(reply: Reply, what: str) -> ZtreamError:
    """The error for an API answer that is not 200 (``what``: "track" or "stream")."""
    status = reply.status
    if status in (404, 410):
        return NotFound(f"SoundCloud has no {what} here: it is private, removed or never existed",
                        code="soundcloud_not_found")
    if status == 403:
        return Forbidden(f"SoundCloud refuses access to this {what} (private or restricted)",
                         code="soundcloud_private")
    if status == 451:
        return Unavailable(f"SoundCloud does not offer this {what} here", code="soundcloud_geo_blocked")
    if status == 401:
        return UpstreamError("SoundCloud refused the gateway's credentials", code="soundcloud_unauthorized")
    return UpstreamError(f"SoundCloud answered HTTP {status} for the {what}", code="upstream_status")
