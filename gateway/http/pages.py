"""The browser side of the gateway: landing page, embed page, oEmbed, client files.

``setup_pages(app, ...)`` adds these routes (and, through ``player.setup_player``,
the SoundCloud drop-in ``/player/``):

- ``GET /``: the landing page (``client/index.html``);
- ``GET /embed/{id}``: the player page for an ``<iframe>`` (``client/embed.html``),
  with ``Content-Security-Policy: frame-ancestors`` from the origin policy
  (``server.embed_origins``) and an oEmbed discovery ``<link>``;
- ``GET /oembed?url=...&format=json``: an oEmbed 1.0 ``rich`` answer
  (https://oembed.com/, section 2.3.4) whose ``html`` is the iframe; for a
  SoundCloud link or a ``/player/`` URL, SoundCloud's shape, JSON or XML
  (``player.dropin_oembed``);
- ``GET /client/{path}``: the ES modules, served with
  ``Access-Control-Allow-Origin: *`` so that any page can ``import`` them.

The HTML pages are the files under ``client/`` with ``{{name}}`` placeholders
filled in, every value HTML-escaped; they carry no inline script, so a strict
``Content-Security-Policy`` applies to them. Errors are raised and rendered
as the contract's JSON ``{"error": code, "detail": text}`` by
``responses.render_error``, with the CORS headers of ``OriginPolicy``.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

from ..errors import BadRequest, NotFound, Unsupported
from ..media.catalog import is_track_id
from ..media.types import TrackJSON
from .origins import OriginPolicy
from .player import dropin_oembed, is_dropin_url, setup_player
from .responses import endpoint

__all__ = ["setup_pages", "CLIENT_DIR", "EMBED_WIDTH", "EMBED_HEIGHT"]

CLIENT_DIR = Path(__file__).resolve().parent.parent.parent / "client"

# Default iframe size: a full-width bar, as tall as the single-track player.
EMBED_WIDTH = 600
EMBED_HEIGHT = 166

_PLACEHOLDER = re.compile(r"\{\{([a-z_]+)\}\}")

_MIME = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
}

# The embed page's ?p2p= values ("" = the default: direct connections allowed).
_EMBED_P2P = frozenset({"", "off", "relay"})
# ?upload=: the page's upload policy ("" = the operator's, p2p.upload); it can
# only make the operator's stricter (client/upload-policy.js).
_EMBED_UPLOAD = frozenset({"", "on", "opt-in", "off"})

GetTrack = Callable[[str], Awaitable[TrackJSON | None]]


def _render(template: str, values: dict[str, str]) -> str:
    """Fill ``{{name}}`` placeholders with HTML-escaped values."""

    def sub(match: re.Match[str]) -> str:
        return html.escape(values[match.group(1)], quote=True)

    return _PLACEHOLDER.sub(sub, template)


def _iframe_html(src: str, title: str, width: int, height: int) -> str:
    return (
        f'<iframe width="{width}" height="{height}" src="{html.escape(src, quote=True)}" '
        f'title="{html.escape(title, quote=True)}" frameborder="0" scrolling="no" '
        'allow="autoplay; encrypted-media" loading="lazy" '
        'style="border:0;max-width:100%"></iframe>'
    )


def _clamp_dimension(raw: str | None, default: int, name: str) -> int:
    """The default size, or less when the consumer's maximum is smaller (oEmbed 2.2)."""
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or len(raw) > 6 or int(raw) < 1:
        raise BadRequest(f"{name} must be a positive integer", code="bad_request")
    return min(default, int(raw))


def setup_pages(app: web.Application, *, policy: OriginPolicy, get_track: GetTrack) -> None:
    """Add the browser routes to ``app``.

    ``policy`` holds the gateway's externally visible base URL and the origins
    allowed to frame the embed page; ``get_track(id)`` returns the public
    ``{track}`` or ``None`` for an unknown id.
    """
    public_url = policy.public_url
    client_dir = CLIENT_DIR.resolve()

    csp = policy.page_csp(https_images=False, frames=True)

    def template(name: str) -> str:
        return (client_dir / name).read_text(encoding="utf-8")

    async def landing(request: web.Request) -> web.Response:
        body = _render(template("index.html"), {"public_url": public_url})
        return web.Response(
            text=body,
            content_type="text/html",
            headers={"Cache-Control": "no-cache", "Content-Security-Policy": csp + "; frame-ancestors 'self'"},
        )

    @endpoint
    async def embed(request: web.Request) -> web.Response:
        track_id = request.match_info["id"]
        # ?p2p=off (no WebRTC) or ?p2p=relay (TURN only: peers never see the
        # listener's address), passed to <ztream-player p2p>; docs/p2p.md.
        p2p = request.query.get("p2p", "")
        if p2p not in _EMBED_P2P:
            raise BadRequest("p2p must be \"off\" or \"relay\"", code="bad_request")
        upload = request.query.get("upload", "")
        if upload not in _EMBED_UPLOAD:
            raise BadRequest("upload must be \"on\", \"opt-in\" or \"off\"", code="bad_request")
        track = await get_track(track_id) if is_track_id(track_id) else None
        if track is None:
            raise NotFound(f"no track {track_id!r}", code="track_not_found")
        embed_url = f"{public_url}/embed/{quote(track_id)}"
        title = str(track.get("title") or track_id)
        oembed = f"{public_url}/oembed?url={quote(embed_url, safe='')}&format=json"
        # Tag text (artist, album, title from the file) is untrusted: _render escapes every value.
        byline = " · ".join(str(track[k]) for k in ("artist", "album") if track.get(k))
        body = _render(
            template("embed.html"),
            {
                "title": title,
                "page_title": f"{title} · {track['artist']}" if track.get("artist") else title,
                "description": byline or title,
                "artwork_url": str(track.get("artwork_url") or f"{public_url}/v1/tracks/{quote(track_id)}/artwork"),
                "track_id": track_id,
                "track_url": f"{public_url}/v1/tracks/{quote(track_id)}",
                "embed_url": embed_url,
                "oembed_url": oembed,
                "public_url": public_url,
                "origins": json.dumps(policy.embedders()),
                "peer_mode": p2p,  # placeholders are [a-z_]+
                "upload": upload,
            },
        )
        return web.Response(
            text=body,
            content_type="text/html",
            headers={"Cache-Control": "no-cache", "Content-Security-Policy": csp},
        )

    @endpoint
    async def oembed(request: web.Request) -> web.Response:
        # SoundCloud links and /player/ URLs: SoundCloud's shape (JSON or XML)
        if is_dropin_url(request.query.get("url", "").strip(), public_url):
            return await dropin_oembed(request, resolver)
        fmt = request.query.get("format", "json")
        if fmt != "json":
            raise Unsupported(f"format {fmt!r} is not supported; use json", code="format_not_implemented")
        url = request.query.get("url", "").strip()
        if not url:
            raise BadRequest("the url parameter is required", code="bad_request")
        width = _clamp_dimension(request.query.get("maxwidth"), EMBED_WIDTH, "maxwidth")
        height = _clamp_dimension(request.query.get("maxheight"), EMBED_HEIGHT, "maxheight")
        bare = url.split("#", 1)[0].split("?", 1)[0].rstrip("/")
        track_id = None
        for prefix in (f"{public_url}/embed/", f"{public_url}/v1/tracks/"):
            if bare.startswith(prefix):
                track_id = bare[len(prefix):]
                break
        if track_id is None or not is_track_id(track_id):
            raise NotFound(f"{url!r} is not a track of this gateway", code="not_found")
        track = await get_track(track_id)
        if track is None:
            raise NotFound(f"no track {track_id!r}", code="track_not_found")
        title = str(track.get("title") or track_id)
        src = f"{public_url}/embed/{quote(track_id)}"
        answer: dict[str, Any] = {
            "version": "1.0",
            "type": "rich",
            "provider_name": "Ztream",
            "provider_url": public_url + "/",
            "title": title,
            "html": _iframe_html(src, title, width, height),
            "width": width,
            "height": height,
            "cache_age": 3600,
        }
        if track.get("artist"):
            answer["author_name"] = str(track.get("artist"))
        # The artwork (or its placeholder), as oEmbed 2.3.4's thumbnail: all three or none.
        answer["thumbnail_url"] = str(track.get("artwork_url") or f"{public_url}/v1/tracks/{quote(track_id)}/artwork")
        answer["thumbnail_width"] = int(track.get("artwork_width") or 500)
        answer["thumbnail_height"] = int(track.get("artwork_height") or 500)
        return web.json_response(answer, headers=policy.cors_headers(request))

    @endpoint
    async def client_file(request: web.Request) -> web.StreamResponse:
        rel = request.match_info["path"]
        parts = rel.split("/")
        # A NUL or any control character never names a client file (and NUL makes the OS call fail).
        if not rel or not rel.isprintable() or any(
            p in ("", ".", "..") or p.startswith(".") or "\\" in p for p in parts
        ):
            raise NotFound(f"no client file {rel!r}", code="not_found")
        path = (client_dir / rel).resolve()
        if not path.is_relative_to(client_dir) or not path.is_file():
            raise NotFound(f"no client file {rel!r}", code="not_found")
        headers = {
            **policy.cors_headers(request),
            "Content-Type": _MIME.get(path.suffix, "application/octet-stream"),
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
        }
        return web.FileResponse(path, headers=headers)

    resolver = setup_player(app, policy=policy, render=lambda name, values: _render(template(name), values))
    app.router.add_get("/", landing)
    app.router.add_get("/embed/{id}", embed)
    app.router.add_get("/oembed", oembed)
    app.router.add_get("/client/{path:.+}", client_file)
