"""The UDP shell around ``StunResponder``: datagrams in, answers out, counted."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import cast

from .stun import StunResponder, StunResult

__all__ = ["StunProtocol", "start_stun"]

log = logging.getLogger("ztream.stun")


class StunProtocol(asyncio.DatagramProtocol):
    def __init__(self, responder: StunResponder, count: Callable[[StunResult], None]) -> None:
        self.responder = responder
        self.count = count
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        host, port = str(addr[0]), int(addr[1])
        answer = self.responder.handle(data, (host, port), asyncio.get_running_loop().time())
        self.count(answer.result)
        if answer.reply is not None and self.transport is not None:
            self.transport.sendto(answer.reply, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a source that went away: nothing to do.
        log.debug("stun: %s", exc)


async def start_stun(
    host: str,
    port: int,
    count: Callable[[StunResult], None],
    *,
    responder: StunResponder | None = None,
    sock: socket.socket | None = None,
) -> asyncio.DatagramTransport:
    """Answer on UDP ``host:port`` (or on ``sock``, already bound); the caller closes the transport."""
    loop = asyncio.get_running_loop()
    local = None if sock is not None else (host, port)
    transport, _protocol = await loop.create_datagram_endpoint(
        lambda: StunProtocol(responder or StunResponder(), count), local_addr=local, sock=sock
    )
    return transport
