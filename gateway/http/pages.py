"""The browser side of the gateway: landing page, embed page, oEmbed, client files.

``setup_web(app, ...)`` adds four routes and nothing else:

- ``GET /``: the landing page (``client/index.html``);
- ``GET /embed/{id}``: the player page for an ``<iframe>`` (``client/embed.html``),
  with ``Content-Security-Policy: frame-ancestors`` from ``embed_origins``
  and an oEmbed discovery ``<link>``;
- ``GET /oembed?url=...&format=json``: an oEmbed 1.0 ``rich`` answer
  (https://oembed.com/, section 2.3.4) whose ``html`` is the iframe;
- ``GET /client/{path}``: the ES modules, served with
  ``Access-Control-Allow-Origin: *`` so that any page can ``import`` them.

The HTML pages are the files under ``client/`` with ``{{name}}`` placeholders
filled in, every value HTML-escaped; they carry no inline script, so a strict
``Content-Security-Policy`` applies to them. Errors are the contract's JSON
``{"error": code, "detail": text}``.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from aiohttp import web

__all__ = ["setup_web", "CLIENT_DIR", "EMBED_WIDTH", "EMBED_HEIGHT"]

CLIENT_DIR = Path(__file__).resolve().parent.parent.parent / "client"

# Default iframe size: a full-width bar, as tall as the single-track player.
EMBED_WIDTH = 600
EMBED_HEIGHT = 166

_TRACK_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
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

GetTrack = Callable[[str], Awaitable[dict[str, Any] | None]]


def _error(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": code, "detail": detail}, status=status, headers=headers)


def _render(template: str, values: dict[str, str]) -> str:
    """Fill ``{{name}}`` placeholders with HTML-escaped values."""

    def sub(match: re.Match[str]) -> str:
        return html.escape(values[match.group(1)], quote=True)

    return _PLACEHOLDER.sub(sub, template)


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _ws_origin(url: str) -> str:
    parts = urlsplit(url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return f"{scheme}://{parts.netloc}"


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
        raise ValueError(f"{name} must be a positive integer")
    return min(default, int(raw))


def setup_web(
    app: web.Application,
    *,
    public_url: str,
    embed_origins: Sequence[str],
    get_track: GetTrack,
) -> None:
    """Add the browser routes to ``app``.

    ``public_url`` is the gateway's externally visible base URL (no trailing
    slash needed); ``embed_origins`` the origins allowed to frame the embed
    page (``["*"]``: any); ``get_track(id)`` returns the public ``{track}``
    dict or ``None`` for an unknown id.
    """
    public_url = public_url.rstrip("/")
    origins = tuple(embed_origins)
    any_origin = "*" in origins
    client_dir = CLIENT_DIR.resolve()
    public_origin = _origin_of(public_url)

    def page_csp() -> str:
        sources = f"'self' {public_origin}"
        csp = [
            "default-src 'none'",
            f"script-src {sources}",
            f"style-src {sources} 'unsafe-inline'",
            f"img-src {sources} data:",
            f"media-src {sources} blob:",
            f"connect-src {sources} {_ws_origin(public_url)}",
            f"frame-src {sources}",
            "base-uri 'none'",
            "form-action 'none'",
        ]
        if not any_origin:
            csp.append("frame-ancestors " + " ".join(["'self'", *origins]))
        return "; ".join(csp)

    def template(name: str) -> str:
        return (client_dir / name).read_text(encoding="utf-8")

    async def landing(request: web.Request) -> web.Response:
        body = _render(template("index.html"), {"public_url": public_url})
        return web.Response(
            text=body,
            content_type="text/html",
            headers={"Cache-Control": "no-cache", "Content-Security-Policy": page_csp() + "; frame-ancestors 'self'"},
        )

    async def embed(request: web.Request) -> web.Response:
        track_id = request.match_info["id"]
        track = await get_track(track_id) if _TRACK_ID.match(track_id) else None
        if track is None:
            return _error(404, "track_not_found", f"no track {track_id!r}")
        embed_url = f"{public_url}/embed/{quote(track_id)}"
        title = str(track.get("title") or track_id)
        oembed = f"{public_url}/oembed?url={quote(embed_url, safe='')}&format=json"
        body = _render(
            template("embed.html"),
            {
                "title": title,
                "track_id": track_id,
                "track_url": f"{public_url}/v1/tracks/{quote(track_id)}",
                "embed_url": embed_url,
                "oembed_url": oembed,
                "public_url": public_url,
                "origins": json.dumps(["*"] if any_origin else list(origins)),
            },
        )
        return web.Response(
            text=body,
            content_type="text/html",
            headers={"Cache-Control": "no-cache", "Content-Security-Policy": page_csp()},
        )

    async def oembed(request: web.Request) -> web.Response:
        cors = {"Access-Control-Allow-Origin": "*"}
        fmt = request.query.get("format", "json")
        if fmt != "json":
            return _error(501, "format_not_implemented", f"format {fmt!r} is not supported; use json", cors)
        url = request.query.get("url", "").strip()
        if not url:
            return _error(400, "bad_request", "the url parameter is required", cors)
        try:
            width = _clamp_dimension(request.query.get("maxwidth"), EMBED_WIDTH, "maxwidth")
            height = _clamp_dimension(request.query.get("maxheight"), EMBED_HEIGHT, "maxheight")
        except ValueError as exc:
            return _error(400, "bad_request", str(exc), cors)
        bare = url.split("#", 1)[0].split("?", 1)[0].rstrip("/")
        track_id = None
        for prefix in (f"{public_url}/embed/", f"{public_url}/v1/tracks/"):
            if bare.startswith(prefix):
                track_id = bare[len(prefix):]
                break
        if track_id is None or not _TRACK_ID.match(track_id):
            return _error(404, "not_found", f"{url!r} is not a track of this gateway", cors)
        track = await get_track(track_id)
        if track is None:
            return _error(404, "track_not_found", f"no track {track_id!r}", cors)
        title = str(track.get("title") or track_id)
        src = f"{public_url}/embed/{quote(track_id)}"
        answer = {
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
            answer["author_name"] = str(track["artist"])
        return web.json_response(answer, headers=cors)

    async def client_file(request: web.Request) -> web.StreamResponse:
        cors = {"Access-Control-Allow-Origin": "*"}
        rel = request.match_info["path"]
        parts = rel.split("/")
        if not rel or any(p in ("", ".", "..") or p.startswith(".") or "\\" in p for p in parts):
            return _error(404, "not_found", f"no client file {rel!r}", cors)
        path = (client_dir / rel).resolve()
        if not path.is_relative_to(client_dir) or not path.is_file():
            return _error(404, "not_found", f"no client file {rel!r}", cors)
        headers = {
            **cors,
            "Content-Type": _MIME.get(path.suffix, "application/octet-stream"),
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
        }
        return web.FileResponse(path, headers=headers)

    app.router.add_get("/", landing)
    app.router.add_get("/embed/{id}", embed)
    app.router.add_get("/oembed", oembed)
    app.router.add_get("/client/{path:.+}", client_file)
