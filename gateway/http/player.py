"""The SoundCloud drop-in: ``/player/?url=`` and SoundCloud-shaped oEmbed.

A site that embeds ``https://w.soundcloud.com/player/?url=...`` swaps the host
name for the gateway's and changes nothing else (docs/soundcloud-dropin.md):

- ``GET /player/?url=<URL>``: the player page for an iframe
  (``client/sc-player.html`` + ``client/sc-player.js``), speaking SoundCloud's
  widget postMessage protocol. ``url`` is a soundcloud.com track (or set)
  link, an ``api.soundcloud.com/tracks/<id>`` URL, an M3U/PLS playlist URL,
  any http(s) audio URL the configuration allows, or a Ztream track URL
  (``/embed/{id}``, ``/v1/tracks/{id}``). A URL that cannot be played gives a
  page with the message inside the frame, with the error's HTTP status;
  ``&format=json`` gives the contract's JSON instead (and, on success, the
  resolved track list).
- ``dropin_oembed``: the ``/oembed`` answer for those URLs (and for
  ``/player/?url=`` URLs), in SoundCloud's shape, as JSON or XML.

Each entry is registered exactly as ``POST /v1/tracks`` registers a URL (the
configured sources, in order), so the ids are the same stable ids and every
host and address rule applies unchanged. Playlists fetched from a URL are
remembered for a minute: an embed seen by many listeners costs one fetch.
"""

from __future__ import annotations

import html
import json
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, urlencode, urlsplit
from xml.sax.saxutils import escape as xml_escape

from aiohttp import web

from ..errors import BadRequest, NotFound, TooManyRequests, Unsupported, ZtreamError
from ..media import CATALOG
from ..media.catalog import Track, is_track_id
from ..media.types import TrackJSON
from ..sources import FETCH_SOURCES, FETCHER
from ..sources.playlists import fetch_playlist, looks_like_playlist_url
from . import ORIGINS
from .client_address import request_client
from .origins import OriginPolicy
from .registration import charge_registration, check_registration, register_url
from .responses import endpoint

__all__ = ["setup_player", "dropin_oembed", "is_dropin_url", "Resolved", "PLAYER_HEIGHT", "VISUAL_HEIGHT", "SET_HEIGHT"]

# SoundCloud's embed heights: the classic bar, the visual player, a set with its list.
PLAYER_HEIGHT = 166
VISUAL_HEIGHT = 400
SET_HEIGHT = 450
MAX_URL = 4096
MAX_TRACKS = 100
MAX_SET_TRACKS = 500  # a SoundCloud set: the source resolves it in bounded batches, up to its own bound
PLAYLIST_TTL = 60.0
PLAYLIST_CACHE = 256

# The query parameters passed from an oEmbed request (or an oEmbed'd /player/ URL) into the iframe.
_PASSED_PARAMS = ("auto_play", "color", "show_comments", "visual", "show_artwork", "show_user",
                  "sharing", "buying", "download", "start_track", "single_active", "hide_related",
                  "show_playcount", "show_teaser")

_SC_SET_PAGE = re.compile(r"^/[^/]+/sets/[^/]+/?$")
_SC_API_PLAYLIST = re.compile(r"^/playlists/(?:soundcloud:playlists:)?\d{1,20}/?$")
_SC_HOSTS = frozenset({"soundcloud.com", "www.soundcloud.com", "m.soundcloud.com",
                       "api.soundcloud.com", "api-v2.soundcloud.com", "on.soundcloud.com"})

Kind = Literal["track", "playlist"]


@dataclass(frozen=True, slots=True)
class Resolved:
    """What a ``url`` stands for: one track or a playlist of them."""

    kind: Kind
    title: str
    tracks: tuple[TrackJSON, ...]
    permalink: str | None = None  # the page a listener would open (a SoundCloud link)


def _host(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").rstrip(".").lower()
    except ValueError:
        return ""


def is_soundcloud_set_url(url: str) -> bool:
    """A soundcloud.com ``/<user>/sets/<name>`` page or an API ``/playlists/<id>`` URL."""
    parts = urlsplit(url)
    host = _host(url)
    if host in ("soundcloud.com", "www.soundcloud.com", "m.soundcloud.com"):
        return _SC_SET_PAGE.match(parts.path) is not None
    if host in ("api.soundcloud.com", "api-v2.soundcloud.com"):
        return _SC_API_PLAYLIST.match(parts.path) is not None
    return False


def is_dropin_url(url: str, public_url: str) -> bool:
    """Whether ``/oembed`` answers ``url`` in SoundCloud's shape: a SoundCloud link or our /player/ URL."""
    if _host(url) in _SC_HOSTS:
        return True
    bare = url.split("#", 1)[0].split("?", 1)[0]
    return bare in (f"{public_url}/player", f"{public_url}/player/")


def _title_of_playlist(url: str) -> str:
    name = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0].replace("_", " ").strip() or _host(url) or "Playlist"


class _PlaylistCache:
    """url -> (expires, Resolved): bounded, oldest out first."""

    def __init__(self) -> None:
        self.entries: OrderedDict[str, tuple[float, Resolved]] = OrderedDict()

    def get(self, url: str, now: float) -> Resolved | None:
        hit = self.entries.get(url)
        if hit is None or hit[0] <= now:
            self.entries.pop(url, None)
            return None
        return hit[1]

    def put(self, url: str, value: Resolved, now: float) -> None:
        self.entries[url] = (now + PLAYLIST_TTL, value)
        self.entries.move_to_end(url)
        while len(self.entries) > PLAYLIST_CACHE:
            self.entries.popitem(last=False)


class PlayerResolver:
    """``url`` -> ``Resolved``, with the app's current sources (they change on a live reload)."""

    def __init__(self, app: web.Application, public_url: str) -> None:
        self.app = app
        self.public_url = public_url
        self.cache = _PlaylistCache()

    async def resolve(self, url: str, client: str) -> Resolved:
        """What ``url`` plays; any track it registers is on ``client``'s (an address's) share."""
        url = url.strip()
        if not url:
            raise BadRequest("the url parameter is required", code="bad_request")
        if len(url) > MAX_URL:
            raise BadRequest("the URL is too long", code="bad_url")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise BadRequest("url must be an http(s) URL", code="bad_url")
        own = self._own_track(url)
        if own is not None:
            track = await self.app[CATALOG].find(own)
            if track is None:
                raise NotFound(f"no track {own!r}", code="track_not_found")
            return Resolved("track", track.title, (track.public(self.public_url),), track.permalink)
        inner = self._inner_player_url(url)
        if inner is not None:
            return await self.resolve(inner, client)
        now = time.monotonic()
        cached = self.cache.get(url, now)
        if cached is not None:
            return cached
        if is_soundcloud_set_url(url):
            resolved = await self._soundcloud_set(url, client)
        elif looks_like_playlist_url(url):
            resolved = await self._playlist(url, client)
        else:
            track = await self._register(url, client)
            return Resolved("track", track.title, (track.public(self.public_url),), track.permalink)
        self.cache.put(url, resolved, now)
        return resolved

    def _own_track(self, url: str) -> str | None:
        bare = url.split("#", 1)[0].split("?", 1)[0].rstrip("/")
        for prefix in (f"{self.public_url}/embed/", f"{self.public_url}/v1/tracks/"):
            if bare.startswith(prefix) and is_track_id(bare[len(prefix):]):
                return bare[len(prefix):]
        return None

    def _inner_player_url(self, url: str) -> str | None:
        bare = url.split("#", 1)[0].split("?", 1)[0]
        if bare not in (f"{self.public_url}/player", f"{self.public_url}/player/"):
            return None
        inner = dict(parse_qsl(urlsplit(url).query)).get("url", "")
        if not inner or self._inner_player_url(inner) is not None:
            raise BadRequest("a /player/ URL needs a url parameter (not another /player/ URL)", code="bad_url")
        return inner

    async def _register(self, url: str, client: str) -> Track:
        """As ``POST /v1/tracks`` does, on ``client``'s share of registrations."""
        track, _ = await register_url(self.app, url, client)
        return track

    async def _playlist(self, url: str, client: str) -> Resolved:
        entries = await fetch_playlist(self.app[FETCHER], url)
        tracks: list[TrackJSON] = []
        first_error: ZtreamError | None = None
        for entry in entries[:MAX_TRACKS]:
            try:
                track = await self._register(entry.url, client)
            except TooManyRequests as exc:
                # The client's share is spent: the entries so far are the playlist.
                first_error = first_error or exc
                break
            except ZtreamError as exc:
                # one entry on a forbidden host does not sink the others
                first_error = first_error or exc
                continue
            public = track.public(self.public_url)
            if entry.title and track.source == "url":
                public["title"] = entry.title
            tracks.append(public)
        if not tracks:
            assert first_error is not None
            raise first_error
        return Resolved("playlist", _title_of_playlist(url), tuple(tracks))

    async def _soundcloud_set(self, url: str, client: str) -> Resolved:
        source = next((s for s in self.app[FETCH_SOURCES] if s.accepts(url)), None)
        register_set = getattr(source, "register_set", None)
        if register_set is None:
            if source is not None and getattr(source, "name", None) != "soundcloud":
                await source.register(url)  # SoundCloudDisabled: its clear 403
            raise BadRequest("this gateway's SoundCloud source does not resolve sets", code="soundcloud_not_a_track")
        # A set is SoundCloud's own list, not URLs of the client's choosing: it costs one registration.
        check_registration(self.app, client)
        title, permalink, found = await register_set(url)
        catalog = self.app[CATALOG]
        found = found[:MAX_SET_TRACKS]
        if any(catalog.get(t.id) is None for t in found):
            charge_registration(self.app, client)
        tracks = [catalog.add(t)[0].public(self.public_url) for t in found]
        for t in found:
            await catalog.shared(t.id)
        if not tracks:
            raise NotFound("this SoundCloud set has no playable track", code="soundcloud_not_found")
        return Resolved("playlist", title, tuple(tracks), permalink)


# -- the page ------------------------------------------------------------------------


def player_url(public_url: str, url: str, params: dict[str, str]) -> str:
    """``{public_url}/player/?url=...&<params>`` (SoundCloud's order: url first)."""
    extra = {k: v for k, v in params.items() if k in _PASSED_PARAMS and v != ""}
    query = "url=" + quote(url, safe="")
    if extra:
        query += "&" + urlencode(extra)
    return f"{public_url}/player/?{query}"


def _client_track(public_url: str, track: TrackJSON) -> dict[str, Any]:
    out: dict[str, Any] = dict(track)
    out["src"] = f"{public_url}/v1/tracks/{quote(str(track['id']))}"
    return out


def setup_player(app: web.Application, *, policy: OriginPolicy, render: Any) -> PlayerResolver:
    """Add ``GET /player`` and ``GET /player/``; returns the resolver (``/oembed`` shares it).

    ``render(template_name, values)`` fills a ``client/`` template (pages.py's renderer).
    """
    public_url = policy.public_url
    resolver = PlayerResolver(app, public_url)
    # SoundCloud's artwork lives on its CDN; the page frames nothing
    csp = policy.page_csp(https_images=True, frames=False)

    def page(status: int, *, title: str, message: str, data: dict[str, Any], url: str) -> web.Response:
        self_url = player_url(public_url, url, {}) if url else f"{public_url}/player/"
        oembed = f"{public_url}/oembed?url={quote(self_url, safe='')}"
        body = render(
            "sc-player.html",
            {
                "title": title,
                "message": message,
                "public_url": public_url,
                "oembed_json": oembed + "&format=json",
                "oembed_xml": oembed + "&format=xml",
                "player": json.dumps(data, separators=(",", ":")),
                "origins": json.dumps(policy.embedders()),
            },
        )
        return web.Response(
            text=body,
            status=status,
            content_type="text/html",
            headers={"Cache-Control": "no-cache", "Content-Security-Policy": csp},
        )

    async def player(request: web.Request) -> web.StreamResponse:
        url = request.query.get("url", "")
        if request.query.get("format") == "json":
            return await player_json(request)
        try:
            resolved = await resolver.resolve(url, request_client(request))
        except ZtreamError as exc:
            error = exc.to_json()
            return page(exc.status, title="Cannot play this", message=_message(exc), url=url,
                        data={"error": error})
        data = {
            "kind": resolved.kind,
            "title": resolved.title,
            "permalink": resolved.permalink,
            "tracks": [_client_track(public_url, t) for t in resolved.tracks],
        }
        return page(200, title=resolved.title, message="", data=data, url=url)

    @endpoint
    async def player_json(request: web.Request) -> web.Response:
        resolved = await resolver.resolve(request.query.get("url", ""), request_client(request))
        answer = {
            "kind": resolved.kind,
            "title": resolved.title,
            "permalink": resolved.permalink,
            "tracks": [_client_track(public_url, t) for t in resolved.tracks],
        }
        return web.json_response(answer, headers=policy.cors_headers(request))

    app.router.add_get("/player", player)
    app.router.add_get("/player/", player)
    return resolver


def _message(exc: ZtreamError) -> str:
    """What the frame says: short, for a listener (the detail is for the site's developer),
    plus, when a configuration key would fix it, the detail that names the key."""
    code = exc.to_json().get("error", "")
    if exc.setting:
        detail = exc.detail.rstrip(".")
        return f"{_short(code)} {detail[:1].upper()}{detail[1:]}."
    return _short(code)


def _short(code: str) -> str:
    if code in ("host_not_allowed", "upstream_forbidden", "soundcloud_disabled"):
        return "This gateway is not allowed to play this URL."
    if code in ("track_not_found", "upstream_not_found", "soundcloud_not_found"):
        return "This track was not found."
    if code in ("bad_url", "bad_request"):
        return "This is not a URL the player can play."
    return "This cannot be played here."


# -- oEmbed in SoundCloud's shape ---------------------------------------------------------


def _dimension(raw: str | None, name: str) -> int | None:
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 6 or int(raw) < 1:
        raise BadRequest(f"{name} must be a positive integer", code="bad_request")
    return int(raw)


def _author_url(permalink: str | None, public_url: str) -> str:
    if permalink:
        parts = urlsplit(permalink)
        segments = [s for s in parts.path.split("/") if s]
        if parts.hostname == "soundcloud.com" and segments:
            return f"https://soundcloud.com/{segments[0]}"
    return public_url + "/"


async def dropin_oembed(request: web.Request, resolver: PlayerResolver) -> web.Response:
    """``/oembed`` for a SoundCloud link or a ``/player/?url=`` URL, as SoundCloud answers it.

    ``version``, ``type: "rich"``, ``provider_name``, ``provider_url``,
    ``height``, ``width`` ("100%" unless ``maxwidth``), ``title``,
    ``description``, ``thumbnail_url``, ``author_name``, ``author_url`` and
    ``html`` (an iframe at ``/player/?url=...``); ``format=xml`` gives the
    same fields as oEmbed's XML (section 2.3.4).
    """
    public_url = resolver.public_url
    fmt = request.query.get("format", "json")
    if fmt not in ("json", "xml"):
        raise Unsupported(f"format {fmt!r} is not supported; use json or xml", code="format_not_implemented")
    url = request.query.get("url", "").strip()
    maxwidth = _dimension(request.query.get("maxwidth"), "maxwidth")
    maxheight = _dimension(request.query.get("maxheight"), "maxheight")
    params = {k: v for k, v in request.query.items() if k in _PASSED_PARAMS}
    target = url
    bare = url.split("#", 1)[0].split("?", 1)[0]
    if bare in (f"{public_url}/player", f"{public_url}/player/"):
        inner = dict(parse_qsl(urlsplit(url).query))
        target = inner.get("url", "")
        params = {**{k: v for k, v in inner.items() if k in _PASSED_PARAMS}, **params}
    resolved = await resolver.resolve(target, request_client(request))
    visual = params.get("visual", "").lower() in ("true", "1")
    default_height = VISUAL_HEIGHT if visual else SET_HEIGHT if resolved.kind == "playlist" else PLAYER_HEIGHT
    height = min(default_height, maxheight) if maxheight is not None else default_height
    width: int | str = maxwidth if maxwidth is not None else "100%"
    first = resolved.tracks[0]
    src = player_url(public_url, target, params)
    thumbnail = first.get("artwork_url") or first.get("artwork")
    author = first.get("artist") if resolved.kind == "track" else None
    iframe = (
        f'<iframe width="{width}" height="{height}" scrolling="no" frameborder="no" allow="autoplay" '
        f'src="{html.escape(src, quote=True)}" title="{html.escape(resolved.title, quote=True)}"></iframe>'
    )
    answer: dict[str, Any] = {
        "version": "1.0",
        "type": "rich",
        "provider_name": "Ztream",
        "provider_url": public_url + "/",
        "height": height,
        "width": width,
        "title": resolved.title,
        "description": None,
        "thumbnail_url": thumbnail or None,
        "author_name": author or "",
        "author_url": _author_url(resolved.permalink, public_url),
        "html": iframe,
    }
    headers = resolver_headers(request)
    if fmt == "xml":
        return web.Response(text=oembed_xml(answer), content_type="text/xml", charset="utf-8", headers=headers)
    return web.json_response(answer, headers=headers)


def resolver_headers(request: web.Request) -> dict[str, str]:
    return {**request.app[ORIGINS].cors_headers(request), "Cache-Control": "public, max-age=300"}


def oembed_xml(answer: dict[str, Any]) -> str:
    """oEmbed's XML form: ``<oembed>`` with one element per field, text escaped (null: empty)."""
    lines = ['<?xml version="1.0" encoding="utf-8" standalone="yes"?>', "<oembed>"]
    for key, value in answer.items():
        text = "" if value is None else str(value)
        lines.append(f"  <{key}>{xml_escape(text)}</{key}>")
    lines.append("</oembed>")
    return "\n".join(lines) + "\n"
