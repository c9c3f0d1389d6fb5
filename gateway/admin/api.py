"""The administration API (``/v1/admin/*``) and the admin page (``/admin``).

Everything here is off, answering a JSON 404, while ``admin.token`` is empty.
The token is read from the live configuration on every request, so a reload
can turn the API on, off, or change the token.

- Authentication: ``Authorization: Bearer <token>``, compared in constant time
  (``hmac.compare_digest``). No or malformed header: 401 ``unauthorized``; a
  wrong token: 403 ``forbidden``. After ``MAX_FAILURES`` wrong tokens within
  ``FAILURE_WINDOW`` seconds from one client address, that address gets 429
  with ``Retry-After`` until the window has passed, right token or not;
  other addresses are not affected. The address is the one the trusted proxy
  forwarded for (``server.trusted_proxies``, ``http/client_address.py``).
- Admin answers carry no CORS headers and the preflight of ``/v1/*`` does not
  allow ``Authorization``: the API is for the same-origin admin page and for
  tools like curl, never for a third-party page.
- Secrets (``SECRET_KEYS``) are write-only: answers show ``{"set": bool}`` in
  their place, and logs name changed keys, never values.
- ``PUT /v1/admin/sources`` validates the running configuration with the
  change through ``config_from_dict`` (errors name the key, 400, nothing
  changes), writes the keys whose value it changes into the overlay file
  (a key sent with its running value is not written, so the operator's file
  stays in charge of it; a key set back to the file's value leaves the
  overlay) (``overlay.py``:
  the operator's comments and layout stay) atomically (temporary file, fsync,
  ``os.replace``; mode 0600 since it may hold a secret), then applies it live
  (``live.py``). The HTTP contract of these routes is in docs/http.md.

Routes: ``GET /admin``; ``GET|PUT /v1/admin/sources``; ``POST /v1/admin/reload``;
``GET /v1/admin/tracks``; ``DELETE /v1/admin/tracks/{id}``; ``GET /v1/admin/stats``.
"""

from __future__ import annotations

import functools
import hmac
import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any, Literal, get_args

from aiohttp import web

from ..config import SECRET_KEYS, Config, ConfigError, config_from_dict, config_to_dict, read_overlay
from ..errors import BadRequest, Forbidden, NotFound, Unauthorized, ZtreamError
from ..http.api import library_tracks, listed_tracks
from ..http.client_address import request_client
from ..http.pages import CLIENT_DIR
from ..http.responses import Handler, endpoint, read_json, render_error
from ..live import LIVE
from ..media import CATALOG, MEDIA, STORE
from ..media.catalog import Track, is_track_id
from ..media.service import MediaService
from ..metrics import METRICS, PEER_SCOPES, SERVER_KINDS
from ..nat.stun import RESULTS as STUN_RESULTS
from ..swarm import HUB
from .changes import Purged, Reloaded
from .live import LIVE_CONFIG, LiveConfig, flatten
from .overlay import HEADER, REMOVE, edit_toml, write_atomic

__all__ = [
    "ATTEMPTS",
    "Attempts",
    "sources_view",
    "admin_page",
    "get_sources",
    "put_sources",
    "post_reload",
    "delete_track",
    "get_tracks",
    "track_state",
    "get_stats",
    "MAX_FAILURES",
    "FAILURE_WINDOW",
]

log = logging.getLogger("ztream.admin")

MAX_BODY = 16 * 1024
MAX_FAILURES = 10
FAILURE_WINDOW = 60.0
SOURCE_SECTIONS = ("url", "local", "soundcloud")
# GET /v1/admin/tracks: rows per answer by default and at most; records looked at.
TRACKS_LIMIT = 200
MAX_TRACKS = 1_000_000
TrackState = Literal["ready", "transcoding", "failed", "never_played"]
TRACK_STATES: tuple[TrackState, ...] = get_args(TrackState)

# The admin page: no inline script or style, nothing from elsewhere, never framed.
PAGE_CSP = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
])


class TooManyAttempts(ZtreamError):
    status = 429
    code = "rate_limited"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class Conflict(ZtreamError):
    status = 409
    code = "conflict"


class Attempts:
    """Failed sign-ins by client address: a sliding window, bounded in size.

    Pure: the caller passes ``now``; no timers.
    """

    def __init__(self, limit: int = MAX_FAILURES, window: float = FAILURE_WINDOW, max_clients: int = 4096) -> None:
        self.limit = limit
        self.window = window
        self.max_clients = max_clients
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, client: str, now: float) -> deque[float] | None:
        times = self._failures.get(client)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[client]
            return None
        return times

    def blocked_for(self, client: str, now: float) -> float:
        """Seconds ``client`` must still wait (0: may try)."""
        times = self._recent(client, now)
        if times is None or len(times) < self.limit:
            return 0.0
        return times[-self.limit] + self.window - now

    def fail(self, client: str, now: float) -> None:
        times = self._recent(client, now)
        if times is None:
            times = self._failures[client] = deque(maxlen=self.limit)
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)
        self._failures.move_to_end(client)
        times.append(now)


ATTEMPTS = web.AppKey("admin_attempts", Attempts)

# More sections of ``GET /v1/admin/stats``, by name: each called on every request.
StatsSection = Callable[[], dict[str, Any]]
STATS_SECTIONS = web.AppKey("admin_stats_sections", dict[str, StatsSection])


# -- views -----------------------------------------------------------------------


def sources_view(config: Config) -> dict[str, Any]:
    """``[sources.*]`` as JSON, every secret replaced by ``{"set": bool}``."""
    tables: dict[str, Any] = config_to_dict(config)["sources"]
    for section, values in tables.items():
        for key in values:
            if f"sources.{section}.{key}" in SECRET_KEYS:
                values[key] = {"set": bool(values[key])}
    return tables


def _stats(app: web.Application, listed: int) -> dict[str, Any]:
    registry = app[METRICS].registry

    samples = [s for metric in registry.collect() for s in metric.samples]

    def sample(name: str, labels: dict[str, str] | None = None) -> float:
        """One series' value; with ``labels`` that name only some of its labels, the sum over the rest."""
        wanted = (labels or {}).items()
        return float(sum(s.value for s in samples if s.name == name and wanted <= s.labels.items()))

    server = sum(sample("ztream_server_bytes_total", {"kind": k}) for k in SERVER_KINDS)
    peer = sample("ztream_peer_bytes_total")
    live = app[LIVE_CONFIG]
    hub = app[HUB] if HUB in app else None
    return {
        "time": time.time(),
        "peers_connected": len(hub) if hub is not None else 0,
        "transcodes_running": int(sample("ztream_transcodes_running")),
        "transcodes_total": int(sum(sample("ztream_transcodes_total", {"result": r}) for r in ("ok", "error"))),
        "transcodes_failed": int(sample("ztream_transcodes_total", {"result": "error"})),
        "cache_bytes": app[STORE].volume(),
        "server_bytes": int(server),
        "peer_bytes": int(peer),
        "offload": round(peer / (peer + server), 4) if peer + server > 0 else None,
        # What GET /v1/tracks lists (the admin's track list has every registered one).
        "tracks": listed,
        "tracks_registered": len(app[CATALOG]),
        "config": {"loaded_at": live.loaded_at, "reloads": live.reloads},
        # Why offload is low (docs/p2p.md): the same figures as the dashboard row.
        "p2p": _p2p_figures(sample),
        # Sections others add (a cluster node: "cluster", the whole cluster's figures).
        **{name: section() for name, section in app[STATS_SECTIONS].items()},
    }


def _p2p_figures(sample: Any) -> dict[str, Any]:
    connections = {
        outcome: int(sample("ztream_p2p_connections_total", {"result": result, "candidate": candidate}))
        for outcome, result, candidate in (
            ("host", "connected", "host"), ("srflx", "connected", "srflx"), ("prflx", "connected", "prflx"),
            ("relay", "connected", "relay"), ("unknown", "connected", "unknown"),
            ("failed", "failed", "none"), ("timeout", "timeout", "none"),
        )
    }
    return {
        "connections": connections,
        "without_neighbours": int(sample("ztream_peers_without_neighbours")),
        "relay_bytes": int(sample("ztream_peer_relay_bytes_total")),
        # How near the peers' sources were (docs/p2p.md, "Same network first").
        "peer_bytes_by_scope": {s: int(sample("ztream_peer_bytes_total", {"scope": s})) for s in PEER_SCOPES},
        "stun": {r: int(sample("ztream_stun_requests_total", {"result": r})) for r in STUN_RESULTS},
    }


# -- authentication ------------------------------------------------------------------


def _client(request: web.Request) -> str:
    # Behind a trusted proxy, the address it forwarded for: one client's
    # wrong tokens never lock out another (nor the operator).
    return request_client(request)


def _check_token(request: web.Request) -> None:
    """Raise unless the request carries the current admin token (see the module docstring)."""
    token = request.app[LIVE_CONFIG].current.admin.token
    if not token:
        raise NotFound("the admin API is off (admin.token is empty)", code="not_found")
    attempts = request.app[ATTEMPTS]
    client = _client(request)
    now = time.monotonic()
    wait = attempts.blocked_for(client, now)
    if wait > 0:
        raise TooManyAttempts("too many wrong admin tokens; wait and try again", retry_after=math.ceil(wait))
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise Unauthorized("sign in with the admin token: Authorization: Bearer <token>", code="unauthorized")
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        attempts.fail(client, now)
        log.warning("admin: wrong token from %s on %s %s", client, request.method, request.path)
        raise Forbidden("the admin token is wrong", code="forbidden")


# -- the error path: the gateway's one (gateway/http/responses.py) ---------------------


def admin_endpoint(handler: Handler) -> Handler:
    """Check the token, then run ``handler``; errors are rendered by the one
    error path, and no admin answer (error or not) is ever cached."""

    @functools.wraps(handler)
    async def checked(request: web.Request) -> web.StreamResponse:
        _check_token(request)
        return await handler(request)

    guarded = endpoint(checked)

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        response = await guarded(request)
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    return wrapped


# -- handlers ----------------------------------------------------------------------------


def _sources_answer(request: web.Request, **extra: Any) -> web.Response:
    live = request.app[LIVE_CONFIG]
    body = {
        **sources_view(live.current),
        "saved_to": str(live.overlay),
        "config_file": str(live.path) if live.path is not None else None,
        **extra,
    }
    return web.json_response(body)


@admin_endpoint
async def get_sources(request: web.Request) -> web.Response:
    return _sources_answer(request)


def _overlay_edits(live: LiveConfig, body: dict[str, Any], candidate: Config) -> dict[str, dict[str, Any]]:
    """What the overlay must record of ``body``: only what the admin changed.

    A key sent with the value it runs with now is left out (the admin page
    sends every field; the operator's file must stay in charge of the ones
    nobody touched). A key set to the operator's file's value is removed from
    the overlay, so the file decides it again. Everything else is written.
    """
    running = flatten(config_to_dict(live.current))
    wanted = flatten(config_to_dict(candidate))
    in_file = flatten(config_to_dict(config_from_dict(live.file_tables())))
    in_overlay = flatten(read_overlay(live.overlay))
    edits: dict[str, dict[str, Any]] = {}
    for section, values in body.items():
        for key, value in values.items():
            dotted = f"sources.{section}.{key}"
            if wanted[dotted] == in_file[dotted]:
                if dotted in in_overlay:
                    edits.setdefault(section, {})[key] = REMOVE
            elif wanted[dotted] != running[dotted] or dotted in in_overlay:
                edits.setdefault(section, {})[key] = value
    return edits


@admin_endpoint
async def put_sources(request: web.Request) -> web.Response:
    body = await read_json(request, MAX_BODY)
    if not isinstance(body, dict) or not body:
        raise BadRequest('expected {"url": {...}, "local": {...}, "soundcloud": {...}} (any of them)',
                         code="bad_request")
    for section, values in body.items():
        if section not in SOURCE_SECTIONS:
            raise BadRequest(f"sources.{section}: unknown section", code="invalid_config")
        if not isinstance(values, dict):
            raise BadRequest(f"sources.{section}: expected an object", code="invalid_config")
    live = request.app[LIVE_CONFIG]
    try:
        candidate = live.with_sources(body)
        read_overlay(live.overlay)  # an overlay the operator broke is named before anything changes
    except ConfigError as exc:
        raise BadRequest(str(exc), code="invalid_config") from None
    try:
        edits = _overlay_edits(live, body, candidate)
    except ConfigError as exc:
        raise BadRequest(str(exc), code="invalid_config") from None
    keys = sorted(f"sources.{s}.{k}" for s, values in edits.items() for k in values)

    def save() -> None:
        # Runs under LiveConfig.lock, so two changes never interleave their edits.
        if not edits:
            return
        try:
            old = live.overlay.read_text(encoding="utf-8") if live.overlay.exists() else ""
        except OSError as exc:
            raise ZtreamError(f"could not read {live.overlay}: {exc.strerror}", code="write_failed") from None
        try:
            text = edit_toml(old, {"sources": edits}, header=HEADER)
        except ValueError as exc:
            raise BadRequest(f"sources: {exc}", code="invalid_config") from None
        try:
            write_atomic(live.overlay, text)
        except OSError as exc:
            raise ZtreamError(f"could not write {live.overlay}: {exc.strerror}", code="write_failed") from None

    reason = (f"admin: PUT /v1/admin/sources from {_client(request)} ({', '.join(keys) or 'no change'}), "
              f"saved to {live.overlay}")
    try:
        result = await live.apply(candidate, reason=reason, before_swap=save)
    except ConfigError as exc:
        raise BadRequest(str(exc), code="invalid_config") from None
    await live.on_admin_change.send(Reloaded())
    return _sources_answer(request, changed=list(result.changed))


@admin_endpoint
async def post_reload(request: web.Request) -> web.Response:
    live = request.app[LIVE_CONFIG]
    try:
        result = await live.reload(f"admin: POST /v1/admin/reload from {_client(request)}")
    except ConfigError as exc:
        raise BadRequest(f"{exc} (the running configuration stays)", code="invalid_config") from None
    await live.on_admin_change.send(Reloaded())
    return web.json_response({"status": "reloaded", **result.to_json()})


@admin_endpoint
async def delete_track(request: web.Request) -> web.Response:
    track_id = request.match_info["id"]
    registry = request.app[CATALOG]
    track = await registry.find(track_id) if is_track_id(track_id) else None
    if track is None:
        raise NotFound(f"no track {track_id!r}", code="track_not_found")
    transcoder = request.app[MEDIA]
    if transcoder.flight(track) is not None:
        raise Conflict("the track is being transcoded; purge it once that ends", code="transcode_running")
    if track.live and LIVE in request.app:
        await request.app[LIVE].stop(track_id)
    transcoder.purge(track_id)
    registry.remove(track_id)
    log.info("admin: track %s (%s) purged by %s", track_id, track.source, _client(request))
    await request.app[LIVE_CONFIG].on_admin_change.send(Purged(track_id))
    return web.json_response({"id": track_id, "purged": True})


def track_state(track: Track, media: MediaService) -> TrackState:
    """``transcoding`` while a transcode runs; else ``failed`` when the last one failed,
    ``ready`` once one completed, ``never_played`` before any."""
    if media.flight(track) is not None:
        return "transcoding"
    if track.error_code is not None:
        return "failed"
    return "ready" if track.listed else "never_played"


def _matches(track: Track, words: list[str]) -> bool:
    text = " ".join(filter(None, (track.id, track.title, track.artist, track.album, track.locator))).lower()
    return all(word in text for word in words)


@admin_endpoint
async def get_tracks(request: web.Request) -> web.Response:
    query = request.query
    words = query.get("q", "").lower().split()
    state = query.get("state", "")
    if state and state not in TRACK_STATES:
        raise BadRequest(f"state: expected one of {', '.join(TRACK_STATES)}", code="bad_request")
    try:
        limit = int(query.get("limit", TRACKS_LIMIT))
    except ValueError:
        limit = -1
    if not 1 <= limit <= TRACKS_LIMIT:
        raise BadRequest(f"limit: expected a whole number from 1 to {TRACKS_LIMIT}", code="bad_request")
    media = request.app[MEDIA]
    public = {t.id for t in await listed_tracks(request.app)}
    counts: dict[TrackState, int] = dict.fromkeys(TRACK_STATES, 0)
    rows: list[dict[str, Any]] = []
    for track in [*await library_tracks(request.app), *request.app[CATALOG].recent(limit=MAX_TRACKS)]:
        current = track_state(track, media)
        counts[current] += 1
        if (state and current != state) or not _matches(track, words):
            continue
        rows.append({
            **track.public(),
            "locator": track.locator,
            "created": track.created,
            "state": current,
            "listed": track.id in public,
            "error": track.error_json(),
        })
    return web.json_response({
        "tracks": rows[:limit],
        "matching": len(rows),
        "registered": sum(counts.values()),
        "listed": len(public),
        "states": counts,
    })


@admin_endpoint
async def get_stats(request: web.Request) -> web.Response:
    return web.json_response(_stats(request.app, len(await listed_tracks(request.app))))


async def admin_page(request: web.Request) -> web.StreamResponse:
    if not request.app[LIVE_CONFIG].current.admin.token:
        response = render_error(request, NotFound("the admin API is off (admin.token is empty)", code="not_found"))
        response.headers["Cache-Control"] = "no-store"
        return response
    return web.FileResponse(
        CLIENT_DIR / "admin.html",
        headers={
            "Content-Type": "text/html; charset=utf-8",
            "Content-Security-Policy": PAGE_CSP,
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
        },
    )
