"""Live radio: endless upstreams served at the live edge (docs/live.md).

- ``window``: the pure sliding window of a station's chunks (indices, epochs, where an index stands);
- ``ingest``: ``LiveIngest``, one station's upstream through ffmpeg into its window, reconnecting;
- ``service``: ``LiveService``, the ingests listeners start and leave, and what the HTTP handlers ask.

The service hangs on the app under ``LIVE`` (built by ``gateway.app``).
"""

from __future__ import annotations

from aiohttp import web

from .service import LiveService

__all__ = ["LIVE", "LiveService"]

LIVE = web.AppKey("live", LiveService)
