"""Typed keys for the services hung on the aiohttp application."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from .config import Config
from .metrics import Metrics
# Moved to gateway.sources, which owns them; re-exported until http_api.py imports them there.
from .sources import FETCH_SOURCES, FETCHER, LOCAL_SOURCE  # noqa: F401
from .store import ChunkStore
from .tracker import Tracker
from .tracks import TrackRegistry
from .transcoder import Transcoder

if TYPE_CHECKING:  # control imports these keys: no import cycle at run time
    from .control import ControlHub

# The configuration the app started with; what is current now (sources and
# admin change at run time) is gateway.admin.LIVE_CONFIG's .current.
CONFIG = web.AppKey("config", Config)
METRICS = web.AppKey("metrics", Metrics)
STORE = web.AppKey("store", ChunkStore)
REGISTRY = web.AppKey("registry", TrackRegistry)
TRANSCODER = web.AppKey("transcoder", Transcoder)
TRACKER = web.AppKey("tracker", Tracker)
# The control WebSocket's open connections (gateway.control.ControlHub).
CONTROL: web.AppKey[ControlHub] = web.AppKey("control")
