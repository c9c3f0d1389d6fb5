"""``create_app(config)``: the aiohttp application and its services.

Services hang on typed ``AppKey``s and live in one ``cleanup_ctx``, so
shutdown closes them in reverse order: running transcodes are cancelled (their
ffmpeg process groups killed), the fetcher's connections and the store closed.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from transcode.ffmpeg import find_ffmpeg, make_rendition

from .appkeys import (
    CONFIG,
    FETCH_SOURCES,
    FETCHER,
    LOCAL_SOURCE,
    METRICS,
    REGISTRY,
    STORE,
    TRANSCODER,
)
from .config import Config
from .control import setup_control
from .demo import ensure_demo_library
from .http_api import not_found, routes
from .metrics import Metrics
from .sources.base import Source
from .sources.fetch import SafeFetcher
from .sources.local import LocalSource
from .sources.soundcloud import SoundCloudSource
from .sources.url import UrlSource
from .store import ChunkStore
from .tracks import TrackRegistry
from .web import setup_web
from .transcoder import Transcoder

__all__ = ["create_app"]

log = logging.getLogger("ztream.app")


async def _services(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    metrics = app[METRICS]
    loop = asyncio.get_running_loop()
    binary = find_ffmpeg(config.transcode.ffmpeg)
    rendition = await loop.run_in_executor(
        None,
        lambda: make_rendition(binary, bitrate=config.transcode.bitrate, chunk_seconds=config.transcode.chunk_seconds),
    )
    cache_dir = config.cache_dir
    store = ChunkStore(cache_dir / "chunks", config.cache.max_bytes)
    registry = TrackRegistry(cache_dir / "tracks")
    metrics.track_cache_bytes(store.volume)

    def counter(source: str) -> Any:
        return metrics.upstream_bytes.labels(source).inc

    fetcher = SafeFetcher(
        allow_hosts=config.url.allow_hosts,
        connect_timeout=config.url.connect_timeout,
        read_timeout=config.url.read_timeout,
    )
    url_source = UrlSource(fetcher, max_bytes=config.url.max_bytes, count=counter("url"))
    dirs = list(config.local.dirs)
    if config.local.demo and not dirs:
        demo = await loop.run_in_executor(None, ensure_demo_library, cache_dir / "demo", binary)
        dirs.append(str(demo))
    local_source = LocalSource(dirs, max_bytes=config.url.max_bytes, count=counter("local"))
    for track in local_source.scan():
        registry.add(track)
    sources: dict[str, Source] = {"url": url_source, "local": local_source}
    fetch_sources: list[Any] = [url_source]
    if config.soundcloud.client_id:
        soundcloud = SoundCloudSource(
            fetcher, config.soundcloud, max_bytes=config.url.max_bytes, count=counter("soundcloud")
        )
        sources["soundcloud"] = soundcloud
        fetch_sources.insert(0, soundcloud)  # before the catch-all url source
    transcoder = Transcoder(
        store=store,
        registry=registry,
        sources=sources,
        rendition=rendition,
        metrics=metrics,
        timeout=config.transcode.timeout_seconds,
        max_duration=config.url.max_duration_seconds,
        max_concurrent=config.transcode.max_concurrent,
        wait_seconds=config.server.chunk_wait_seconds,
    )
    app[STORE] = store
    app[REGISTRY] = registry
    app[FETCHER] = fetcher
    app[LOCAL_SOURCE] = local_source
    app[FETCH_SOURCES] = fetch_sources
    app[TRANSCODER] = transcoder
    log.info("ffmpeg %s (%s), rendition %s", binary, rendition.version, rendition.id)
    # Everything built so far lives as long as the app: keep it out of the
    # garbage collector's full passes, which otherwise tax every request.
    gc.freeze()
    try:
        yield
    finally:
        await transcoder.close()
        await fetcher.aclose()
        registry.close()
        store.close()


def create_app(config: Config) -> web.Application:
    app = web.Application(client_max_size=64 * 1024)
    app[CONFIG] = config
    app[METRICS] = Metrics()
    app.cleanup_ctx.append(_services)
    app.add_routes(routes)
    setup_control(app, config, app[METRICS])

    async def get_track(track_id: str) -> dict[str, Any] | None:
        track = app[REGISTRY].get(track_id)
        return track.public() if track is not None else None

    setup_web(app, public_url=config.public_url, embed_origins=config.server.embed_origins, get_track=get_track)
    app.router.add_route("*", "/{tail:.*}", not_found)
    return app
