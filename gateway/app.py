"""``create_app(config)``: the aiohttp application and its services.

Services hang on typed ``AppKey``s and live in one ``cleanup_ctx``, so
shutdown closes them in reverse order: running transcodes are cancelled (their
ffmpeg process groups killed), the fetcher's connections and the store closed.

``serve(app, host, port)`` runs it for ``ztream serve``. Shutdown (SIGTERM or
SIGINT) is bounded whatever is connected: ffmpeg first (every transcode is
cancelled, which kills its process group and answers its waiters), then every
``/stream`` answer is aborted (a half-sent body must not look complete), then
the remaining requests get ``SHUTDOWN_GRACE`` seconds before they are
cancelled. Connections answer even aiohttp's own protocol errors in the JSON
shape (``ZtreamRunner``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from transcode.ffmpeg import Rendition, find_ffmpeg, make_live_rendition, make_rendition

from .admin import LIVE_CONFIG, LiveConfig, setup_admin
from .cluster import CLUSTER, Cluster, ClusterTracker, node_id, setup_cluster
from .config import CONFIG, Config
from .demo import ensure_demo_library
from .health import HEALTH, Health
from .http import ORIGINS, OriginPolicy
from .http.api import STREAMS, end_streams, not_found, routes
from .http.client_address import TRUSTED_PROXIES, TrustedProxies
from .http.connections import (
    CONNECTIONS,
    ConnectionLimits,
    Guard,
    GuardedRunner,
    fit_open_files,
    refuse_over_cap,
    runner_options,
)
from .http.extras import routes as extras_routes
from .http.listing import LISTING, Listing
from .http.pages import setup_pages
from .http.registration import REGISTRATIONS, RegistrationLimiter
from .live import LIVE, LiveService
from .live.stations import register_stations
from .media import CATALOG, MEDIA, RENDITIONS, STORE
from .media.catalog import Track, TrackCatalog
from .media.events import EventsHook
from .media.extras import ExtrasStore, extras_bound
from .media.fairness import SlotLimits
from .media.renditions import Renditions
from .media.service import MediaService
from .media.store import ChunkStore
from .media.types import TrackJSON
from .metrics import METRICS, Metrics
from .nat.service import setup_nat
from .sources import FETCH_SOURCES, FETCHER, LOCAL_SOURCE, build_sources
from .swarm import SwarmSockets, Tracker, make_hub, make_networks, setup_swarm

__all__ = ["create_app", "serve", "SHUTDOWN_GRACE"]

log = logging.getLogger("ztream.app")

# What requests still running after ffmpeg is gone and the streams are ended
# get to finish, then the same again once cancelled: 2 x 0.5 s, inside the 2 s
# a SIGTERM may take (docs/http.md).
SHUTDOWN_GRACE = 0.5


async def _services(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    metrics = app[METRICS]
    loop = asyncio.get_running_loop()
    binary = find_ffmpeg(config.transcode.ffmpeg)
    rendition = await loop.run_in_executor(
        None,
        lambda: make_rendition(
            binary, bitrate=config.transcode.bitrate, chunk_seconds=config.transcode.chunk_seconds, extras=True
        ),
    )
    cache_dir = config.cache_dir
    store = ChunkStore(
        cache_dir / "chunks", config.cache.max_bytes, on_corruption=lambda _key: metrics.store_corruptions.inc()
    )
    # In a cluster the catalog is a replica of the one in Redis: its changes go
    # there, and an id it does not know is looked up there.
    cluster = app.get(CLUSTER)
    shared = cluster.catalog if cluster is not None else None
    catalog = await loop.run_in_executor(
        None, lambda: TrackCatalog(cache_dir / "tracks", max_tracks=config.cache.max_tracks,
                                   max_bytes=config.cache.max_track_bytes, shared=shared))
    extras = ExtrasStore(cache_dir / "extras", extras_bound(config.cache.max_bytes))
    metrics.track_cache_bytes(store.volume)

    # Sources are built by gateway.sources; gateway.admin.live rebuilds them on a live change.
    demo_dir = None
    if config.local.demo and not config.local.dirs:
        demo_dir = await loop.run_in_executor(None, ensure_demo_library, cache_dir / "demo", binary)
    sources = build_sources(config, metrics, demo_dir=demo_dir)
    for track in sources.local.scan():
        catalog.add(track)
    fetch_sources: list[Any] = sources.fetch_order()
    # In a cluster a flight's events may come from the node owning the track
    # (or, for a library file this node lacks, from one that has it).
    live_config = app[LIVE_CONFIG]

    def can_make(track: Track) -> bool:
        current = live_config.sources.local if live_config.sources is not None else sources.local
        return track.source != "local" or current.has(track)

    ownership = cluster.track_ownership(rendition, can_make=can_make) if cluster is not None else None
    slot_limits = SlotLimits(
        max_concurrent=config.transcode.max_concurrent,
        reserved=config.transcode.reserved_slots,
        per_client=config.transcode.max_per_client,
        per_host=config.transcode.max_per_host,
    )
    def media_service(rendition: Rendition, *, extras: ExtrasStore | None = None,
                      events_hook: EventsHook | None = None) -> MediaService:
        # Every rendition's service: the same store, catalog, sources and limits
        # (the shares per client and upstream host are counted per rendition).
        return MediaService(
            store=store,
            catalog=catalog,
            sources=sources.mapping(),
            rendition=rendition,
            metrics=metrics,
            timeout=config.transcode.timeout_seconds,
            max_duration=config.url.max_duration_seconds,
            max_concurrent=config.transcode.max_concurrent,
            wait_seconds=config.server.chunk_wait_seconds,
            slot_limits=slot_limits,
            min_speed=config.transcode.min_speed,
            speed_grace=config.transcode.speed_grace_seconds,
            extras=extras,
            events_hook=events_hook,
        )

    media = media_service(rendition, extras=extras, events_hook=ownership.events if ownership is not None else None)

    def other_rendition(name: str) -> MediaService:
        # Asked for by a listener whose MSE does not take WebM/Opus: made here,
        # without extras (the default rendition's transcode has them).
        return media_service(make_rendition(
            binary, bitrate=config.transcode.bitrate, chunk_seconds=config.transcode.chunk_seconds, kind=name))

    renditions = Renditions(media, other_rendition)
    live_default = await loop.run_in_executor(None, lambda: make_live_rendition(
        binary, bitrate=config.transcode.bitrate, chunk_seconds=config.live.chunk_seconds))

    def live_rendition(name: str) -> Rendition:
        # Files' argv with the live chunk length and short probing: the same encoder, a shorter cut.
        if name == live_default.name:
            return live_default
        return make_live_rendition(binary, bitrate=config.transcode.bitrate,
                                   chunk_seconds=config.live.chunk_seconds, kind=name)

    # In a cluster one node ingests each station; the others copy its window.
    live_owner = cluster.live_ownership(chunk_wait=3 * config.live.chunk_seconds + 2.0) if cluster is not None else None
    live = LiveService(config=config.live, renditions=live_rendition, sources=lambda: media.sources,
                       metrics=metrics, slot_limits=slot_limits,
                       ingest_hook=live_owner.run if live_owner is not None else None)
    app[LIVE] = live
    stations = register_stations(catalog, config.live)
    app[STORE] = store
    app[CATALOG] = catalog
    app[FETCHER] = sources.fetcher
    app[LOCAL_SOURCE] = sources.local
    app[FETCH_SOURCES] = fetch_sources
    app[MEDIA] = media
    app[RENDITIONS] = renditions
    app[LIVE_CONFIG].attach(
        sources, metrics=metrics, transcoder=media, registry=catalog,
        fetch_sources=fetch_sources, demo_dir=demo_dir,
    )
    log.info("ffmpeg %s (%s), rendition %s", binary, rendition.version, rendition.id)
    for declared, track in zip(config.live.stations, stations, strict=True):
        live.declare(track, always=declared.mode == "always")
    # Everything built so far lives as long as the app: keep it out of the
    # garbage collector's full passes, which otherwise tax every request.
    gc.freeze()
    try:
        yield
    finally:
        await live.close()
        if live_owner is not None:
            await live_owner.close()  # its HTTP session, once no station follows through it
        await renditions.close()
        if ownership is not None:
            await ownership.close()  # its HTTP session, once no flight pulls through it
        await app[LIVE_CONFIG].aclose()  # the current fetcher and any retired one
        catalog.close()
        extras.close()
        store.close()


def create_app(config: Config, *, config_path: str | Path | None = None,
               overrides: dict[str, Any] | None = None) -> web.Application:
    """The app for ``config``; ``config_path`` is the file it came from (reloads re-read it),
    ``overrides`` the command line's settings (``--host``, ``--port``), which reloads keep."""
    # refuse_over_cap: a connection over a cap gets its JSON refusal (http/connections.py).
    app = web.Application(client_max_size=64 * 1024, middlewares=[refuse_over_cap])
    metrics, health, live = Metrics(), Health(), LiveConfig(config, config_path, overrides=overrides)
    app[CONFIG] = config
    app[LIVE_CONFIG] = live
    app[METRICS] = metrics
    app[HEALTH] = health
    # One origin policy for CORS, the embed page's framing and the control socket.
    app[ORIGINS] = OriginPolicy(config.server.embed_origins, config.public_url)
    app[STREAMS] = set()
    # Whose X-Forwarded-For is believed: every per-client limit and log line asks request_client().
    app[TRUSTED_PROXIES] = TrustedProxies(config.server.trusted_proxies)
    limits = ConnectionLimits(total=config.server.max_connections, per_client=config.server.max_connections_per_client)
    app[CONNECTIONS] = Guard(limits, app[TRUSTED_PROXIES])
    app[LISTING] = Listing()
    app[REGISTRATIONS] = RegistrationLimiter(config.server.registrations_per_minute, config.server.registrations_per_hour)
    app.cleanup_ctx.append(_services)
    app.on_shutdown.append(_stop_work)
    app.add_routes(routes)
    app.add_routes(extras_routes)
    plan = setup_nat(app, config, metrics)  # before the swarm: welcome carries its ice servers
    # One node alone, or one node of a cluster: decided here, once; each piece
    # is built with its collaborators and nothing is swapped afterwards.
    cluster: Cluster | None = None
    turn = plan.turn_for if plan.has_turn else None
    # Where each listener is (its LAN, its network): the tracker prefers candidates near the asker.
    networks, asn_database = make_networks(config)
    if asn_database is not None:
        database = asn_database

        async def close_asn_database(_app: web.Application) -> None:
            database.close()

        app.on_cleanup.append(close_asn_database)
    if config.cluster.redis_url:
        tracker = ClusterTracker(node_id(config), upload_slots=config.p2p.upload_slots, networks=networks)
        hub = make_hub(config, tracker, ice_servers=plan.for_peer, turn=turn)
        cluster = Cluster(config, tracker=tracker, hub=hub, health=health, metrics=metrics)
    else:
        hub = make_hub(config, Tracker(upload_slots=config.p2p.upload_slots, networks=networks),
                       ice_servers=plan.for_peer, turn=turn)
    sockets = SwarmSockets(hub, config, metrics, federation=cluster.federation if cluster is not None else None)
    setup_swarm(app, hub, sockets)
    if cluster is not None:
        # Its lifetime comes after the media service's: it starts once that exists, stops before it.
        setup_cluster(app, cluster, sockets=sockets, live=live)

    async def get_track(track_id: str) -> TrackJSON | None:
        track = await app[CATALOG].find(track_id)
        return track.public(app[ORIGINS].public_url) if track is not None else None

    setup_pages(app, policy=app[ORIGINS], get_track=get_track)
    setup_admin(app, stats={"cluster": cluster.stats} if cluster is not None else None)
    # [\s\S], not ".": a path with an encoded newline (%0a) is a path too, and gets the JSON 404.
    app.router.add_route("*", r"/{tail:[\s\S]*}", not_found)
    return app


async def _stop_work(app: web.Application) -> None:
    """First step of shutdown: no transcode (ffmpeg) and no /stream answer outlives it."""
    if LIVE in app:
        await app[LIVE].close()
    if RENDITIONS in app:
        await app[RENDITIONS].close()
    elif MEDIA in app:
        await app[MEDIA].close()
    end_streams(app)


async def serve(app: web.Application, host: str, port: int, *, sockets: list[socket.socket] | None = None) -> None:
    """Serve ``app`` until SIGTERM or SIGINT, then shut down within about 2 s.

    ``sockets`` (bound already: a worker of ``ztream serve --workers N``) replace ``host:port``.
    """
    server = app[CONFIG].server
    # Checked at start: a cap the open-file limit cannot hold would fail with EMFILE instead of a refusal.
    app[CONNECTIONS].limits.total = fit_open_files(server.max_connections)
    runner = GuardedRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_GRACE, **runner_options(server)
    )
    await runner.setup()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        sites = [web.SockSite(runner, sock) for sock in sockets] if sockets else [web.TCPSite(runner, host, port)]
        for site in sites:
            await site.start()
        await stop.wait()
        log.info("shutting down")
        await _stop_work(app)  # ffmpeg first, before connections are touched
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
