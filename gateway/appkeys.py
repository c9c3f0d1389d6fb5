"""Typed keys for the services hung on the aiohttp application."""

from __future__ import annotations

from aiohttp import web

from .config import Config
from .metrics import Metrics
# Moved to gateway.sources, which owns them; re-exported until http_api.py imports them there.
from .sources import FETCH_SOURCES, FETCHER, LOCAL_SOURCE  # noqa: F401
from .store import ChunkStore
from .tracks import TrackRegistry
from .transcoder import Transcoder

# The configuration the app started with; what is current now (sources and
# admin change at run time) is gateway.admin.LIVE_CONFIG's .current.
CONFIG = web.AppKey("config", Config)
METRICS = web.AppKey("metrics", Metrics)
STORE = web.AppKey("store", ChunkStore)
REGISTRY = web.AppKey("registry", TrackRegistry)
TRANSCODER = web.AppKey("transcoder", Transcoder)
# The swarm's keys (HUB, TRACKER) live in gateway.swarm.
