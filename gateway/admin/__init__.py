"""Administration: the admin API and page, the live configuration, SIGHUP, the overlay file.

- ``api.py``: ``/v1/admin/*`` and ``/admin`` (off while ``admin.token`` is empty).
- ``live.py``: ``LiveConfig``, which config is current and how a change or a
  reload reaches the running services.
- ``overlay.py``: the TOML file the admin API writes (comments kept), replaced atomically.
- ``changes.py``: the signal telling subscribers (a cluster node) what the admin API changed.

``setup_admin(app)`` adds the routes; ``handle_sighup(app)`` makes SIGHUP reload.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from ..config import ConfigError
from .api import (
    ATTEMPTS,
    STATS_SECTIONS,
    Attempts,
    StatsSection,
    admin_page,
    delete_track,
    get_sources,
    get_stats,
    get_tracks,
    post_reload,
    put_sources,
)
from .changes import AdminChange, AdminChanges, Purged, Reloaded
from .live import LIVE_CONFIG, LiveConfig

__all__ = [
    "LIVE_CONFIG", "LiveConfig", "AdminChange", "AdminChanges", "Purged", "Reloaded", "StatsSection",
    "setup_admin", "handle_sighup",
]

log = logging.getLogger("ztream.admin")


def setup_admin(app: web.Application, *, stats: Mapping[str, StatsSection] | None = None) -> None:
    """Add the admin routes (before the catch-all 404) and the failed-attempt counter.

    ``app[LIVE_CONFIG]`` must be set (``create_app`` does it); its
    ``on_admin_change`` tells subscribers what the API changed. ``stats``:
    more sections of ``GET /v1/admin/stats`` (a cluster node adds ``cluster``).
    """
    app[ATTEMPTS] = Attempts()
    app[STATS_SECTIONS] = dict(stats or {})
    app.router.add_get("/admin", admin_page)
    app.router.add_get("/v1/admin/sources", get_sources, allow_head=False)
    app.router.add_put("/v1/admin/sources", put_sources)
    app.router.add_post("/v1/admin/reload", post_reload)
    app.router.add_get("/v1/admin/tracks", get_tracks, allow_head=False)
    app.router.add_delete("/v1/admin/tracks/{id}", delete_track)
    app.router.add_get("/v1/admin/stats", get_stats, allow_head=False)


def handle_sighup(app: web.Application) -> None:
    """Reload the configuration on SIGHUP while ``app`` runs (for ``ztream serve``).

    A failed reload is logged with the key it names, and the running
    configuration stays.
    """
    tasks: set[asyncio.Task[Any]] = set()

    async def reload() -> None:
        try:
            await app[LIVE_CONFIG].reload("SIGHUP")
        except ConfigError:
            pass  # logged by LiveConfig.reload
        except Exception:
            log.exception("reload on SIGHUP failed")

    def on_signal() -> None:
        task = asyncio.ensure_future(reload())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def install(app: web.Application) -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, on_signal)

    async def remove(app: web.Application) -> None:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)

    app.on_startup.append(install)
    app.on_cleanup.append(remove)
