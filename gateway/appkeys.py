"""Typed keys for the services hung on the aiohttp application."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from .config import Config
from .metrics import Metrics
from .reload import LiveConfig
from .sources.fetch import SafeFetcher
from .sources.local import LocalSource
from .media.store import ChunkStore
from .tracker import Tracker
from .media.catalog import TrackRegistry
from .media.service import Transcoder

if TYPE_CHECKING:  # control imports these keys: no import cycle at run time
    from .control import ControlHub

# The configuration the app started with; what is current now (sources and
# admin change at run time) is LIVE_CONFIG.current.
CONFIG = web.AppKey("config", Config)
LIVE_CONFIG = web.AppKey("live_config", LiveConfig)
METRICS = web.AppKey("metrics", Metrics)
STORE = web.AppKey("store", ChunkStore)
REGISTRY = web.AppKey("registry", TrackRegistry)
TRANSCODER = web.AppKey("transcoder", Transcoder)
FETCHER = web.AppKey("fetcher", SafeFetcher)
LOCAL_SOURCE = web.AppKey("local_source", LocalSource)
# Sources that register tracks from a URL, asked in order (`accepts(url)`).
FETCH_SOURCES = web.AppKey("fetch_sources", list[Any])
TRACKER = web.AppKey("tracker", Tracker)
# The control WebSocket's open connections (gateway.control.ControlHub).
CONTROL: web.AppKey[ControlHub] = web.AppKey("control")
