"""Who is asking, for the per-client shares (transcode slots, registrations).

``request_client(request)`` is the client's address. Until the gateway
knows its trusted proxies it is the TCP peer's address; the one
client-address helper (``server.trusted_proxies``, X-Forwarded-For /
Forwarded) replaces this body, and every caller here follows it.
"""

from __future__ import annotations

from aiohttp import web

__all__ = ["request_client"]


def request_client(request: web.BaseRequest) -> str:
    """The client address of ``request`` (``"unknown"`` when the transport has none)."""
    return request.remote or "unknown"
