"""HTTP handlers: translate between the public contract and the core.

Nothing here decides anything about transcoding or storage; handlers look up
the track, ask the ``MediaService``, and write the answer with the contract's
headers (docs/http.md). Errors are raised as ``ZtreamError`` and rendered by
``responses.render_error``. Audio bytes are counted in
``ztream_server_bytes_total`` as each piece is handed to the socket, so a
client that leaves halfway counts only what was written.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from ..sources import FETCH_SOURCES, LOCAL_SOURCE
from ..errors import BadRequest, Forbidden, NotFound, ZtreamError
from ..media import CATALOG, MEDIA
from ..media.catalog import Track
from ..media.types import ServedKind, TrackJSON
from ..metrics import METRICS
from . import ORIGINS
from .responses import endpoint, read_json, render_error

__all__ = ["routes", "cors_headers", "not_found"]

log = logging.getLogger("ztream.http")

WRITE_PIECE = 64 * 1024
MAX_JSON_BODY = 16 * 1024
IMMUTABLE = "public, max-age=31536000, immutable"
LIVE = "no-cache"
WEBM = "audio/webm"

routes = web.RouteTableDef()

# The chunk route is the hot path: no middleware and no response signal run
# on it. Each handler is wrapped by ``endpoint`` (errors to JSON) and adds its
# own CORS headers; a catch-all route gives unknown paths a JSON 404.


def cors_headers(request: web.Request) -> dict[str, str]:
    """CORS headers for an API answer: the embedding origins may read it (``OriginPolicy``)."""
    return request.app[ORIGINS].cors_headers(request)


# Registered first: aiohttp tries dynamic routes in order, and this is the
# route nearly every request takes.
@routes.get("/v1/tracks/{id}/chunks/{n}")
@endpoint
async def get_chunk(request: web.Request) -> web.StreamResponse:
    raw = request.match_info["n"]
    if not raw.isdigit() or len(raw) > 9:
        raise BadRequest(f"chunk index {raw!r} is not a non-negative integer", code="bad_chunk_index")
    data, sha, complete = await request.app[MEDIA].chunk(_track(request), int(raw))
    return await _send_audio(request, data, etag=sha, complete=complete, kind="chunk")


@routes.route("OPTIONS", "/v1/{tail:.*}")
@endpoint
async def preflight(request: web.Request) -> web.Response:
    headers = cors_headers(request)
    if "Access-Control-Allow-Origin" not in headers:
        raise Forbidden("origin not allowed", code="origin_forbidden")
    headers.update({
        "Access-Control-Allow-Methods": "GET, HEAD, POST, OPTIONS",
        "Access-Control-Allow-Headers": "Content-Type, If-None-Match, Range",
        "Access-Control-Max-Age": "600",
    })
    return web.Response(status=204, headers=headers)


async def not_found(request: web.Request) -> web.Response:
    """Registered last by ``create_app``: any other path is a JSON 404."""
    return render_error(request, NotFound(f"no route {request.path!r}", code="not_found"))


def _base(request: web.Request) -> str:
    """The gateway's public URL: ``{track}``'s own URLs (artwork, waveform) start with it."""
    return request.app[ORIGINS].public_url


def _track(request: web.Request) -> Track:
    track_id = request.match_info["id"]
    track = request.app[CATALOG].get(track_id)
    if track is None:
        raise NotFound(f"no track {track_id!r}", code="track_not_found")
    return track


async def _send_audio(
    request: web.Request, data: bytes, *, etag: str, complete: bool, kind: ServedKind
) -> web.StreamResponse:
    headers = {
        "Content-Type": WEBM,
        "ETag": f'"{etag}"',
        "Cache-Control": IMMUTABLE if complete else LIVE,
        "X-Ztream-Complete": "1" if complete else "0",
        **cors_headers(request),
    }
    if request.headers.get("If-None-Match") == headers["ETag"]:
        return web.Response(status=304, headers=headers)
    counter = request.app[METRICS].server_bytes_by_kind[kind] if request.method != "HEAD" else None
    return _CountedResponse(counter, body=data, headers=headers)


class _CountedResponse(web.Response):
    """A body counted in ``ztream_server_bytes_total`` once aiohttp has handed
    it to the socket (``write_eof`` sends headers and body in one write),
    not when the handler returns."""

    def __init__(self, counter: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._counter = counter

    async def write_eof(self, data: bytes = b"") -> None:
        await super().write_eof(data)
        if self._counter is not None and isinstance(self.body, bytes):
            self._counter.inc(len(self.body))
            self._counter = None


@routes.get("/healthz")
@endpoint
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/metrics")
@endpoint
async def metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


@routes.get("/v1/tracks")
@endpoint
async def list_tracks(request: web.Request) -> web.Response:
    catalog = request.app[CATALOG]
    library = request.app[LOCAL_SOURCE].scan() if LOCAL_SOURCE in request.app else []
    tracks: list[TrackJSON] = []
    for found in library:
        catalog.add(found)
        tracks.append((catalog.get(found.id) or found).public(_base(request)))
    tracks.extend(t.public(_base(request)) for t in catalog.recent() if t.source != "local")
    return web.json_response({"tracks": tracks}, headers=cors_headers(request))


@routes.post("/v1/tracks")
@endpoint
async def add_track(request: web.Request) -> web.Response:
    body = await read_json(request, MAX_JSON_BODY)
    if not isinstance(body, dict) or not isinstance(body.get("url"), str) or not body["url"].strip():
        raise BadRequest('expected {"url": "<http(s) URL>"}', code="bad_request")
    url = body["url"].strip()
    if len(url) > 4096:
        raise BadRequest("the URL is too long", code="bad_url")
    source = None
    for candidate in request.app[FETCH_SOURCES]:
        if candidate.accepts(url):
            source = candidate
            break
    if source is None:
        raise BadRequest("no configured source takes this URL", code="bad_url")
    track = await source.register(url)
    track, created = request.app[CATALOG].add(track)
    return web.json_response(track.public(_base(request)), status=201 if created else 200, headers=cors_headers(request))


@routes.get("/v1/tracks/{id}")
@endpoint
async def get_track(request: web.Request) -> web.Response:
    return web.json_response(_track(request).public(_base(request)), headers=cors_headers(request))


@routes.get("/v1/tracks/{id}/manifest")
@endpoint
async def get_manifest(request: web.Request) -> web.Response:
    manifest = await request.app[MEDIA].manifest(_track(request))
    cache = "public, max-age=300" if manifest["complete"] else LIVE
    return web.json_response(manifest, headers={"Cache-Control": cache, **cors_headers(request)})


@routes.get("/v1/tracks/{id}/init")
@endpoint
async def get_init(request: web.Request) -> web.StreamResponse:
    data, sha, complete = await request.app[MEDIA].init(_track(request))
    return await _send_audio(request, data, etag=sha, complete=complete, kind="init")


@routes.get("/v1/tracks/{id}/stream")
@endpoint
async def get_stream(request: web.Request) -> web.StreamResponse:
    track = _track(request)
    media = request.app[MEDIA]
    pieces = media.stream(track)
    # The first piece is awaited before the status goes out, so upstream
    # errors still get their JSON answer.
    kind, first = await anext(pieces)
    response = web.StreamResponse(
        headers={"Content-Type": WEBM, "Cache-Control": "no-cache", **cors_headers(request)}
    )
    cached = media.cached_manifest(track)
    if cached is not None and cached["init"] is not None:  # a complete manifest has one
        response.content_length = cached["init"]["size"] + sum(c["size"] for c in cached["chunks"])
    await response.prepare(request)
    if request.method == "HEAD":
        await pieces.aclose()
        return response
    counter = request.app[METRICS].server_bytes_by_kind["stream"]
    try:
        # response.write waits for the socket to drain past the high-water
        # mark: a slow reader slows this loop instead of growing a buffer.
        await response.write(first)
        counter.inc(len(first))
        async for _kind, data in pieces:
            view = memoryview(data)
            for offset in range(0, len(data), WRITE_PIECE):
                piece = view[offset : offset + WRITE_PIECE]
                await response.write(piece)
                counter.inc(len(piece))
    except ZtreamError as exc:
        # Too late for a status: end the body short, so the client sees a
        # truncated stream rather than a silently complete one.
        log.warning("stream of %s ended early: %s", track.id, exc.detail)
        if request.transport is not None:
            request.transport.close()
        return response
    finally:
        await pieces.aclose()
    await response.write_eof()
    return response
