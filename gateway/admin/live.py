"""The live configuration: which ``Config`` is current, reloads, and the sources they rebuild.

Theory of operation
-------------------
A ``Config`` is frozen; what changes is which one is *current*. ``LiveConfig``
holds it, together with the file it came from and the admin overlay beside it
(``config.overlay_path``). A reload (SIGHUP, ``POST /v1/admin/reload``) and an
admin change (``PUT /v1/admin/sources``) both end in :meth:`LiveConfig.apply`:

1. The candidate is validated whole (``config_from_dict``) before anything
   happens; a ``ConfigError`` names the key and leaves everything running as
   it was.
2. Differences are split by key: ``sources.*`` and ``admin.*`` apply live;
   any other changed key (listen address, cache, rendition, p2p) is reported
   as "restart required" and keeps its running value.
3. When a ``sources.*`` key changed, a new ``SafeFetcher`` and new URL and
   SoundCloud sources are built and swapped in: the ``MediaService``'s
   ``sources`` mapping and the list ``POST /v1/tracks`` asks are replaced.
   A running transcode holds the source object it opened, so it finishes on
   the old fetcher; that fetcher is closed once every transcode running at
   the swap has ended (and a grace period for registrations in progress has
   passed). The local source is one object for the app's lifetime
   (``app[LOCAL_SOURCE]``): its directories are updated in place, and since a
   file is checked against them on every open, a removed directory stops
   serving at once while tracks of an added one are registered right away.

Nothing touches connections: listeners, WebSockets and transcodes carry on.
Everything here runs on the event loop, serialised by ``LiveConfig.lock``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from ..config import (
    Config,
    ConfigError,
    config_from_dict,
    config_to_dict,
    load_config,
    merge_tables,
    overlay_path,
    read_overlay,
)
from ..metrics import Metrics
from ..sources import SourceSet, build_sources
from ..sources.fetch import SafeFetcher
from ..media.catalog import TrackCatalog
from ..media.service import MediaService
from .changes import AdminChanges

__all__ = ["LIVE_CONFIG", "LiveConfig", "ReloadResult", "changed_keys", "flatten", "LIVE_PREFIXES"]

log = logging.getLogger("ztream.config")

_T = TypeVar("_T")

# Keys under these prefixes apply without a restart.
LIVE_PREFIXES = ("sources.", "admin.")
# An old fetcher outlives its swap by at least this long (registrations in flight).
RETIRE_GRACE = 30.0


def flatten(tables: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"sources": {"url": {"max_bytes": 1}}}`` -> ``{"sources.url.max_bytes": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in tables.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def changed_keys(old: Config, new: Config) -> list[str]:
    """Dotted names of the keys whose values differ, sorted."""
    a, b = flatten(config_to_dict(old)), flatten(config_to_dict(new))
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def _live(key: str) -> bool:
    return key.startswith(LIVE_PREFIXES)


@dataclass(frozen=True, slots=True)
class ReloadResult:
    changed: tuple[str, ...]  # applied live
    restart_required: tuple[str, ...]  # changed in the file, running value kept

    def to_json(self) -> dict[str, Any]:
        return {"changed": list(self.changed), "restart_required": list(self.restart_required)}


class LiveConfig:
    """The running configuration and the services a change must reach.

    ``current`` is always a valid ``Config``: the one the gateway started
    with, then each successfully applied one. ``path`` is the config file
    (``None``: built-in defaults; a reload then re-reads the overlay alone).
    """

    def __init__(self, config: Config, path: str | Path | None = None) -> None:
        self.current = config
        self.path = Path(path) if path is not None else None
        self.overlay = overlay_path(self.path, config.cache_dir)
        # Without a file, the startup config is the base the overlay goes over.
        self._base = config_to_dict(config) if self.path is None else None
        self.lock = asyncio.Lock()
        # What the admin API changed here, for whoever must follow (changes.py).
        self.on_admin_change = AdminChanges()
        self.loaded_at = time.time()
        self.reloads = 0
        self.sources: SourceSet | None = None
        self.demo_dir: Path | None = None
        self._metrics: Metrics | None = None
        self._transcoder: MediaService | None = None
        self._registry: TrackCatalog | None = None
        self._fetch_sources: list[Any] | None = None
        self._retired: set[SafeFetcher] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def attach(
        self,
        sources: SourceSet,
        *,
        metrics: Metrics,
        transcoder: MediaService,
        registry: TrackCatalog,
        fetch_sources: list[Any],
        demo_dir: Path | None,
    ) -> None:
        """Called once the services exist: what a change swaps sources into."""
        self.sources = sources
        self._metrics = metrics
        self._transcoder = transcoder
        self._registry = registry
        self._fetch_sources = fetch_sources
        self.demo_dir = demo_dir

    # -- reading -------------------------------------------------------------

    def read(self) -> Config:
        """The file and its overlay, validated; raises ``ConfigError`` naming the key."""
        if self.path is not None:
            return load_config(self.path)
        assert self._base is not None
        over = read_overlay(self.overlay)
        try:
            return config_from_dict(merge_tables(self._base, over))
        except ConfigError as exc:
            raise ConfigError(f"{self.overlay}: {exc}") from None

    def with_sources(self, update: dict[str, Any]) -> Config:
        """The running config with ``update`` (``{"url": {...}, ...}``) over its ``sources``.

        Raises ``ConfigError`` naming the key (``sources.url.max_bytes: ...``).
        """
        return config_from_dict(merge_tables(config_to_dict(self.current), {"sources": update}))

    # -- applying ------------------------------------------------------------

    async def reload(self, reason: str) -> ReloadResult:
        """Re-read the file and overlay and apply them; on error keep everything and raise."""
        async with self.lock:
            try:
                new = self.read()
                result = self._apply(new, reason=reason)
            except ConfigError as exc:
                log.error("config reload (%s) failed, the running configuration stays: %s", reason, exc)
                raise
            self.reloads += 1
            self.loaded_at = time.time()
            return result

    async def apply(self, new: Config, *, reason: str, before_swap: Callable[[], None] | None = None) -> ReloadResult:
        """Apply ``new`` (already validated) under the lock; see the module docstring.

        ``before_swap`` runs once the new sources are built and before they
        are swapped in (the admin API writes its overlay there); if it raises,
        nothing changes and the exception propagates.
        """
        async with self.lock:
            return self._apply(new, reason=reason, before_swap=before_swap)

    def _apply(self, new: Config, *, reason: str, before_swap: Callable[[], None] | None = None) -> ReloadResult:
        old = self.current
        changed = changed_keys(old, new)
        live = tuple(k for k in changed if _live(k))
        restart = tuple(k for k in changed if not _live(k))
        merged = old.model_copy(update={"url": new.url, "local": new.local, "soundcloud": new.soundcloud,
                                        "admin": new.admin})
        sources_changed = any(k.startswith("sources.") for k in live)
        built = None
        if sources_changed and self.sources is not None:
            built = build_sources(merged, self._require(self._metrics), demo_dir=self.demo_dir)
        if before_swap is not None:
            try:
                before_swap()
            except BaseException:
                if built is not None:
                    self._retire(built.fetcher, [])
                raise
        if built is not None:
            self._swap(built, merged, local_changed=any(k.startswith("sources.local.") for k in live))
        self.current = merged
        parts = [f"changed {', '.join(live)}" if live else "no live change"]
        if restart:
            parts.append(f"restart required for {', '.join(restart)} (running values kept)")
        # One line, key names only: values (secrets among them) never reach the log.
        log.info("%s: %s", reason, "; ".join(parts))
        return ReloadResult(changed=live, restart_required=restart)

    def _swap(self, built: SourceSet, config: Config, *, local_changed: bool) -> None:
        old = self._require(self.sources)
        transcoder = self._require(self._transcoder)
        # The same LocalSource object stays everywhere; update it in place.
        old.local.dirs, old.local.max_bytes = built.local.dirs, built.local.max_bytes
        built.local = old.local
        # Transcodes already running keep the source (and fetcher) they opened.
        running = transcoder.running_tasks()
        transcoder.sources = built.mapping()
        transcoder.max_duration = config.url.max_duration_seconds
        fetch_sources = self._require(self._fetch_sources)
        fetch_sources[:] = built.fetch_order()
        self.sources = built
        self._retire(old.fetcher, running)
        if local_changed:
            registry = self._require(self._registry)
            for track in built.local.scan():
                registry.add(track)

    def _retire(self, fetcher: SafeFetcher, running: list[asyncio.Task[None]]) -> None:
        """Close ``fetcher`` once ``running`` have ended and the grace period passed."""
        self._retired.add(fetcher)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RETIRE_GRACE
        limit = (self._transcoder.timeout if self._transcoder is not None else 600.0) + RETIRE_GRACE

        async def retire() -> None:
            if running:
                await asyncio.wait(running, timeout=limit)
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            self._retired.discard(fetcher)
            await fetcher.aclose()

        task = loop.create_task(retire(), name="ztream-retire-fetcher")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    def _require(value: _T | None) -> _T:
        if value is None:
            raise RuntimeError("LiveConfig.attach() was not called")
        return value

    async def aclose(self) -> None:
        """At shutdown: close the current fetcher and every retired one still open."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            try:
                await task
            except BaseException:  # noqa: BLE001 - shutting down
                pass
        fetchers = set(self._retired)
        if self.sources is not None:
            fetchers.add(self.sources.fetcher)
        self._retired.clear()
        for fetcher in fetchers:
            await fetcher.aclose()


# The running configuration; the one the app started with is gateway.config.CONFIG.
# Defined here beside its class, re-exported by gateway.admin (api.py reads it too).
LIVE_CONFIG = web.AppKey("live_config", LiveConfig)
