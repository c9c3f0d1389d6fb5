"""How many connections anyone may hold: per client, for the whole process, and for how long idle.

A gateway on the public internet is asked for connections by whoever likes.
Without bounds one address can hold every file descriptor (2,000 control
sockets in two seconds, each a descriptor and some memory), or park hundreds
of connections that never finish their request head (slowloris). The rules
(docs/config.md, ``[server]``):

- **Idle**: a connection that has not sent a whole request head within
  ``idle_timeout_seconds`` of opening, or of its last answer, is closed. This
  is aiohttp's keep-alive timer, which runs from the connection's start and
  is not reset by bytes that do not complete a head; the runner is given it
  as ``keepalive_timeout`` (``runner_options``).
- **Per client**: at most ``max_connections_per_client`` open TCP
  connections from one peer address (a trusted proxy is exempt: it carries
  many clients), and at most ``max_sockets_per_client`` open control sockets
  of one client address (``SocketCounts``; behind a trusted proxy, the
  address it forwarded for).
- **Whole process**: at most ``max_connections`` open connections, kept
  under the open-file limit (``fit_open_files``).

A connection over a cap is refused cleanly: its first request is read and
answered with the JSON error (429 ``too_many_connections`` for a client over
its share, 503 ``too_many_connections`` when the process is full), then the
connection is closed. Refused connections still hold a descriptor until
answered, so at most ``REFUSING`` of them are kept at once; past that a new
connection is closed at once, unanswered.

``ConnectionLimits`` is the pure core (counts in, verdict out); ``Guard``
is told of each connection by ``GuardedRunner``'s server (the hook is in
gateway/internals/aiohttp.py), and ``refuse_over_cap`` is the middleware
that writes the refusals.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import resource
from collections import Counter
from typing import Any, Literal

from aiohttp import web

from ..config import ServerConfig
from ..errors import Overloaded, TooManyRequests, ZtreamError
from ..internals.aiohttp import runner_answering_protocol_errors
from .client_address import TrustedProxies
from .responses import answer_protocol_error, render_error

__all__ = [
    "CONNECTIONS",
    "ConnectionLimits",
    "Guard",
    "GuardedRunner",
    "SocketCounts",
    "Verdict",
    "fit_open_files",
    "refuse_over_cap",
    "runner_options",
]

log = logging.getLogger("ztream.http")

# Descriptors kept for what is not a client connection: the chunk store's
# files, ffmpeg's pipes, upstream and Redis connections, the STUN socket.
FD_RESERVE = 256
# Refused connections waiting for their answer, at most; past that, closed at once.
REFUSING = 256
RETRY_AFTER = 5

Verdict = Literal["ok", "per_client", "full", "drop"]


class ConnectionLimits:
    """Open connections by peer address, and the verdict on a new one. Pure."""

    def __init__(self, *, total: int, per_client: int, refusing: int = REFUSING) -> None:
        self.total = total
        self.per_client = per_client
        self.refusing_max = refusing
        self.open = 0
        self.refusing = 0
        self._by_peer: Counter[str] = Counter()

    def admit(self, peer: str, *, exempt: bool = False) -> Verdict:
        """Count a new connection from ``peer`` (``exempt``: a trusted proxy) and say what to do with it."""
        if self.open >= self.total:
            verdict: Verdict = "full"
        elif not exempt and self._by_peer[peer] >= self.per_client:
            verdict = "per_client"
        else:
            self.open += 1
            self._by_peer[peer] += 1
            return "ok"
        if self.refusing >= self.refusing_max:
            return "drop"
        self.refusing += 1
        return verdict

    def release(self, peer: str, verdict: Verdict) -> None:
        """The connection ``admit`` judged ``verdict`` is gone."""
        if verdict == "ok":
            self.open -= 1
            left = self._by_peer[peer] - 1
            if left > 0:
                self._by_peer[peer] = left
            else:
                del self._by_peer[peer]
        elif verdict != "drop":
            self.refusing -= 1

    def of(self, peer: str) -> int:
        return self._by_peer.get(peer, 0)


class SocketCounts:
    """Open control sockets by client address, capped. Pure."""

    def __init__(self, per_client: int) -> None:
        self.per_client = per_client
        self._open: Counter[str] = Counter()

    def take(self, client: str) -> bool:
        if self._open[client] >= self.per_client:
            return False
        self._open[client] += 1
        return True

    def release(self, client: str) -> None:
        left = self._open[client] - 1
        if left > 0:
            self._open[client] = left
        else:
            self._open.pop(client, None)

    def of(self, client: str) -> int:
        return self._open.get(client, 0)


def _refusal(verdict: Verdict) -> ZtreamError:
    if verdict == "per_client":
        return TooManyRequests(
            "too many open connections from this address; close some and try again",
            code="too_many_connections", retry_after=RETRY_AFTER,
        )
    return Overloaded("the gateway has as many connections as it can hold; try again",
                      code="too_many_connections", retry_after=RETRY_AFTER)


class Guard:
    """What the runner's server and the middleware share: the limits and the refused connections."""

    def __init__(self, limits: ConnectionLimits, trusted: TrustedProxies) -> None:
        self.limits = limits
        self.trusted = trusted
        self._verdicts: dict[web.RequestHandler, tuple[str, Verdict]] = {}

    def opened(self, handler: web.RequestHandler, transport: asyncio.Transport) -> None:
        """A connection is made (``ConnectionWatch``): count it; close it at once past every margin."""
        address = transport.get_extra_info("peername")
        peer = str(address[0]) if isinstance(address, (tuple, list)) and address else "unknown"
        if self.admit(handler, peer) == "drop":
            transport.abort()

    def admit(self, handler: web.RequestHandler, peer: str) -> Verdict:
        try:
            exempt = ipaddress.ip_address(peer.split("%", 1)[0]) in self.trusted
        except ValueError:
            exempt = False
        verdict = self.limits.admit(peer, exempt=exempt)
        self._verdicts[handler] = (peer, verdict)
        if verdict != "ok":
            log.debug("connection from %s refused: %s", peer, verdict)
        return verdict

    def closed(self, handler: web.RequestHandler) -> None:
        entry = self._verdicts.pop(handler, None)
        if entry is not None:
            self.limits.release(*entry)

    def refusal(self, handler: object) -> ZtreamError | None:
        entry = self._verdicts.get(handler)  # type: ignore[call-overload]
        if entry is None or entry[1] == "ok":
            return None
        return _refusal(entry[1])


CONNECTIONS = web.AppKey("connections", Guard)


# ``ZtreamRunner`` (protocol errors in JSON) whose connections are counted by the app's ``Guard``.
GuardedRunner = runner_answering_protocol_errors(answer_protocol_error, watch=lambda app: app.get(CONNECTIONS))


@web.middleware
async def refuse_over_cap(request: web.Request, handler: Any) -> web.StreamResponse:
    """Answer a connection that ``Guard`` refused with its JSON error, and close it."""
    guard = request.config_dict.get(CONNECTIONS)
    refusal = guard.refusal(request.protocol) if guard is not None else None
    if refusal is None:
        response: web.StreamResponse = await handler(request)
        return response
    answer = render_error(request, refusal)
    answer.force_close()
    return answer


def runner_options(server: ServerConfig) -> dict[str, Any]:
    """What the runner's connections are given: the idle (request head) timeout."""
    return {"keepalive_timeout": server.idle_timeout_seconds}


def fit_open_files(wanted: int, *, reserve: int = FD_RESERVE) -> int:
    """The connection cap that fits the open-file limit, raising the soft limit first if needed.

    Logs a warning when the limit is too low for ``wanted`` connections.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = wanted + reserve
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= need:
        return wanted
    fitted = max(1, soft - reserve)
    log.warning(
        "open-file limit (ulimit -n) is %d: server.max_connections lowered from %d to %d; "
        "raise the limit (e.g. LimitNOFILE= in the systemd unit) to serve more",
        soft, wanted, fitted,
    )
    return fitted
