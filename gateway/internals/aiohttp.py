"""Every private or undocumented aiohttp name the gateway uses, in one place.

tests/test_internals_aiohttp.py asserts that each name used here exists, so
an aiohttp upgrade that moves one fails that test, not a running gateway.
Sections are independent; each lists the names it relies on.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from aiohttp import web

__all__ = ["NO_REQUESTS", "shed_http_state"]


# -- an upgraded connection lets go of its HTTP state (gateway/swarm/socket.py) ----
#
# aiohttp keeps, for as long as a WebSocket is open, the connection's HTTP
# request parser, with what it last parsed (1.9 KiB measured, a tenth of an
# idle control socket), and its queue of pipelined requests, empty (a deque:
# 760 bytes). It reads both only while the connection is not upgraded: once
# ``WebSocketResponse.prepare`` has set its frame reader, every byte goes
# there, and no request can follow.
#
# Names relied on: ``RequestHandler._upgraded``, ``._payload_parser``,
# ``._parser``, ``._messages`` (slots of ``web.RequestHandler``, aiohttp 3.14).

# The pipelined-request queue of every upgraded connection: one shared deque
# that can hold nothing (``maxlen=0``), so that nothing put there could ever
# reach another connection.
NO_REQUESTS: deque[Any] = deque(maxlen=0)  # aiohttp types it with its private message type


def _upgraded_as_prepare_leaves_it(protocol: web.RequestHandler) -> bool:
    """Upgraded, with the frame reader set and the HTTP parser still there."""
    return (
        getattr(protocol, "_upgraded", False) is True
        and getattr(protocol, "_payload_parser", None) is not None
        and getattr(protocol, "_parser", None) is not None
    )


def shed_http_state(protocol: web.RequestHandler) -> None:
    """Let go of what the connection keeps for HTTP once it is a WebSocket.

    The parser becomes ``None``, the state aiohttp itself leaves after
    ``connection_lost`` (every other use of it checks for that); the request
    queue ``NO_REQUESTS``. Done only in exactly the state ``prepare`` leaves;
    on an aiohttp that names these otherwise, nothing is dropped.
    """
    if not _upgraded_as_prepare_leaves_it(protocol):
        return
    protocol._parser = None
    messages = getattr(protocol, "_messages", None)
    if isinstance(messages, deque) and not messages:
        protocol._messages = NO_REQUESTS
