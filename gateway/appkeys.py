"""Typed keys for the services hung on the aiohttp application.

Being moved to the packages that own each service: ``gateway.config.CONFIG``,
``gateway.metrics.METRICS``, ``gateway.media`` (``CATALOG``, ``MEDIA``,
``STORE``) and ``gateway.http.ORIGINS`` live there already.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from .reload import LiveConfig
from .sources.fetch import SafeFetcher
from .sources.local import LocalSource
from .tracker import Tracker

if TYPE_CHECKING:  # control imports these keys: no import cycle at run time
    from .control import ControlHub

LIVE_CONFIG = web.AppKey("live_config", LiveConfig)
FETCHER = web.AppKey("fetcher", SafeFetcher)
LOCAL_SOURCE = web.AppKey("local_source", LocalSource)
# Sources that register tracks from a URL, asked in order (`accepts(url)`).
FETCH_SOURCES = web.AppKey("fetch_sources", list[Any])
TRACKER = web.AppKey("tracker", Tracker)
# The control WebSocket's open connections (gateway.control.ControlHub).
CONTROL: web.AppKey[ControlHub] = web.AppKey("control")
