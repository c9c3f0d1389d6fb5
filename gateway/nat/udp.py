"""The UDP shell around ``StunResponder``: datagrams in, answers out, counted.

Each answer leaves from the address its request was sent to
(``gateway.nat.pktinfo``): the socket is asked for every datagram's
destination, which asyncio's ``DatagramTransport`` does not expose, so the
shell owns a non-blocking socket and reads it with ``loop.add_reader``.
The wildcard (``""`` or ``"::"``) is one dual-stack IPv6 socket that answers
IPv4 too; ``"0.0.0.0"`` is IPv4 only; any other host binds that address.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any

from .pktinfo import ANCILLARY_BYTES, IP_PKTINFO, destination, source_ancillary
from .stun import StunResponder, StunResult

__all__ = ["StunSocket", "start_stun", "stun_socket"]

log = logging.getLogger("ztream.stun")

# Larger than any request the responder answers; a longer datagram arrives
# truncated and its STUN length no longer matches, so it is ignored.
MAX_DATAGRAM = 2048
# Datagrams read per wake-up before yielding to the loop (a flood must not starve it).
BATCH = 64


def stun_socket(host: str, port: int) -> socket.socket:
    """A bound UDP socket for ``host:port`` (see the module docstring for the wildcard)."""
    if host in ("", "::"):
        try:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        except OSError:  # a host without IPv6
            return stun_socket("0.0.0.0", port)
        try:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind(("::", port))
        except BaseException:
            sock.close()
            raise
        return sock
    family, kind, proto, _name, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM,
                                                             flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


class StunSocket:
    """Reads requests from ``sock`` and answers each from the address it was sent to."""

    def __init__(self, sock: socket.socket, responder: StunResponder, count: Callable[[StunResult], None],
                 loop: asyncio.AbstractEventLoop) -> None:
        self.sock = sock
        self.responder = responder
        self.count = count
        self.loop = loop
        if sock.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        sock.setblocking(False)
        loop.add_reader(sock.fileno(), self._readable)
        self._closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """As an asyncio transport's: ``sockname`` and ``socket``."""
        if name == "sockname":
            return self.sock.getsockname()
        if name == "socket":
            return self.sock
        return default

    def _readable(self) -> None:
        for _ in range(BATCH):
            try:
                data, ancdata, _flags, addr = self.sock.recvmsg(MAX_DATAGRAM, ANCILLARY_BYTES)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # ICMP port unreachable from a source that went away: nothing to do.
                log.debug("stun: %s", exc)
                continue
            host, port = str(addr[0]), int(addr[1])
            answer = self.responder.handle(data, (host, port), self.loop.time())
            self.count(answer.result)
            if answer.reply is None:
                continue
            try:
                self.sock.sendmsg([answer.reply], source_ancillary(destination(ancdata)), 0, addr)
            except (BlockingIOError, InterruptedError):
                log.debug("stun: send buffer full, answer to %s dropped", host)
            except OSError as exc:
                log.debug("stun: answer to %s: %s", host, exc)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()


async def start_stun(
    host: str,
    port: int,
    count: Callable[[StunResult], None],
    *,
    responder: StunResponder | None = None,
    sock: socket.socket | None = None,
) -> StunSocket:
    """Answer on UDP ``host:port`` (or on ``sock``, already bound); the caller closes it."""
    bound = sock if sock is not None else stun_socket(host, port)
    return StunSocket(bound, responder or StunResponder(), count, asyncio.get_running_loop())
