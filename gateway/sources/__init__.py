"""Upstreams: where a track's bytes come from, and the set the gateway runs with.

``build_sources(config, metrics)`` makes one generation: a ``SafeFetcher``
(the only way out to the network, see ``netpolicy``) and the URL, local and
SoundCloud sources around it. The app builds one at start-up; a live change of
``sources.*`` builds the next (``gateway.admin.live``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from ..config import Config, ConfigError
from ..media.upstream import Source
from ..metrics import Metrics
from .base import CountBytes
from .fetch import SafeFetcher
from .local import LocalSource
from .soundcloud import SoundCloudDisabled, SoundCloudSource
from .url import UrlSource

__all__ = ["SourceSet", "build_sources", "local_dirs", "FETCHER", "LOCAL_SOURCE", "FETCH_SOURCES"]

# The current generation's fetcher and local source (the local source is one
# object for the app's lifetime: a change updates its directories in place).
FETCHER = web.AppKey("fetcher", SafeFetcher)
LOCAL_SOURCE = web.AppKey("local_source", LocalSource)
# Sources that register tracks from a URL, asked in order (`accepts(url)`).
FETCH_SOURCES = web.AppKey("fetch_sources", list[Any])


@dataclass
class SourceSet:
    """One generation of sources and the fetcher they share."""

    fetcher: SafeFetcher
    url: UrlSource
    local: LocalSource
    soundcloud: SoundCloudSource | None

    def mapping(self) -> dict[str, Source]:
        """For ``MediaService.sources``: by ``Track.source``."""
        sources: dict[str, Source] = {"url": self.url, "local": self.local}
        if self.soundcloud is not None:
            sources["soundcloud"] = self.soundcloud
        return sources

    def fetch_order(self) -> list[Any]:
        """For ``app[FETCH_SOURCES]``: SoundCloud before the catch-all URL source."""
        first = self.soundcloud if self.soundcloud is not None else SoundCloudDisabled()
        return [first, self.url]


def local_dirs(config: Config, demo_dir: Path | None) -> list[str]:
    """The library directories: the configured ones, else the demo library when it is on."""
    dirs = list(config.local.dirs)
    if config.local.demo and not dirs and demo_dir is not None:
        dirs.append(str(demo_dir))
    return dirs


def build_sources(config: Config, metrics: Metrics, *, demo_dir: Path | None = None) -> SourceSet:
    """A new fetcher and the sources of ``config`` around it.

    ``demo_dir`` is the demo library, used when ``local.demo`` is on and no
    directory is configured.

    Raises:
        ConfigError: settings no source accepts (e.g. SoundCloud's "auto"
            client id with a client secret); nothing is left open then.
    """

    def counter(source: str) -> CountBytes:
        return metrics.upstream_bytes.labels(source).inc

    fetcher = SafeFetcher(
        allow_hosts=config.url.allow_hosts,
        connect_timeout=config.url.connect_timeout,
        read_timeout=config.url.read_timeout,
        min_bytes_per_second=config.url.min_bytes_per_second,
    )
    soundcloud = None
    if config.soundcloud.client_id:
        try:
            soundcloud = SoundCloudSource(
                fetcher, config.soundcloud, max_bytes=config.url.max_bytes, count=counter("soundcloud")
            )
        except ValueError as exc:
            # The fetcher has made no connection yet; dropping it leaks nothing.
            message = str(exc)
            if not message.startswith("sources.soundcloud."):
                message = f"sources.soundcloud: {message}"
            raise ConfigError(message) from None
    url = UrlSource(fetcher, max_bytes=config.url.max_bytes, count=counter("url"))
    local = LocalSource(local_dirs(config, demo_dir), max_bytes=config.url.max_bytes, count=counter("local"))
    return SourceSet(fetcher=fetcher, url=url, local=local, soundcloud=soundcloud)
