"""A fake SoundCloud on loopback: api-v2, the official API, OAuth, the site, and media.

One aiohttp app plays every SoundCloud host (point ``api_base`` at
``{base}/v2`` or ``{base}/api``, ``auth_base`` at ``{base}``, and the source's
``SiteEndpoints`` at ``{base}/``, ``{base}/assets/``, ``{base}/on/``):

* ``/v2/resolve``, ``/v2/tracks/{id}``, ``/v2/media/{id}/{form}``: api-v2 with a
  ``client_id`` query parameter (401 for an unknown one);
* ``/oauth/token`` (POST, Basic auth, client credentials) and ``/api/resolve``
  (302 to ``/api/tracks/{urn}``), ``/api/tracks/{urn}``,
  ``/api/tracks/{urn}/streams`` and the stream URLs it lists (302 to media):
  the official API with ``Authorization: OAuth <token>``;
* sets: ``/v2/resolve`` of a ``/<user>/sets/<name>`` page and ``/v2/playlists/{id}``
  (whole track objects for the first ``set_full`` tracks, bare ids for the rest,
  as api-v2 does), ``/v2/tracks?ids=`` (at most ``TRACK_BATCH_LIMIT`` ids, 400
  beyond; private tracks left out; answered in reverse order, since SoundCloud
  promises no order); ``/api/resolve`` (302 to ``/api/playlists/{urn}``),
  ``/api/playlists/{urn}`` and ``/api/tracks?urns=`` for the official API;
* ``/`` and ``/assets/*.js``: the site's page and script bundles, one of which
  holds ``client_id:"..."``; ``/on/{code}``: short links (302 to the page URL);
* ``/media/...``: media made by the real ffmpeg (:func:`build_media`), behind
  signatures: progressive MP3, HLS MP3 in MPEG-TS segments with absolute
  query-signed URIs (SoundCloud's shape), HLS fMP4 AAC with ``EXT-X-MAP`` and
  relative URIs (the signature is a path component), and a short preview.

Knobs for tests: ``valid_client_ids`` / ``site_client_id``, ``revoke_tokens()``,
``rate_limit`` (endpoint -> Retry-After), ``expire_at`` (track id -> segment
from which the track's first signature is refused with 403). ``hits`` counts
requests by endpoint, ``media_log`` lists every media request, ``batches``
every ``/tracks?ids=``/``?urns=`` request's ids.
"""

from __future__ import annotations

import base64
import secrets
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

from aiohttp import web

from tests.support.audio import ffmpeg_bin, make_audio

CLIENT_ID = "a" * 16 + "B" * 8 + "0123456C"  # 32 alphanumerics, like the real ones
TRACK_BATCH_LIMIT = 50  # ids one /tracks?ids= request may carry
ROTATED_CLIENT_ID = "Z" * 20 + "9876543210ab"
OFFICIAL_ID = "official-app-id"
OFFICIAL_SECRET = "official-app-secret"

# Seconds of each generated medium; the tests compare decoded durations to these.
SECONDS = {"progressive": 8.0, "hls_mp3": 9.0, "hls_aac": 9.0, "preview": 3.0}

_MIME = {".mp3": "audio/mpeg", ".ts": "video/mp2t", ".m4s": "video/iso.segment", ".mp4": "video/mp4",
         ".m3u8": "application/vnd.apple.mpegurl"}


def _ffmpeg_hls(source: Path, out: Path, *, fmp4: bool) -> None:
    out.mkdir()
    if fmp4:
        args = ["-c:a", "aac", "-b:a", "128k", "-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4",
                "-hls_segment_filename", str(out / "aac_%d.m4s")]
    else:
        args = ["-c:a", "libmp3lame", "-b:a", "128k", "-hls_segment_type", "mpegts",
                "-hls_segment_filename", str(out / "mp3_%d.ts")]
    subprocess.run(
        [ffmpeg_bin(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i", str(source), *args,
         "-f", "hls", "-hls_time", "2", "-hls_playlist_type", "vod", str(out / "playlist.m3u8")],
        check=True, timeout=120,
    )


def build_media(directory: Path) -> Path:
    """Make every medium the fake serves, with the real ffmpeg; returns ``directory``."""
    make_audio(directory / "progressive.mp3", SECONDS["progressive"], freq=440, fmt="mp3")
    make_audio(directory / "preview.mp3", SECONDS["preview"], freq=880, fmt="mp3")
    make_audio(directory / "hls_mp3.wav", SECONDS["hls_mp3"], freq=330, fmt="wav")
    make_audio(directory / "hls_aac.wav", SECONDS["hls_aac"], freq=550, fmt="wav")
    _ffmpeg_hls(directory / "hls_mp3.wav", directory / "hls_mp3", fmp4=False)
    _ffmpeg_hls(directory / "hls_aac.wav", directory / "hls_aac", fmp4=True)
    return directory


@dataclass(frozen=True)
class Form:
    """One api-v2 transcoding: how it is described and which medium it serves."""

    preset: str
    protocol: str  # "progressive" | "hls" | "ctr-encrypted-hls"
    mime: str
    medium: str  # key of SECONDS
    snipped: bool = False


MP3_PROGRESSIVE = Form("mp3_1_0", "progressive", "audio/mpeg", "progressive")
MP3_HLS = Form("mp3_0_0", "hls", "audio/mpeg", "hls_mp3")
AAC_HLS = Form("aac_160k", "hls", 'audio/mp4; codecs="mp4a.40.2"', "hls_aac")
OPUS_HLS = Form("opus_0_0", "hls", 'audio/ogg; codecs="opus"', "hls_mp3")
ENCRYPTED = Form("aac_160k_enc", "ctr-encrypted-hls", 'audio/mp4; codecs="mp4a.40.2"', "hls_aac")
SNIPPET = Form("mp3_snip", "progressive", "audio/mpeg", "preview", snipped=True)


@dataclass
class FakeTrack:
    id: int
    user: str
    slug: str
    title: str
    forms: tuple[Form, ...] = ()
    official_medium: str | None = "hls_aac"  # what hls_aac_160_url plays
    policy: str = "ALLOW"
    streamable: bool = True
    private: bool = False
    full_seconds: float = 9.0

    @property
    def urn(self) -> str:
        return f"soundcloud:tracks:{self.id}"

    @property
    def page(self) -> str:
        return f"https://soundcloud.com/{self.user}/{self.slug}"


@dataclass
class FakeSet:
    id: int
    user: str
    slug: str
    title: str
    track_ids: tuple[int, ...]
    private: bool = False

    @property
    def urn(self) -> str:
        return f"soundcloud:playlists:{self.id}"

    @property
    def page(self) -> str:
        return f"https://soundcloud.com/{self.user}/sets/{self.slug}"


# The long set's tracks: more than two /tracks?ids= batches of stubs.
LONG_SET_IDS = tuple(range(1000, 1000 + 2 * TRACK_BATCH_LIMIT + 17))


def default_sets() -> list[FakeSet]:
    return [
        # In this order: playable, private, playable, geo-blocked, playable, preview only, not streamable,
        # a repeat of the first, and an id SoundCloud no longer knows.
        FakeSet(201, "artist-one", "a-mix", "A Mix", (101, 105, 102, 106, 103, 104, 107, 101, 999)),
        FakeSet(202, "artist-two", "long-set", "Long Set", LONG_SET_IDS),
        FakeSet(203, "artist-three", "hidden-set", "Hidden Set", (101,), private=True),
        FakeSet(204, "artist-three", "nothing-plays", "Nothing Plays", (105, 106, 107)),
    ]


def default_tracks() -> list[FakeTrack]:
    return [
        # The order of forms is deliberately not the order of preference.
        FakeTrack(101, "artist-one", "progressive-song", "Progressive Song", (AAC_HLS, MP3_HLS, MP3_PROGRESSIVE),
                  full_seconds=SECONDS["progressive"]),
        FakeTrack(102, "artist-one", "hls-mp3-song", "HLS MP3 Song", (OPUS_HLS, AAC_HLS, MP3_HLS)),
        FakeTrack(103, "artist-two", "aac-song", "AAC Song", (ENCRYPTED, SNIPPET, AAC_HLS)),
        FakeTrack(104, "artist-two", "go-plus-song", "Go+ Song", (SNIPPET, ENCRYPTED), policy="SNIP",
                  official_medium=None, full_seconds=240.0),
        FakeTrack(105, "artist-three", "secret-song", "Secret Song", (MP3_PROGRESSIVE,), private=True),
        FakeTrack(106, "artist-three", "blocked-song", "Blocked Song", (MP3_PROGRESSIVE,), policy="BLOCK"),
        FakeTrack(107, "artist-three", "no-stream-song", "No Stream Song", (MP3_PROGRESSIVE,), streamable=False),
        *(FakeTrack(n, "artist-four", f"long-{n}", f"Long {n}", (MP3_PROGRESSIVE,), full_seconds=SECONDS["progressive"])
          for n in LONG_SET_IDS),
    ]


@dataclass
class FakeSoundCloud:
    media_dir: Path
    tracks: dict[int, FakeTrack] = field(default_factory=lambda: {t.id: t for t in default_tracks()})
    valid_client_ids: set[str] = field(default_factory=lambda: {CLIENT_ID})
    site_client_id: str = CLIENT_ID
    token_ttl: int = 3600
    rate_limit: dict[str, int] = field(default_factory=dict)  # endpoint -> Retry-After seconds
    expire_at: dict[int, int] = field(default_factory=dict)  # track id -> first refused segment
    short_links: dict[str, int] = field(default_factory=lambda: {"AbCd3": 102, "Go104": 104})
    sets: dict[int, FakeSet] = field(default_factory=lambda: {s.id: s for s in default_sets()})
    set_full: int = 3  # whole track objects at the head of a set; bare ids after
    batches: list[list[int]] = field(default_factory=list)
    hits: Counter[str] = field(default_factory=Counter)
    media_log: list[tuple[int, str, str, int, int]] = field(default_factory=list)  # (id, medium, file, sig, status)
    base: str = ""

    def __post_init__(self) -> None:
        self.tokens: dict[str, float] = {}
        self._signatures = 0
        self._first_signature: dict[int, int] = {}
        self.app = web.Application()
        r = self.app.router
        r.add_get("/v2/resolve", self.v2_resolve)
        r.add_get("/v2/tracks/{id}", self.v2_track)
        r.add_get("/v2/tracks", self.v2_tracks)
        r.add_get("/v2/playlists/{id}", self.v2_playlist)
        r.add_get("/v2/media/{id}/{preset}/{protocol}", self.v2_media)
        r.add_post("/oauth/token", self.oauth_token)
        r.add_get("/api/resolve", self.api_resolve)
        r.add_get("/api/tracks/{urn}", self.api_track)
        r.add_get("/api/tracks", self.api_tracks)
        r.add_get("/api/playlists/{urn}", self.api_playlist)
        r.add_get("/api/tracks/{urn}/streams", self.api_streams)
        r.add_get("/api/tracks/{urn}/streams/{kind}", self.api_stream_redirect)
        r.add_get("/", self.site_page)
        r.add_get("/assets/{name}", self.site_script)
        r.add_get("/on/{code}", self.short_link)
        r.add_get("/media/progressive/{sig}/{id}/{medium}", self.media_progressive)
        r.add_get("/media/hls/{sig}/{id}/{medium}/{file}", self.media_hls)

    # -- helpers -----------------------------------------------------------------

    def _limited(self, endpoint: str) -> None:
        if endpoint in self.rate_limit:
            self.hits["429"] += 1
            raise web.HTTPTooManyRequests(headers={"Retry-After": str(self.rate_limit[endpoint])})

    def _track_by_page(self, url: str) -> FakeTrack | None:
        path = urlsplit(url).path.strip("/")
        for track in self.tracks.values():
            if urlsplit(track.page).path.strip("/") == path:
                return track
        return None

    def _set_by_page(self, url: str) -> FakeSet | None:
        path = urlsplit(url).path.strip("/")
        for found in self.sets.values():
            if urlsplit(found.page).path.strip("/") == path:
                return found
        return None

    def _set_json(self, found: FakeSet, whole: Callable[[FakeTrack], dict[str, object]],
                  official: bool) -> dict[str, object]:
        tracks: list[dict[str, object]] = []
        for position, track_id in enumerate(found.track_ids):
            track = self.tracks.get(track_id)
            if track is not None and not track.private and position < self.set_full:
                tracks.append(whole(track))
            elif official:
                tracks.append({"kind": "track", "urn": f"soundcloud:tracks:{track_id}"})
            else:  # api-v2's stubs: the id and a few flags
                tracks.append({"id": track_id, "kind": "track", "monetization_model": "NOT_APPLICABLE",
                               "policy": "ALLOW"})
        return {"kind": "playlist", "id": found.id, "urn": found.urn, "title": found.title,
                "permalink_url": found.page, "track_count": len(found.track_ids),
                "user": {"username": found.user}, "tracks": tracks}

    def _batch(self, raw: str) -> list[FakeTrack]:
        ids = [int(part.rsplit(":", 1)[-1]) for part in raw.split(",") if part]
        if not ids or len(ids) > TRACK_BATCH_LIMIT:
            raise web.HTTPBadRequest(text=f"1 to {TRACK_BATCH_LIMIT} ids")
        self.batches.append(ids)
        found = [self.tracks[n] for n in ids if n in self.tracks and not self.tracks[n].private]
        return found[::-1]

    def _sign(self, track: FakeTrack, medium: str) -> str:
        self._signatures += 1
        self._first_signature.setdefault(track.id, self._signatures)
        sig = self._signatures
        if medium in ("progressive", "preview"):
            return f"{self.base}/media/progressive/{sig}/{track.id}/{medium}"
        return f"{self.base}/media/hls/{sig}/{track.id}/{medium}/playlist.m3u8"

    def _v2_json(self, track: FakeTrack) -> dict[str, object]:
        playable = [f for f in track.forms if f.protocol != "ctr-encrypted-hls"]
        snip = all(f.snipped for f in playable)
        return {
            "kind": "track",
            "id": track.id,
            "urn": track.urn,
            "title": track.title,
            "duration": 30000 if snip else int(track.full_seconds * 1000),
            "full_duration": int(track.full_seconds * 1000),
            "artwork_url": f"https://i1.sndcdn.com/artworks-{track.id}-large.jpg",
            "permalink_url": track.page,
            "streamable": track.streamable,
            "policy": track.policy,
            "sharing": "private" if track.private else "public",
            "track_authorization": f"auth-{track.id}",
            "user": {"username": track.user, "avatar_url": f"https://i1.sndcdn.com/avatars-{track.id}-large.jpg"},
            "media": {
                "transcodings": [
                    {
                        "url": f"{self.base}/v2/media/{track.id}/{form.preset}/{form.protocol}",
                        "preset": form.preset,
                        "duration": int((SECONDS[form.medium] if form.snipped else track.full_seconds) * 1000),
                        "snipped": form.snipped,
                        "format": {"protocol": form.protocol, "mime_type": form.mime},
                        "quality": "sq",
                    }
                    for form in track.forms
                ]
            },
        }

    def _official_json(self, track: FakeTrack) -> dict[str, object]:
        access = "blocked" if track.policy == "BLOCK" else "preview" if track.official_medium is None else "playable"
        return {
            "kind": "track",
            "id": track.id,
            "urn": track.urn,
            "title": track.title,
            "duration": int(track.full_seconds * 1000),
            "artwork_url": f"https://i1.sndcdn.com/artworks-{track.id}-large.jpg",
            "permalink_url": track.page,
            "streamable": track.streamable,
            "access": access,
            "user": {"username": track.user},
        }

    # -- api-v2 ------------------------------------------------------------------------

    def _v2_auth(self, request: web.Request) -> None:
        if request.query.get("client_id") not in self.valid_client_ids:
            self.hits["v2/401"] += 1
            raise web.HTTPUnauthorized(text='{"error": "invalid client id"}', content_type="application/json")

    async def v2_resolve(self, request: web.Request) -> web.Response:
        self.hits["v2/resolve"] += 1
        self._limited("resolve")
        self._v2_auth(request)
        found = self._set_by_page(request.query.get("url", ""))
        if found is not None and not found.private:
            return web.json_response(self._set_json(found, self._v2_json, official=False))
        track = self._track_by_page(request.query.get("url", ""))
        if track is None or track.private:  # api-v2 hides private tracks behind a 404
            raise web.HTTPNotFound()
        return web.json_response(self._v2_json(track))

    async def v2_track(self, request: web.Request) -> web.Response:
        self.hits["v2/track"] += 1
        self._limited("resolve")
        self._v2_auth(request)
        track = self.tracks.get(int(request.match_info["id"]))
        if track is None or track.private:
            raise web.HTTPNotFound()
        return web.json_response(self._v2_json(track))

    async def v2_tracks(self, request: web.Request) -> web.Response:
        self.hits["v2/tracks"] += 1
        self._limited("resolve")
        self._v2_auth(request)
        return web.json_response([self._v2_json(t) for t in self._batch(request.query.get("ids", ""))])

    async def v2_playlist(self, request: web.Request) -> web.Response:
        self.hits["v2/playlist"] += 1
        self._limited("resolve")
        self._v2_auth(request)
        found = self.sets.get(int(request.match_info["id"]))
        if found is None or found.private:
            raise web.HTTPNotFound()
        return web.json_response(self._set_json(found, self._v2_json, official=False))

    async def v2_media(self, request: web.Request) -> web.Response:
        self.hits["v2/media"] += 1
        self._limited("stream_url")
        self._v2_auth(request)
        track = self.tracks[int(request.match_info["id"])]
        if request.query.get("track_authorization") != f"auth-{track.id}":
            raise web.HTTPForbidden()
        form = next(f for f in track.forms if f.preset == request.match_info["preset"])
        self.hits[f"v2/media/{form.preset}"] += 1
        return web.json_response({"url": self._sign(track, form.medium)})

    # -- official API --------------------------------------------------------------------

    def revoke_tokens(self) -> None:
        """Expire every token now (the next API call with one gets 401)."""
        self.tokens.clear()

    async def oauth_token(self, request: web.Request) -> web.Response:
        self.hits["token"] += 1
        self._limited("token")
        expected = "Basic " + base64.b64encode(f"{OFFICIAL_ID}:{OFFICIAL_SECRET}".encode()).decode()
        form = await request.post()
        if request.headers.get("Authorization") != expected or form.get("grant_type") != "client_credentials":
            raise web.HTTPUnauthorized()
        token = secrets.token_hex(8)
        self.tokens[token] = time.monotonic() + self.token_ttl
        return web.json_response({"access_token": token, "token_type": "bearer", "expires_in": self.token_ttl,
                                  "refresh_token": secrets.token_hex(8), "scope": ""})

    def _api_auth(self, request: web.Request) -> None:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("OAuth ")
        if not header.startswith("OAuth ") or self.tokens.get(token, 0) < time.monotonic():
            self.hits["api/401"] += 1
            raise web.HTTPUnauthorized()

    def _api_track(self, request: web.Request) -> FakeTrack:
        urn = request.match_info["urn"]
        track = self.tracks.get(int(urn.rsplit(":", 1)[-1])) if urn.startswith("soundcloud:tracks:") else None
        if track is None:
            raise web.HTTPNotFound()
        if track.private:  # the official API says so
            raise web.HTTPForbidden()
        return track

    async def api_resolve(self, request: web.Request) -> web.Response:
        self.hits["api/resolve"] += 1
        self._limited("resolve")
        self._api_auth(request)
        found = self._set_by_page(request.query.get("url", ""))
        if found is not None:
            raise web.HTTPFound(f"/api/playlists/{quote(found.urn)}")
        track = self._track_by_page(request.query.get("url", ""))
        if track is None:
            raise web.HTTPNotFound()
        raise web.HTTPFound(f"/api/tracks/{quote(track.urn)}")

    async def api_playlist(self, request: web.Request) -> web.Response:
        self.hits["api/playlist"] += 1
        self._api_auth(request)
        urn = request.match_info["urn"]
        found = self.sets.get(int(urn.rsplit(":", 1)[-1])) if urn.startswith("soundcloud:playlists:") else None
        if found is None:
            raise web.HTTPNotFound()
        if found.private:
            raise web.HTTPForbidden()
        return web.json_response(self._set_json(found, self._official_json, official=True))

    async def api_tracks(self, request: web.Request) -> web.Response:
        self.hits["api/tracks"] += 1
        self._api_auth(request)
        batch = self._batch(request.query.get("urns", ""))
        return web.json_response({"collection": [self._official_json(t) for t in batch], "next_href": None})

    async def api_track(self, request: web.Request) -> web.Response:
        self.hits["api/track"] += 1
        self._api_auth(request)
        return web.json_response(self._official_json(self._api_track(request)))

    async def api_streams(self, request: web.Request) -> web.Response:
        self.hits["api/streams"] += 1
        self._limited("stream_url")
        self._api_auth(request)
        track = self._api_track(request)
        base = f"{self.base}/api/tracks/{quote(track.urn)}/streams"
        answer = {"preview_mp3_128_url": f"{base}/preview"}
        if track.official_medium is not None:
            answer["hls_aac_160_url"] = f"{base}/hls_aac_160"
        return web.json_response(answer)

    async def api_stream_redirect(self, request: web.Request) -> web.Response:
        self.hits["api/stream"] += 1
        self._api_auth(request)
        track = self._api_track(request)
        kind = request.match_info["kind"]
        medium = "preview" if kind == "preview" else track.official_medium
        assert medium is not None
        raise web.HTTPFound(self._sign(track, medium))

    # -- the site ----------------------------------------------------------------------------

    async def site_page(self, request: web.Request) -> web.Response:
        self.hits["page"] += 1
        scripts = "\n".join(
            f'<script crossorigin src="{self.base}/assets/{name}.js"></script>'
            for name in ("vendor-1a2b", "app-3c4d", "49-5e6f")
        )
        html = f"<!DOCTYPE html><html><head><title>SoundCloud</title></head><body>{scripts}</body></html>"
        return web.Response(text=html, content_type="text/html")

    async def site_script(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.hits[f"script/{name}"] += 1
        body = "var a=1;" * 500
        if name == "49-5e6f.js":
            body += f'({{env:"production",client_id:"{self.site_client_id}",api:"x"}});'
        return web.Response(text=body, content_type="application/javascript")

    async def short_link(self, request: web.Request) -> web.Response:
        self.hits["short"] += 1
        track = self.tracks.get(self.short_links.get(request.match_info["code"], -1))
        if track is None:
            raise web.HTTPNotFound()
        # The real ones carry tracking parameters, which the gateway drops.
        raise web.HTTPFound(track.page.replace("https://", "https://m.") + "?ref=clipboard&p=i&c=1")

    # -- media -----------------------------------------------------------------------------------

    def _check_signature(self, track_id: int, sig: int, segment: int | None) -> None:
        first = self._first_signature.get(track_id)
        limit = self.expire_at.get(track_id)
        if limit is not None and segment is not None and segment >= limit and sig == first:
            raise web.HTTPForbidden(text="Request has expired")

    async def media_progressive(self, request: web.Request) -> web.StreamResponse:
        info = request.match_info
        track_id, medium, sig = int(info["id"]), info["medium"], int(info["sig"])
        self.hits["media"] += 1
        data = (self.media_dir / f"{medium}.mp3").read_bytes()
        self.media_log.append((track_id, medium, f"{medium}.mp3", sig, 200))
        return web.Response(body=data, content_type="audio/mpeg")

    async def media_hls(self, request: web.Request) -> web.StreamResponse:
        info = request.match_info
        track_id, medium, sig, name = int(info["id"]), info["medium"], int(info["sig"]), info["file"]
        self.hits["media"] += 1
        # The MP3 variant signs each segment in its query, like SoundCloud's CDN.
        if "Policy" in request.query:
            sig = int(request.query["Policy"])
        segment = int(name.rsplit("_", 1)[1].split(".")[0]) if name.startswith(("mp3_", "aac_")) else None
        try:
            self._check_signature(track_id, sig, segment)
        except web.HTTPForbidden:
            self.media_log.append((track_id, medium, name, sig, 403))
            raise
        path = self.media_dir / medium / name
        if not path.is_file():
            raise web.HTTPNotFound()
        self.media_log.append((track_id, medium, name, sig, 200))
        if name == "playlist.m3u8" and medium == "hls_mp3":
            lines = []
            for line in path.read_text().splitlines():
                if line and not line.startswith("#"):
                    line = f"{self.base}/media/hls/0/{track_id}/{medium}/{line}?Policy={sig}&Signature=ok"
                lines.append(line)
            return web.Response(text="\n".join(lines) + "\n", content_type="application/vnd.apple.mpegurl")
        ctype = _MIME.get(path.suffix, "application/octet-stream")
        return web.Response(body=path.read_bytes(), headers={"Content-Type": ctype})
