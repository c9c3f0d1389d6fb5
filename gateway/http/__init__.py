"""The public HTTP surface (docs/http.md).

- ``api``: ``/healthz``, ``/metrics``, ``/v1/tracks...`` (the media contract), the
  ``/v1/*`` preflight and the JSON 404 of unknown paths;
- ``pages``: ``/``, ``/embed/{id}``, ``/oembed`` and the client modules;
- ``responses``: the one error renderer, endpoint wrapper and JSON body reader;
- ``conditional``: RFC 9110 conditional and range requests, chunk indices, bounded JSON (pure);
- ``origins``: the one origin policy (CORS, framing, the control WebSocket),
  hung on the app as ``ORIGINS``.
"""

from __future__ import annotations

from aiohttp import web

from .origins import OriginPolicy

__all__ = ["ORIGINS", "OriginPolicy"]

ORIGINS = web.AppKey("origins", OriginPolicy)
