"""Every private or undocumented aiohttp name the gateway uses, in one place.

tests/unit/gateway/test_internals_aiohttp.py asserts that each name used here exists, so
an aiohttp upgrade that moves one fails that test, not a running gateway.
Sections are independent; each lists the names it relies on.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from aiohttp import web

__all__ = [
    "NO_REQUESTS", "ConnectionWatch", "ProtocolErrorAnswer", "runner_answering_protocol_errors", "sent_bytes",
    "shed_http_state",
]


# -- answering aiohttp's own protocol errors (gateway/http/responses.py) ----------
#
# A request line over 8 KiB, a bad header or a malformed Content-Length never
# reach the router: the protocol layer answers through
# ``RequestHandler.handle_error`` (undocumented), in plain text, and aiohttp
# has no option to change that renderer. The way in is the protocol factory
# (``web.Server.__call__``, which builds one ``RequestHandler`` per
# connection from ``Server._loop`` and ``Server._kwargs``) and the runner's
# ``AppRunner._make_server``, which makes that factory.
#
# Names relied on: ``AppRunner._make_server``; ``Server.__call__``,
# ``Server._loop``, ``Server._kwargs``, ``Server.request_handler``,
# ``Server.request_factory``, ``Server.handler_cancellation``;
# ``RequestHandler.handle_error(request, status, exc, message)``,
# ``RequestHandler.log_exception``, ``RequestHandler.__slots__``;
# ``BaseRequest.writer.output_size``. With a ``watch``: the handler's calls to
# its manager ``Server.connection_made(handler, transport)`` (once the TCP
# connection is made) and ``Server.connection_lost(handler, exc)``.

# Given the connection's handler (for its ``log_exception``), the request and
# what aiohttp would have answered (status, exception, message): the answer.
ProtocolErrorAnswer = Callable[
    [web.RequestHandler, web.BaseRequest, int, BaseException | None, str | None], web.StreamResponse
]


class ConnectionWatch(Protocol):
    """Told of every connection of a runner's server as it opens and closes (the connection caps)."""

    def opened(self, handler: web.RequestHandler, transport: asyncio.Transport) -> None: ...

    def closed(self, handler: web.RequestHandler) -> None: ...


def runner_answering_protocol_errors(
    answer: ProtocolErrorAnswer, watch: Callable[[web.Application], ConnectionWatch | None] | None = None
) -> type[web.AppRunner]:
    """An ``AppRunner`` class whose connections answer protocol errors with ``answer``.

    Everything else is aiohttp's: the runner's own server is made, then
    copied into one whose per-connection handlers override ``handle_error``.
    ``watch(app)``, when given, is the app's ``ConnectionWatch`` (or None).
    """

    class Handler(web.RequestHandler):
        # aiohttp's handler has __slots__; without these a per-connection __dict__
        # (an idle control socket keeps its handler for hours) comes back.
        __slots__ = ()

        def handle_error(
            self,
            request: web.BaseRequest,
            status: int = 500,
            exc: BaseException | None = None,
            message: str | None = None,
        ) -> web.StreamResponse:
            return answer(self, request, status, exc, message)

    class Server(web.Server):
        watcher: ConnectionWatch | None = None

        def __call__(self) -> web.RequestHandler:
            return Handler(self, loop=self._loop, **self._kwargs)

        def connection_made(self, handler: web.RequestHandler, transport: asyncio.Transport) -> None:
            super().connection_made(handler, transport)
            if self.watcher is not None:
                self.watcher.opened(handler, transport)

        def connection_lost(self, handler: web.RequestHandler, exc: BaseException | None = None) -> None:
            if self.watcher is not None:
                self.watcher.closed(handler)
            super().connection_lost(handler, exc)

    class Runner(web.AppRunner):
        async def _make_server(self) -> web.Server:
            server = await super()._make_server()
            made = Server(
                server.request_handler,
                request_factory=server.request_factory,
                handler_cancellation=server.handler_cancellation,
                **server._kwargs,
            )
            if watch is not None:
                made.watcher = watch(self.app)
            return made

    return Runner


def sent_bytes(request: web.BaseRequest) -> int:
    """How much of an answer to ``request`` is already written (past 0, too late for another)."""
    return request.writer.output_size


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
