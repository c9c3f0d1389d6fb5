"""``GET /v1/ws``: the aiohttp shell around ``SwarmHub``.

Theory of operation
-------------------

This module only pumps, as aiohttp's protocol handler only feeds its parser:
the upgrade (the ``Origin`` checked first), then each text frame goes
through ``codec.parse`` into the hub, and the hub's outputs are carried
out: ``Send`` is rendered and queued on the target's connection, ``Close``
queued after it, ``Count``/``Observe`` applied to the Prometheus metrics.
Every rule lives in the hub (docs/websocket.md is the contract).

Each connection's frames go through a bounded queue, drained in order by a
writer task that exists only while something is queued, so a relayed
``signal`` is only *enqueued* on the target: a receiver too slow to keep its
queue under ``SEND_QUEUE_MESSAGES`` / ``SEND_QUEUE_BYTES`` is closed (1013)
and told to the hub as gone, and nobody else waits for it.

What an idle socket costs is mostly what it keeps between frames (measured,
docs/cluster.md): no queue and no task while idle, nothing of the last frame
in the receive loop, no HTTP state once upgraded (``shed_http_state``), no
timer of its own (the heartbeat wheel).

- Per client address (the forwarded one behind a trusted proxy): at most
  ``server.max_sockets_per_client`` open sockets; one more is refused
  before the upgrade with 429 ``too_many_sockets``.
- Size: frames over 64 KiB make aiohttp close the socket with 1009.
- ``Origin``: checked before the upgrade. Allowed: no ``Origin`` at all
  (non-browser peers, such as ``ztream peer``), any when
  ``server.embed_origins`` has ``"*"``, one listed there, the gateway's own
  ``public_url``, or the origin of the ``Host`` asked (same-origin pages,
  such as ``/embed/{id}``). Anything else: 403 ``origin_forbidden``, no
  upgrade. (Browsers cannot forge ``Origin``; other clients can, which is why
  nothing trusts a peer beyond its own connection.)
- Heartbeats: every socket is pinged every ``HEARTBEAT`` to 1.5 x
  ``HEARTBEAT`` seconds (drawn per socket), and a peer from which nothing
  comes back within half that is dropped: aiohttp's heartbeat rule, kept on
  one wheel for all sockets (``heartbeat.py``) rather than a timer each.
- A sweeper ticks the hub every ``SWEEP_SECONDS`` (idle peers); shutdown
  closes every socket with 1001 and waits, briefly, for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from aiohttp import WSCloseCode, WSMessage, WSMsgType, web
from prometheus_client import Counter, Gauge, Histogram

from protocol.codec import parse, render
from protocol.limits import MAX_MESSAGE_BYTES
from protocol.messages import PeerMessage, ProtocolError, ServerMessage

from ..config import Config
from ..errors import BadRequest, Forbidden, TooManyRequests
from ..http import ORIGINS
from ..http.client_address import request_client
from ..http.connections import SocketCounts
from ..http.responses import render_error
from ..internals.aiohttp import shed_http_state
from ..metrics import Metrics
from .heartbeat import IDLE, HeartbeatWheel, ticks
from .hub import (
    ALONE,
    LIVE_LATENCY_SECONDS,
    LIVE_PEER_BYTES,
    P2P_CONNECTIONS,
    PEER_BYTES,
    PEER_RELAY_BYTES,
    PEERS_CONNECTED,
    STALLS,
    STARTUP_SECONDS,
    VERIFY_FAILURES,
    Close,
    Count,
    Observe,
    Output,
    Send,
    SwarmHub,
)

__all__ = ["Connection", "Federation", "SwarmSockets"]

log = logging.getLogger("ztream.swarm")

SEND_QUEUE_MESSAGES = 256
SEND_QUEUE_BYTES = 1024 * 1024
HEARTBEAT = 20.0
SWEEP_SECONDS = 30.0
CLOSE_TIMEOUT = 2.0
# aiohttp refuses a frame of max_msg_size bytes or more: +1 makes
# MAX_MESSAGE_BYTES itself the largest frame read, as advertised. (Computed
# once: an int over 256 made per socket is 32 bytes each.)
_MAX_MSG_SIZE = MAX_MESSAGE_BYTES + 1
# What ends ``async for msg in ws``, which the receive loop replaces.
_ENDED = frozenset((WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED))


@dataclass(frozen=True, slots=True)
class _Close:
    code: int
    reason: str


class Connection:
    """One open control socket: its outgoing queue and the task that writes it.

    Idle, a connection holds no queue and no task: thousands of listeners sit
    on their sockets between messages, and an ``asyncio.Queue`` (four deques,
    about 3 KiB) with a writer task parked on it (about 1.5 KiB) cost more
    than everything else of ours together (docs/cluster.md). The first frame
    queued creates a deque and starts a writer; the writer drains it in order,
    one frame at a time, and when it finds it empty drops both and ends, in
    the same step as the check, so no frame can be queued between the two.
    """

    __slots__ = ("peer_id", "ws", "request", "closing", "_queue", "_queued_bytes", "_writer", "_closer",
                 "_close_queued", "beat_slot", "beat_state", "beat_every")

    def __init__(self, peer_id: str, ws: web.WebSocketResponse, request: web.Request) -> None:
        self.peer_id = peer_id
        self.ws = ws
        self.request = request
        self.closing = False
        self._queue: deque[str | _Close] | None = None
        self._queued_bytes = 0
        # Running while something is queued; a writer that met a dead socket
        # stays here, done, so that nothing more is written (what is queued
        # then waits for the bound, as it would behind a stuck writer).
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._close_queued = False
        # Its place on the sockets' HeartbeatWheel (which sets them).
        self.beat_slot = 0
        self.beat_state = IDLE
        self.beat_every = 0

    def send(self, text: str) -> bool:
        """Queue a frame; a peer that lets its queue grow past the bound is closed.

        Never waits: a relay to a slow peer costs the sender nothing. True
        when this frame made the connection give up on its reader.
        """
        if self.closing:
            return False
        queued = len(self._queue) if self._queue is not None else 0
        if queued >= SEND_QUEUE_MESSAGES or self._queued_bytes + len(text) > SEND_QUEUE_BYTES:
            log.info("peer %s reads too slowly; closing it", self.peer_id)
            self.abort(WSCloseCode.TRY_AGAIN_LATER, "too slow")
            return True
        self._queued_bytes += len(text)
        self._push(text)
        return False

    def close(self, code: int, reason: str) -> None:
        """Close after what is queued (an error explaining why, typically) is sent."""
        if self.closing:
            return
        self.closing = True
        self._close_queued = True
        self._push(_Close(code, reason))

    def abort(self, code: int, reason: str) -> None:
        """Close now, dropping whatever is queued."""
        self.closing = True
        if self._closer is None:
            if self._writer is not None:
                self._writer.cancel()
            self._queue = None
            self._closer = asyncio.create_task(self._close_ws(code, reason))

    def lost(self) -> None:
        """Nothing came back after a ping: drop the TCP connection, as aiohttp's heartbeat did.

        No close frame: nobody reads it. Aborted rather than closed, so that
        the receive loop ends now, not once a dead peer's buffer drains.
        """
        if self.closing:
            return
        log.debug("peer %s answers no ping; dropping it", self.peer_id)
        self.closing = True
        if self.request.transport is not None:
            self.request.transport.abort()

    async def finish(self) -> None:
        """Wait for the writer (and closer) to end; the receive loop has ended."""
        self.closing = True
        if self._closer is None and not self._close_queued:
            # Nothing more will be read: flush what is queued, then close.
            self._close_queued = True
            self._push(_Close(WSCloseCode.OK, ""))
        tasks = [t for t in (self._writer, self._closer) if t is not None]
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT + 1)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _push(self, item: str | _Close) -> None:
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        queue.append(item)
        if self._writer is None:
            self._writer = asyncio.create_task(self._write(queue), name=f"ztream-ws-writer-{self.peer_id}")

    async def _write(self, queue: deque[str | _Close]) -> None:
        try:
            while queue:
                item = queue.popleft()
                if isinstance(item, _Close):
                    await self._close_ws(item.code, item.reason)
                    return
                self._queued_bytes -= len(item)
                await self.ws.send_str(item)
        except (ConnectionError, RuntimeError):
            # The socket went away under us; the receive loop sees it too.
            return
        # Drained: idle again, holding neither the queue nor this task.
        self._queue = None
        self._writer = None

    async def _close_ws(self, code: int, reason: str) -> None:
        try:
            await asyncio.wait_for(self.ws.close(code=code, message=reason.encode()), CLOSE_TIMEOUT)
        except (TimeoutError, ConnectionError, RuntimeError):
            # A peer that does not even take a close frame: drop the TCP connection.
            if self.request.transport is not None:
                self.request.transport.abort()


class Federation(Protocol):
    """What a cluster shell (gateway/cluster/swarm.py) adds around the hub; none: one node alone."""

    async def before(self, peer: str, message: PeerMessage) -> None:
        """Bring in what the hub will need from other nodes (a ``want``'s remote holders)."""

    def after(self, peer: str, message: PeerMessage) -> None:
        """Share what the message changed (holdings, introductions). Never waits."""

    def forward(self, peer: str, message: ServerMessage) -> None:
        """A ``Send`` to a peer connected to another node. Never waits."""

    def closed(self, peer: str) -> None:
        """The peer's socket is gone."""


class SwarmSockets:
    """The open connections by peer id, and the carrying out of the hub's outputs."""

    def __init__(self, hub: SwarmHub, config: Config, metrics: Metrics, *, federation: Federation | None = None) -> None:
        self.hub = hub
        self.config = config
        self.connections: dict[str, Connection] = {}
        self.heartbeats: HeartbeatWheel[Connection] = HeartbeatWheel()
        # Pings in flight: the loop holds tasks only weakly.
        self._pings: set[asyncio.Task[None]] = set()
        # A cluster node's shell around the hub (gateway/cluster/swarm.py); None: one node alone.
        self.federation = federation
        self.per_client = SocketCounts(config.server.max_sockets_per_client)
        self._metrics: dict[str, Counter | Gauge | Histogram] = {
            PEERS_CONNECTED: metrics.peers_connected,
            PEER_BYTES: metrics.peer_bytes,
            STALLS: metrics.stalls,
            VERIFY_FAILURES: metrics.verify_failures,
            STARTUP_SECONDS: metrics.startup_seconds,
            LIVE_LATENCY_SECONDS: metrics.live_latency_seconds,
            P2P_CONNECTIONS: metrics.p2p_connections,
            ALONE: metrics.peers_without_neighbours,
            PEER_RELAY_BYTES: metrics.peer_relay_bytes,
            LIVE_PEER_BYTES: metrics.live_peer_bytes,
        }

    def carry_out(self, outputs: Iterable[Output], now: float) -> None:
        """Do what the hub said. Never waits."""
        pending = deque(outputs)
        # Bounded: only a Send can add outputs (the hub's close of a too-slow
        # peer), at most once per peer, and close yields no Send.
        while pending:
            match pending.popleft():
                case Send(peer, message):
                    conn = self.connections.get(peer)
                    if conn is None and self.federation is not None:
                        self.federation.forward(peer, message)
                    elif conn is not None and conn.send(render(message)):
                        # Gave up on a too-slow reader: gone, as far as the swarm goes.
                        pending.extend(self.hub.close(peer, now))
                case Close(peer, code, reason):
                    conn = self.connections.get(peer)
                    if conn is not None:
                        if code == 1008:
                            log.info("peer %s keeps misbehaving; closing it", peer)
                        conn.close(code, reason)
                case Count(metric, labels, n):
                    counter = self._metrics[metric]
                    assert not isinstance(counter, Histogram)
                    (counter.labels(**dict(labels)) if labels else counter).inc(n)
                case Observe(metric, labels, value):
                    histogram = self._metrics[metric]
                    assert isinstance(histogram, Histogram)
                    (histogram.labels(**dict(labels)) if labels else histogram).observe(value)

    def sweep(self, now: float) -> None:
        """Let time pass in the hub (idle peers are closed)."""
        self.carry_out(self.hub.tick(now), now)

    def beat(self, now: float) -> None:
        """Let time pass on the heartbeat wheel: ping whom it is time to, drop the dead."""
        ping, dead = self.heartbeats.advance(now)
        for conn in ping:
            if not conn.closing:
                # As aiohttp's heartbeat sends it: a task beside the writer
                # (a control frame is written whole, between any two others).
                task = asyncio.create_task(conn.ws.ping())
                self._pings.add(task)
                task.add_done_callback(self._ping_sent)
        for conn in dead:
            conn.lost()

    def _ping_sent(self, task: asyncio.Task[None]) -> None:
        self._pings.discard(task)
        if not task.cancelled():
            # A socket gone under its ping: the receive loop sees it too.
            task.exception()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/ws``: at most ``server.max_sockets_per_client`` open per client address."""
        client = request_client(request)
        if not self.per_client.take(client):
            # debug: a flood of refusals must not become a flood of log lines.
            log.debug("control socket from %s refused: %d open", client, self.per_client.of(client))
            return render_error(request, TooManyRequests(
                f"this address has {self.per_client.per_client} control sockets open already",
                code="too_many_sockets", retry_after=5,
            ))
        try:
            return await self._handle(request)
        finally:
            self.per_client.release(client)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        """Upgrade, greet, then frames → hub → outputs until closed."""
        origin = request.headers.get("Origin")
        if origin is not None and not request.app[ORIGINS].websocket_allowed(origin, request.host):
            return render_error(
                request, Forbidden(f"origin {origin[:200]!r} may not open the control socket", code="origin_forbidden")
            )
        ws = web.WebSocketResponse(
            max_msg_size=_MAX_MSG_SIZE,
            # Heartbeats are the wheel's (self.heartbeats), which must see
            # pongs: _frame answers pings, as autoping would.
            autoping=False,
            # No permessage-deflate: the size cap stays a cap on what we must hold,
            # and small JSON gains little from it.
            compress=False,
        )
        if not ws.can_prepare(request).ok:
            return render_error(request, BadRequest("expected a WebSocket upgrade"))
        await ws.prepare(request)
        shed_http_state(request.protocol)
        # The 101's headers are sent: nothing reads them again, and each
        # socket would keep its own (Sec-WebSocket-Accept is unique).
        ws.headers.clear()
        conn = self._open(ws, request)
        peer = conn.peer_id
        try:
            # What an idle socket keeps parked is this frame and the ones under
            # it: ws.receive() rather than ``async for`` (one coroutine less),
            # and each frame handled in _frame, so that neither the last frame
            # read (up to 64 KiB) nor what it became is held between frames.
            while await self._frame(conn, await ws.receive()):
                pass
        finally:
            loop = asyncio.get_running_loop()
            self.connections.pop(peer, None)
            self.heartbeats.remove(conn)
            self.carry_out(self.hub.close(peer, loop.time()), loop.time())
            if self.federation is not None:
                self.federation.closed(peer)
            await conn.finish()
        return ws

    def _open(self, ws: web.WebSocketResponse, request: web.Request) -> Connection:
        """A new peer: its connection, and the hub's greeting queued on it."""
        now = asyncio.get_running_loop().time()
        peer, outputs = self.hub.open(now, request_client(request))
        conn = Connection(peer, ws, request)
        self.connections[peer] = conn
        # Drawn per socket: sockets opened together are not all pinged in
        # the same slot (one loop iteration), which would stall signal relay.
        self.heartbeats.add(conn, ticks(HEARTBEAT + random.random() * HEARTBEAT / 2), now)
        self.carry_out(outputs, now)
        return conn

    async def _frame(self, conn: Connection, msg: WSMessage) -> bool:
        """One frame read from ``conn`` through the hub; False: the socket is done."""
        if msg.type in _ENDED:
            return False
        HeartbeatWheel.heard(conn)  # any frame answers a ping
        if msg.type == WSMsgType.PING:
            await conn.ws.pong(msg.data)
            return True
        if msg.type == WSMsgType.PONG:
            return True
        peer = conn.peer_id
        hub = self.hub
        loop = asyncio.get_running_loop()
        now = loop.time()
        if msg.type == WSMsgType.TEXT:
            try:
                message = parse(msg.data)
            except ProtocolError as exc:
                self.carry_out(hub.receive(peer, exc, now), now)
            else:
                if self.federation is not None:
                    await self.federation.before(peer, message)
                    now = loop.time()
                self.carry_out(hub.receive(peer, message, now), now)
                if self.federation is not None:
                    self.federation.after(peer, message)
        elif msg.type == WSMsgType.BINARY:
            refused = ProtocolError("bad_json", "binary frames are not part of the protocol")
            self.carry_out(hub.refuse(peer, refused, now), now)
        else:  # ERROR: aiohttp has closed it already (1009 for a frame too big)
            return False
        return True

    async def shutdown(self) -> None:
        """Close every socket (1001 going away) and wait, briefly, for them."""
        self.carry_out(self.hub.shutdown(), asyncio.get_running_loop().time())
        conns = list(self.connections.values())
        if conns:
            await asyncio.wait([asyncio.ensure_future(c.finish()) for c in conns], timeout=CLOSE_TIMEOUT + 1)
