"""``/v1/tracks/{id}/artwork`` and ``/v1/tracks/{id}/waveform`` (docs/http.md).

- ``GET /v1/tracks/{id}/artwork``: the file's attached picture (or a
  ``cover.jpg``/``folder.jpg`` beside a library file) as a JPEG of at most
  500x500, or a neutral placeholder when there is none. Immutable with an
  ETag once known (the transcode that finds it has ended); while it runs,
  the placeholder with ``no-cache``.
- ``GET /v1/tracks/{id}/waveform``: ``{"version": 1, "length": n, "peaks":
  [...], "duration": s, "complete": bool}``; answered while the transcode
  runs (growing, ``no-cache``), immutable with an ETag once complete.

Both start the track's transcode if none ran yet (as the manifest does), and
carry the origin policy's CORS headers, so a player on another origin can
draw them.
"""

from __future__ import annotations

import hashlib
import json

from aiohttp import web

from ..media import MEDIA
from . import ORIGINS
from .api import _track  # the same lookup and 404 as the core track routes
from .client_address import request_client
from .conditional import none_match
from .responses import endpoint

__all__ = ["routes"]

IMMUTABLE = "public, max-age=31536000, immutable"
LIVE = "no-cache"

routes = web.RouteTableDef()


def _answer(request: web.Request, body: bytes, content_type: str, etag: str, final: bool) -> web.Response:
    headers = {
        "Content-Type": content_type,
        "Cache-Control": IMMUTABLE if final else LIVE,
        "X-Content-Type-Options": "nosniff",
        **request.app[ORIGINS].cors_headers(request),
    }
    if final:
        headers["ETag"] = f'"{etag}"'
        if none_match(request.headers.get("If-None-Match"), headers["ETag"]):
            return web.Response(status=304, headers=headers)
    return web.Response(body=body, headers=headers)


@routes.get("/v1/tracks/{id}/artwork")
@endpoint
async def get_artwork(request: web.Request) -> web.Response:
    jpeg, etag, known = await request.app[MEDIA].artwork(await _track(request), client=request_client(request))
    return _answer(request, jpeg, "image/jpeg", etag, known)


@routes.get("/v1/tracks/{id}/waveform")
@endpoint
async def get_waveform(request: web.Request) -> web.Response:
    waveform, complete = await request.app[MEDIA].waveform(await _track(request), client=request_client(request))
    body = json.dumps(waveform, separators=(",", ":")).encode()
    etag = hashlib.sha256(body).hexdigest()[:32]
    return _answer(request, body, "application/json", etag, complete)
