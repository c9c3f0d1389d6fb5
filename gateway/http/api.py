"""HTTP handlers: translate between the public contract and the core.

Nothing here decides anything about transcoding or storage; handlers look up
the track, ask the ``MediaService``, and write the answer with the contract's
headers (docs/http.md). Errors are raised as ``ZtreamError`` and rendered by
``responses.render_error``. Audio bytes are counted in
``ztream_server_bytes_total`` as each piece is handed to the socket, so a
client that leaves halfway counts only what was written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncGenerator
from typing import Any

from aiohttp import web

from ..errors import BadRequest, Forbidden, NotFound, RangeNotSatisfiable, ZtreamError
from ..health import HEALTH
from ..live import LIVE
from ..live.service import LiveService
from ..live.window import MAX_INDEX
from ..media import CATALOG, RENDITIONS, STORE
from ..media.catalog import Track
from ..media.service import MediaService
from ..media.types import PieceKind, ServedKind
from ..metrics import METRICS
from ..sources import LOCAL_SOURCE
from ..sources.local import LocalSource
from . import ORIGINS
from .client_address import request_client
from .conditional import ChunkIndexError, Full, Partial, Unsatisfiable, evaluate_range, none_match, parse_chunk_index
from .listing import LISTING, Listing
from .registration import register_url
from .responses import endpoint, read_json, render_error

__all__ = ["routes", "library_tracks", "listed_tracks", "cors_headers", "not_found", "STREAMS", "STREAM_SNDBUF", "end_streams"]

log = logging.getLogger("ztream.http")

WRITE_PIECE = 64 * 1024
MAX_JSON_BODY = 16 * 1024
IMMUTABLE = "public, max-age=31536000, immutable"
NO_CACHE = "no-cache"
# A live track's manifest and current init change: players poll them about once a chunk.
LIVE_SHORT = "public, max-age=1"

# The kernel send buffer of one /stream connection. Left alone, Linux
# autotunes it up to tcp_wmem's 4 MiB and a stalled reader pins ~2.8 MB of
# unsent audio in the kernel; capped, the kernel holds at most twice this
# (it doubles the value for bookkeeping), so 1,000 stalled readers cost at most
# ~128 MiB of kernel memory plus aiohttp's 64 KiB write buffer each
# (docs/http.md). 64 KiB is ~5 s of audio at 96 kbit/s: ahead of any player.
STREAM_SNDBUF = 64 * 1024

# The transports of the /stream answers being written now, so that shutdown
# can end them at once instead of waiting for slow readers.
STREAMS = web.AppKey("streams", set[asyncio.Transport])

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
    try:
        index = parse_chunk_index(request.match_info["n"], max_digits=10)
    except ChunkIndexError as exc:
        raise BadRequest(str(exc), code="bad_chunk_index") from None
    track = await _track(request)
    if not track.live and len(request.match_info["n"]) > 9:
        raise BadRequest("the chunk index has more than 9 digits", code="bad_chunk_index")
    if track.live:
        if index > MAX_INDEX:
            raise BadRequest(f"chunk index {index} is past {MAX_INDEX}", code="bad_chunk_index")
        live = _live(request)
        name = request.query.get("rendition")
        data, sha = await live.chunk(track, index, name, client=request_client(request))
        return await _send_audio(request, data, etag=sha, complete=False, kind="chunk",
                                 content_type=_live_type(live, name), cache=IMMUTABLE, live=True)
    media = _media(request)
    data, sha, complete = await media.chunk(track, index, client=request_client(request))
    return await _send_audio(request, data, etag=sha, complete=complete, kind="chunk", content_type=_content_type(media))


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


async def _track(request: web.Request) -> Track:
    track_id = request.match_info["id"]
    catalog = request.app[CATALOG]
    # get first: the hot path stays a dict look-up; find asks the cluster for an id not known here.
    track = catalog.get(track_id) or await catalog.find(track_id)
    if track is None:
        raise NotFound(f"no track {track_id!r}", code="track_not_found")
    return track


def _media(request: web.Request) -> MediaService:
    """The media service of the rendition asked for (``?rendition=``; WebM without it)."""
    return request.app[RENDITIONS].service(request.query.get("rendition"))


def _content_type(media: MediaService) -> str:
    """``audio/webm`` or ``audio/mp4``: the rendition's MIME type without its codecs."""
    return media.rendition.mime.split(";", 1)[0]


def _live(request: web.Request) -> LiveService:
    return request.app[LIVE]


def _live_type(live: LiveService, name: str | None) -> str:
    return live.rendition(name).mime.split(";", 1)[0]


async def _send_audio(
    request: web.Request, data: bytes, *, etag: str, complete: bool, kind: ServedKind, content_type: str,
    cache: str | None = None, live: bool = False,
) -> web.StreamResponse:
    """``cache`` overrides the Cache-Control ``complete`` implies (a live chunk is immutable, its track never complete)."""
    tag = f'"{etag}"'
    headers = {
        "Content-Type": content_type,
        "ETag": tag,
        "Cache-Control": cache or (IMMUTABLE if complete else NO_CACHE),
        "X-Ztream-Complete": "1" if complete else "0",
        "Accept-Ranges": "bytes",
        **cors_headers(request),
    }
    # If-None-Match is evaluated before Range (RFC 9110 13.2.2).
    if none_match(request.headers.get("If-None-Match"), tag):
        return web.Response(status=304, headers=headers)
    counter: Any = None
    if request.method != "HEAD":
        counter = request.app[METRICS].server_bytes_by_kind[kind]
        if live:
            counter = _Both(counter, request.app[METRICS].live_server_bytes)
    decision = _range(request, len(data), tag)
    if isinstance(decision, Partial):
        headers["Content-Range"] = decision.content_range
        body = data[decision.start : decision.end + 1]
        return _CountedResponse(counter, status=206, body=body, headers=headers)
    return _CountedResponse(counter, body=data, headers=headers)


def _range(request: web.Request, total: int, etag: str | None) -> Full | Partial:
    """The byte range to answer (RFC 9110 14.2); raises ``RangeNotSatisfiable`` for a 416."""
    header = request.headers.get("Range")
    if header is None:  # the hot path: no parsing at all
        return Full(total)
    decision = evaluate_range(header, total, if_range=request.headers.get("If-Range"), etag=etag)
    if isinstance(decision, Unsatisfiable):
        raise RangeNotSatisfiable(
            f"no byte of the range {header[:100]!r} is within the {total} bytes", content_range=decision.content_range
        )
    return decision


class _Both:
    """Two counters incremented together (a live chunk's bytes count in the total and in the live part)."""

    def __init__(self, first: Any, second: Any) -> None:
        self._counters = (first, second)

    def inc(self, amount: float) -> None:
        for counter in self._counters:
            counter.inc(amount)


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
    # Degraded is still 200: what is stored is still served, so a load
    # balancer should keep sending listeners; the reasons say what is wrong.
    reasons = request.app[STORE].faults() if STORE in request.app else []
    # And what other parts name (a cluster node that lost Redis: docs/cluster.md).
    health = request.app.get(HEALTH)
    reasons = [*reasons, *(health.reasons if health is not None else [])]
    if reasons:
        return web.json_response({"status": "degraded", "reason": reasons[0], "reasons": reasons})
    return web.json_response({"status": "ok"})


@routes.get("/metrics")
@endpoint
async def metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


def _listing(app: web.Application) -> tuple[Listing, LocalSource | None]:
    return (app[LISTING] if LISTING in app else Listing()), (app[LOCAL_SOURCE] if LOCAL_SOURCE in app else None)


async def listed_tracks(app: web.Application) -> list[Track]:
    """What ``GET /v1/tracks`` lists (the admin's count is this list's)."""
    listing, local = _listing(app)
    return await listing.listed(local, app[CATALOG])


async def library_tracks(app: web.Application) -> list[Track]:
    """The library's tracks, as the listing's last walk found them."""
    listing, local = _listing(app)
    return await listing.library(local, app[CATALOG])


@routes.get("/v1/tracks")
@endpoint
async def list_tracks(request: web.Request) -> web.Response:
    listing, local = _listing(request.app)
    body = await listing.body(local, request.app[CATALOG], _base(request))
    return web.Response(body=body, content_type="application/json", headers=cors_headers(request))


@routes.post("/v1/tracks")
@endpoint
async def add_track(request: web.Request) -> web.Response:
    body = await read_json(request, MAX_JSON_BODY)
    if not isinstance(body, dict) or not isinstance(body.get("url"), str) or not body["url"].strip():
        raise BadRequest('expected {"url": "<http(s) URL>"}', code="bad_request")
    url = body["url"].strip()
    if len(url) > 4096:
        raise BadRequest("the URL is too long", code="bad_url")
    track, created = await register_url(request.app, url, request_client(request))
    return web.json_response(track.public(_base(request)), status=201 if created else 200, headers=cors_headers(request))


@routes.get("/v1/tracks/{id}")
@endpoint
async def get_track(request: web.Request) -> web.Response:
    return web.json_response((await _track(request)).public(_base(request)), headers=cors_headers(request))


@routes.get("/v1/tracks/{id}/manifest")
@endpoint
async def get_manifest(request: web.Request) -> web.Response:
    track = await _track(request)
    if track.live:
        after = _index_param(request, "after", "bad_after")
        live = await _live(request).manifest(track, request.query.get("rendition"), client=request_client(request),
                                             after=after)
        answer = web.json_response(live, headers={"Cache-Control": LIVE_SHORT, **cors_headers(request)})
        # Polled once a chunk by every listener: gzip when asked (the hashes are hex, half of it saved).
        answer.enable_compression()
        return answer
    manifest = await request.app[RENDITIONS].manifest(
        track, request.query.get("rendition"), client=request_client(request))
    cache = "public, max-age=300" if manifest["complete"] else NO_CACHE
    return web.json_response(manifest, headers={"Cache-Control": cache, **cors_headers(request)})


@routes.get("/v1/tracks/{id}/init")
@endpoint
async def get_init(request: web.Request) -> web.StreamResponse:
    track = await _track(request)
    if track.live:
        epoch = _epoch(request)
        live, name = _live(request), request.query.get("rendition")
        data, sha = await live.init(track, name, epoch, client=request_client(request))
        # An epoch's init never changes; "the current one" does.
        return await _send_audio(request, data, etag=sha, complete=False, kind="init", content_type=_live_type(live, name),
                                 cache=IMMUTABLE if epoch is not None else LIVE_SHORT, live=True)
    media = _media(request)
    data, sha, complete = await media.init(track, client=request_client(request))
    return await _send_audio(request, data, etag=sha, complete=complete, kind="init", content_type=_content_type(media))


def _epoch(request: web.Request) -> int | None:
    return _index_param(request, "epoch", "bad_epoch")


def _index_param(request: web.Request, name: str, code: str) -> int | None:
    """A live index in the query (``?epoch=``, ``?after=``): ASCII digits, at most ``MAX_INDEX``; None if absent."""
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = parse_chunk_index(raw, max_digits=10)
    except ChunkIndexError as exc:
        raise BadRequest(f"{name}: {exc}", code=code) from None
    if value > MAX_INDEX:
        raise BadRequest(f"{name} {value} is past {MAX_INDEX}", code=code)
    return value


@routes.get("/v1/tracks/{id}/stream")
@endpoint
async def get_stream(request: web.Request) -> web.StreamResponse:
    track = await _track(request)
    client = request_client(request)
    status, length = 200, None
    pieces: AsyncGenerator[bytes, None]
    counter: Any = request.app[METRICS].server_bytes_by_kind["stream"]
    if track.live:
        live, name = _live(request), request.query.get("rendition")
        headers = {"Content-Type": _live_type(live, name), "Cache-Control": NO_CACHE, **cors_headers(request)}
        pieces = _pieces(live.stream(track, name, client=client))
        counter = _Both(counter, request.app[METRICS].live_server_bytes)
        return await _stream_answer(request, track, pieces, status=status, length=length, headers=headers,
                                    counter=counter)
    media = _media(request)
    headers = {"Content-Type": _content_type(media), "Cache-Control": NO_CACHE, **cors_headers(request)}
    cached = media.cached_manifest(track)
    if cached is not None and cached["init"] is not None:  # complete: its size is known, Range works
        sizes = [cached["init"]["size"], *(c["size"] for c in cached["chunks"])]
        length = sum(sizes)
        headers["Accept-Ranges"] = "bytes"
        decision = _range(request, length, None)
        if isinstance(decision, Partial):
            status, length = 206, decision.length
            headers["Content-Range"] = decision.content_range
            pieces = _range_pieces(media, track, sizes, decision, client)
        else:
            pieces = _pieces(media.stream(track, client=client))
    else:
        pieces = _pieces(media.stream(track, client=client))
    return await _stream_answer(request, track, pieces, status=status, length=length, headers=headers, counter=counter)


async def _stream_answer(
    request: web.Request, track: Track, pieces: AsyncGenerator[bytes, None], *, status: int, length: int | None,
    headers: dict[str, str], counter: Any,
) -> web.StreamResponse:
    # The first piece is awaited before the status goes out, so upstream
    # and store errors still get their JSON answer.
    try:
        first = await anext(pieces)
    except BaseException:
        await pieces.aclose()
        raise
    response = web.StreamResponse(status=status, headers=headers)
    if length is not None:
        response.content_length = length
    if request.method == "HEAD":
        await pieces.aclose()
        await response.prepare(request)
        return response
    streams = request.app[STREAMS] if STREAMS in request.app else set()
    transport = _cap_send_buffer(request)
    await response.prepare(request)
    if transport is not None:
        streams.add(transport)
    try:
        # response.write waits for the socket to drain past the high-water
        # mark: a slow reader slows this loop instead of growing a buffer.
        await response.write(first)
        counter.inc(len(first))
        async for data in pieces:
            view = memoryview(data)
            for offset in range(0, len(data), WRITE_PIECE):
                piece = view[offset : offset + WRITE_PIECE]
                await response.write(piece)
                counter.inc(len(piece))
    except ZtreamError as exc:
        # Too late for a status: end the body short (no closing chunk, or
        # fewer bytes than Content-Length), so the client sees a truncated
        # stream rather than a silently complete one.
        log.warning("stream of %s ended early: %s", track.id, exc.detail)
        if request.transport is not None:
            request.transport.abort()
        return response
    except ConnectionError as exc:
        # A listener who leaves (or shutdown ending the answer) is ordinary.
        log.debug("stream of %s: the reader left (%s)", track.id, type(exc).__name__)
        return response
    finally:
        if transport is not None:
            streams.discard(transport)
        await pieces.aclose()
    await response.write_eof()
    return response


async def _pieces(stream: AsyncGenerator[tuple[PieceKind, bytes], None]) -> AsyncGenerator[bytes, None]:
    async with contextlib.aclosing(stream):
        async for _kind, data in stream:
            yield data


async def _range_pieces(
    media: MediaService, track: Track, sizes: list[int], part: Partial, client: str
) -> AsyncGenerator[bytes, None]:
    """The bytes ``part`` of a complete track's stream; only the pieces it overlaps are read."""
    offset = 0
    for number, size in enumerate(sizes):
        if offset > part.end:
            return
        if offset + size > part.start:
            if number == 0:
                data = (await media.init(track, client=client))[0]
            else:
                data = (await media.chunk(track, number - 1, client=client))[0]
            yield data[max(part.start - offset, 0) : part.end - offset + 1]
        offset += size


def _cap_send_buffer(request: web.Request) -> asyncio.Transport | None:
    transport = request.transport
    if transport is None:
        return None
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_SNDBUF)
        except OSError as exc:  # not a TCP socket (a test transport): nothing to cap
            log.debug("cannot cap SO_SNDBUF: %r", exc)
    return transport


def end_streams(app: web.Application) -> None:
    """Shutdown: end every /stream answer now, unfinished (aborted, so it never looks complete)."""
    for transport in list(app.get(STREAMS, ())):
        transport.abort()
