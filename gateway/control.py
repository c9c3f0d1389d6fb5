"""The control WebSocket ``GET /v1/ws``: tracker and signaling for peers.

Theory of operation
-------------------

Three layers, from pure to I/O:

1. ``parse_message(text) -> Message``: a pure function from one text frame to
   a small frozen event (``Have``, ``Want``, ``Signal``, ``Stats``, ``Slots``,
   ``Leave``, ``Ping``), or a ``ProtocolError`` carrying the wire error code.
   It knows nothing of peers or sockets; ``tests/vectors/control/`` holds
   frames and their verdicts, shared with the browser client and the Python
   peer.
2. ``ControlHub.handle(conn, text, now)``: receive → validate → ``Tracker`` →
   enqueue the answers. Synchronous: one peer's message is handled without
   ever waiting on another peer's socket.
3. ``control_socket`` (the aiohttp handler) and ``Connection``: the upgrade,
   the receive loop, and one writer task per connection draining a bounded
   queue. A relayed ``signal`` is only *enqueued* on the target; a receiver
   too slow to keep its queue under ``SEND_QUEUE_MESSAGES`` /
   ``SEND_QUEUE_BYTES`` is closed (1013), and nobody else waits for it.

Wire format (JSON text frames, each an object with a ``type``)
--------------------------------------------------------------

Server → peer::

    {"type": "welcome", "peer_id": "<22 url-safe chars, 128 random bits>",
     "ice_servers": [...p2p.ice_servers...],
     "limits": {"max_message_bytes": 65536, "messages_per_second": 50,
                "burst": 100, "max_tracks": 16, "max_chunks": 100000,
                "max_ranges": 256, "max_want": 256, "max_candidates": 5,
                "max_signal_bytes": 32768, "upload_slots": <p2p.upload_slots>,
                "stats_interval": 5, "idle_timeout": 600}}
    {"type": "peers", "track": T, "rendition": R,
     "peers": [{"peer_id": P, "chunks": [asked chunks P holds], "complete": bool}, ...]}
    {"type": "signal", "from": "<sender's real peer id>", "data": {...}}
    {"type": "pong"}
    {"type": "error", "error": "<code>", "detail": "<text>", "for": "<type>"}
        ("for" is the refused message's type, when it could be read)

Peer → server (unknown extra fields are ignored; ``track`` and ``rendition``
are 1..128 characters of ``A-Z a-z 0-9 . _ ~ : -``; chunk indices are
integers in ``0 .. max_chunks - 1``; ranges ``[first, last]`` are inclusive)::

    {"type": "have", "track": T, "rendition": R,
     "chunks": [0, 1, 2],            optional, indices held
     "ranges": [[0, 9], [12, 15]],   optional, inclusive runs held
     "complete": false,              optional, true: holds every chunk
     "replace": false}               optional, true: this is the whole holding
                                     (default: added to what was announced)
    {"type": "want", "track": T, "rendition": R, "chunks": [next needed, ...]}
        -> "peers" (always answered, possibly with "peers": []); "chunks" may be
        empty or absent: any holder of the track. Each candidate returned is
        introduced to the asker, which allows "signal" both ways.
    {"type": "signal", "to": P, "data": {...}}   data: an object, <= 32 KiB as JSON
    {"type": "stats", "p2p_down_bytes": int, "p2p_up_bytes": int,
     "http_down_bytes": int, "stalls": int, "startup_seconds": float | null,
     "verify_failures": int}        all optional (missing = 0 / null)
    {"type": "slots", "in_use": int}   upload slots now in use (0..1000)
    {"type": "leave", "track": T, "rendition": R}   rendition optional: all
    {"type": "ping"}  -> {"type": "pong"}

A peer holding nothing needs to send nothing but ``want``; a connected peer
that sends no message at all for ``idle_timeout`` seconds is closed (4000), so
a seeder should send ``stats`` every ``stats_interval`` seconds (zeros are
fine) or at least a ``ping``.

Error codes: ``bad_json`` (not JSON, or a binary frame), ``not_an_object``,
``unknown_type``, ``bad_field``, ``bad_stats``, ``rate_limited``,
``not_introduced``, ``unknown_peer``, ``too_many_tracks``.

Policing
--------

- Size: frames over 64 KiB make aiohttp close the socket with 1009.
- Rate: a token bucket per connection, ``MESSAGES_PER_SECOND`` refilled up to
  ``BURST``; a message over it is refused with ``rate_limited`` unread. Stats
  have a bucket of their own (``STATS_PER_SECOND``/``STATS_BURST``) so a peer
  cannot inflate the metrics by reporting often; signals a byte budget
  (``SIGNAL_BYTES_PER_SECOND``/``SIGNAL_BURST_BYTES``) so a peer cannot flood
  the one it was introduced to.
- Abuse: every refused message costs a strike from a second bucket
  (``STRIKES`` refilled at ``STRIKES_PER_SECOND``); a peer out of strikes is
  closed with 1008 (policy violation). An occasional error never closes.
- ``Origin``: checked before the upgrade. Allowed: no ``Origin`` at all
  (non-browser peers, such as ``ztream peer``), any when
  ``server.embed_origins`` has ``"*"``, one listed there, the gateway's own
  ``public_url``, or the origin of the ``Host`` asked (same-origin pages,
  such as ``/embed/{id}``). Anything else: 403 ``origin_forbidden``, no
  upgrade. (Browsers cannot forge ``Origin``; other clients can, which is why
  nothing here trusts a peer beyond its own connection.)
- Heartbeats: aiohttp pings every ``HEARTBEAT`` to 1.5 x ``HEARTBEAT`` seconds
  (jittered per socket) and closes a peer that does not answer.

Stats accepted add ``p2p_down_bytes`` to ``ztream_peer_bytes_total``,
``stalls`` to ``ztream_playback_stalls_total``, ``verify_failures`` to
``ztream_chunk_verify_failures_total``, and observe ``startup_seconds`` in
``ztream_startup_seconds``. A report with any value that is not a number of
the right kind (booleans are not numbers here), negative, NaN or infinite, or
absurd (``> MAX_REPORT_BYTES`` bytes, ``> MAX_REPORT_STALLS`` stalls or
verify failures, ``startup_seconds > MAX_STARTUP_SECONDS``) is refused whole
with ``bad_stats`` and changes no metric. ``ztream_peers_connected`` is the
number of open control sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import re
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeGuard
from urllib.parse import urlsplit

from aiohttp import WSCloseCode, WSMsgType, web

from .appkeys import CONTROL, TRACKER
from .config import CONFIG, Config
from .metrics import Metrics
from .tracker import (
    MAX_CANDIDATES,
    MAX_CHUNKS,
    MAX_RANGES,
    MAX_WANT,
    BadChunks,
    ChunkSet,
    Tracker,
    TrackerError,
)

__all__ = [
    "ControlHub",
    "Connection",
    "TokenBucket",
    "ProtocolError",
    "Message",
    "Have",
    "Want",
    "Signal",
    "Stats",
    "Slots",
    "Leave",
    "Ping",
    "parse_message",
    "origin_allowed",
    "control_socket",
    "setup_control",
]

log = logging.getLogger("ztream.control")

MAX_MESSAGE_BYTES = 64 * 1024
MESSAGES_PER_SECOND = 50
BURST = 100
STATS_INTERVAL = 5
STATS_PER_SECOND = 0.5
STATS_BURST = 4
MAX_SIGNAL_BYTES = 32 * 1024
SIGNAL_BYTES_PER_SECOND = 64 * 1024
SIGNAL_BURST_BYTES = 256 * 1024
STRIKES = 50
STRIKES_PER_SECOND = 1.0
SEND_QUEUE_MESSAGES = 256
SEND_QUEUE_BYTES = 1024 * 1024
HEARTBEAT = 20.0
IDLE_TIMEOUT = 600
SWEEP_SECONDS = 30.0
CLOSE_TIMEOUT = 2.0
MAX_SLOTS_IN_USE = 1000

MAX_REPORT_BYTES = 1 << 30  # 1 GiB in one ~5 s report is ~1.7 Gbit/s of audio: a lie
MAX_REPORT_STALLS = 1000
MAX_STARTUP_SECONDS = 600.0

# Close codes beyond RFC 6455's: 4000 for a peer silent past idle_timeout.
CLOSE_IDLE = 4000

_NAME = re.compile(r"[A-Za-z0-9._~:-]{1,128}")
_PEER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


# -- pure: rate limiting -------------------------------------------------------


class TokenBucket:
    """``rate`` tokens a second, up to ``burst``; ``take(now, cost)`` spends them.

    Time is passed in (``now``, seconds, monotonic), so tests are exact.
    """

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Spend ``cost`` tokens if there are enough; whether it did."""
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False


# -- pure: messages ------------------------------------------------------------


class ProtocolError(ValueError):
    """A peer → server frame refused; ``code`` is the wire error code and
    ``for_type`` the message type when it could be read."""

    def __init__(self, code: str, detail: str, for_type: str | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.for_type = for_type


@dataclass(frozen=True, slots=True)
class Have:
    track: str
    rendition: str
    chunks: ChunkSet
    complete: bool = False
    replace: bool = False


@dataclass(frozen=True, slots=True)
class Want:
    track: str
    rendition: str
    chunks: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Signal:
    to: str
    data_json: str  # ``data`` re-serialized (strict JSON), ready to relay


@dataclass(frozen=True, slots=True)
class Stats:
    p2p_down_bytes: int = 0
    p2p_up_bytes: int = 0
    http_down_bytes: int = 0
    stalls: int = 0
    verify_failures: int = 0
    startup_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class Slots:
    in_use: int


@dataclass(frozen=True, slots=True)
class Leave:
    track: str
    rendition: str | None = None


@dataclass(frozen=True, slots=True)
class Ping:
    pass


Message = Have | Want | Signal | Stats | Slots | Leave | Ping


def _is_int(value: object) -> TypeGuard[int]:
    # bool is an int subclass in Python; on the wire true/false are not numbers.
    return isinstance(value, int) and not isinstance(value, bool)


def _name(body: dict[str, Any], key: str, kind: str, *, optional: bool = False) -> str | None:
    value = body.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ProtocolError("bad_field", f"{key}: expected 1..128 characters of A-Z a-z 0-9 . _ ~ : -", kind)
    return value


def _index_list(value: object, key: str, kind: str, max_len: int) -> list[int]:
    if not isinstance(value, list):
        raise ProtocolError("bad_field", f"{key}: expected a list of chunk indices", kind)
    if len(value) > max_len:
        raise ProtocolError("bad_field", f"{key}: at most {max_len} entries", kind)
    for i in value:
        if not _is_int(i) or not 0 <= i < MAX_CHUNKS:
            raise ProtocolError("bad_field", f"{key}: chunk indices are integers in 0..{MAX_CHUNKS - 1}", kind)
    return value


def _parse_have(body: dict[str, Any]) -> Have:
    track = _name(body, "track", "have")
    rendition = _name(body, "rendition", "have")
    assert track is not None and rendition is not None
    chunks = body.get("chunks", [])
    ranges = body.get("ranges", [])
    _index_list(chunks, "chunks", "have", MAX_CHUNKS)
    if not isinstance(ranges, list) or len(ranges) > MAX_CHUNKS:
        raise ProtocolError("bad_field", "ranges: expected a list of [first, last] pairs", "have")
    pairs: list[tuple[int, int]] = []
    for r in ranges:
        if not (isinstance(r, list) and len(r) == 2 and _is_int(r[0]) and _is_int(r[1])):
            raise ProtocolError("bad_field", "ranges: expected a list of [first, last] pairs", "have")
        pairs.append((r[0], r[1]))
    complete = body.get("complete", False)
    replace = body.get("replace", False)
    if not isinstance(complete, bool) or not isinstance(replace, bool):
        raise ProtocolError("bad_field", "complete, replace: expected true or false", "have")
    try:
        held = ChunkSet.from_ranges([*pairs, *((i, i) for i in chunks)])
    except BadChunks as exc:
        raise ProtocolError("bad_field", f"chunks, ranges: {exc.detail}", "have") from None
    return Have(track, rendition, held, complete, replace)


def _parse_want(body: dict[str, Any]) -> Want:
    track = _name(body, "track", "want")
    rendition = _name(body, "rendition", "want")
    assert track is not None and rendition is not None
    chunks = _index_list(body.get("chunks", []), "chunks", "want", MAX_WANT)
    return Want(track, rendition, tuple(chunks))


def _parse_signal(body: dict[str, Any]) -> Signal:
    # Any "from" the sender wrote is ignored: the relay writes the real one.
    to = body.get("to")
    if not isinstance(to, str) or not _PEER_ID.fullmatch(to):
        raise ProtocolError("bad_field", "to: expected a peer id", "signal")
    data = body.get("data")
    if not isinstance(data, dict):
        raise ProtocolError("bad_field", "data: expected an object", "signal")
    try:
        # allow_nan=False: NaN/Infinity are not JSON, and a browser's
        # JSON.parse would choke on them in the relayed frame.
        data_json = json.dumps(data, separators=(",", ":"), allow_nan=False)
    except ValueError:
        raise ProtocolError("bad_field", "data: NaN and Infinity are not JSON", "signal") from None
    if len(data_json) > MAX_SIGNAL_BYTES:
        raise ProtocolError("bad_field", f"data: at most {MAX_SIGNAL_BYTES} bytes", "signal")
    return Signal(to, data_json)


_STAT_COUNTS = {
    "p2p_down_bytes": MAX_REPORT_BYTES,
    "p2p_up_bytes": MAX_REPORT_BYTES,
    "http_down_bytes": MAX_REPORT_BYTES,
    "stalls": MAX_REPORT_STALLS,
    "verify_failures": MAX_REPORT_STALLS,
}


def _parse_stats(body: dict[str, Any]) -> Stats:
    counts: dict[str, int] = {}
    for key, limit in _STAT_COUNTS.items():
        value = body.get(key, 0)
        if not _is_int(value):
            raise ProtocolError("bad_stats", f"{key}: expected an integer", "stats")
        if not 0 <= value <= limit:
            raise ProtocolError("bad_stats", f"{key}: expected 0..{limit}", "stats")
        counts[key] = value
    startup = body.get("startup_seconds")
    if startup is not None:
        if not (_is_int(startup) or isinstance(startup, float)):
            raise ProtocolError("bad_stats", "startup_seconds: expected a number or null", "stats")
        # NaN fails both comparisons, so it is refused here as well.
        if not (math.isfinite(startup) and 0 <= startup <= MAX_STARTUP_SECONDS):
            raise ProtocolError("bad_stats", f"startup_seconds: expected 0..{MAX_STARTUP_SECONDS:g}", "stats")
        startup = float(startup)
    return Stats(startup_seconds=startup, **counts)


def _parse_slots(body: dict[str, Any]) -> Slots:
    in_use = body.get("in_use")
    if not _is_int(in_use) or not 0 <= in_use <= MAX_SLOTS_IN_USE:
        raise ProtocolError("bad_field", f"in_use: expected an integer in 0..{MAX_SLOTS_IN_USE}", "slots")
    return Slots(in_use)


def _parse_leave(body: dict[str, Any]) -> Leave:
    track = _name(body, "track", "leave")
    assert track is not None
    return Leave(track, _name(body, "rendition", "leave", optional=True))


def _parse_ping(body: dict[str, Any]) -> Ping:
    return Ping()


_PARSERS: dict[str, Callable[[dict[str, Any]], Message]] = {
    "have": _parse_have,
    "want": _parse_want,
    "signal": _parse_signal,
    "stats": _parse_stats,
    "slots": _parse_slots,
    "leave": _parse_leave,
    "ping": _parse_ping,
}


def parse_message(text: str) -> Message:
    """One peer → server text frame to an event; raises ``ProtocolError``."""
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        # RecursionError: "[[[[..." nested deeper than the decoder's stack.
        raise ProtocolError("bad_json", "the message is not JSON") from None
    if not isinstance(body, dict):
        raise ProtocolError("not_an_object", "a message is a JSON object with a \"type\"")
    kind = body.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("bad_field", "type: expected a string")
    parser = _PARSERS.get(kind)
    if parser is None:
        raise ProtocolError("unknown_type", f"unknown message type {kind[:40]!r}")
    return parser(body)


def error_message(code: str, detail: str, for_type: str | None = None) -> str:
    body = {"type": "error", "error": code, "detail": detail}
    if for_type is not None:
        body["for"] = for_type
    return json.dumps(body)


def origin_allowed(origin: str, *, embed_origins: tuple[str, ...], public_url: str, host: str | None) -> bool:
    """Whether a browser page at ``origin`` may open the control socket (see the module docstring)."""
    if "*" in embed_origins:
        return True
    origin = origin.strip().rstrip("/").lower()
    if origin in {o.rstrip("/").lower() for o in embed_origins}:
        return True
    public = urlsplit(public_url)
    if origin == f"{public.scheme}://{public.netloc}".lower():
        return True
    if host:
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and parts.netloc == host.lower()
    return False


# -- I/O: connections and the hub ----------------------------------------------


@dataclass(frozen=True, slots=True)
class _Close:
    code: int
    reason: str


class Connection:
    """One open control socket: its peer id, its limits, its outgoing queue."""

    def __init__(self, peer_id: str, ws: web.WebSocketResponse, request: web.Request, now: float) -> None:
        self.peer_id = peer_id
        self.ws = ws
        self.request = request
        self.messages = TokenBucket(MESSAGES_PER_SECOND, BURST, now)
        self.stats = TokenBucket(STATS_PER_SECOND, STATS_BURST, now)
        self.signal_bytes = TokenBucket(SIGNAL_BYTES_PER_SECOND, SIGNAL_BURST_BYTES, now)
        self.strikes = TokenBucket(STRIKES_PER_SECOND, STRIKES, now)
        self.closing = False
        self._queue: asyncio.Queue[str | _Close] = asyncio.Queue()
        self._queued_bytes = 0
        self._writer = asyncio.create_task(self._write(), name=f"ztream-ws-writer-{peer_id}")
        self._closer: asyncio.Task[None] | None = None

    def send(self, text: str) -> None:
        """Queue a frame; a peer that lets its queue grow past the bound is closed.

        Never waits: a relay to a slow peer costs the sender nothing.
        """
        if self.closing:
            return
        if self._queue.qsize() >= SEND_QUEUE_MESSAGES or self._queued_bytes + len(text) > SEND_QUEUE_BYTES:
            log.info("peer %s reads too slowly; closing it", self.peer_id)
            self.abort(WSCloseCode.TRY_AGAIN_LATER, "too slow")
            return
        self._queued_bytes += len(text)
        self._queue.put_nowait(text)

    def close(self, code: int, reason: str) -> None:
        """Close after what is queued (an error explaining why, typically) is sent."""
        if self.closing:
            return
        self.closing = True
        self._queue.put_nowait(_Close(code, reason))

    def abort(self, code: int, reason: str) -> None:
        """Close now, dropping whatever is queued."""
        self.closing = True
        if self._closer is None:
            self._writer.cancel()
            self._closer = asyncio.create_task(self._close_ws(code, reason))

    async def finish(self) -> None:
        """Wait for the writer (and closer) to end; the receive loop has ended."""
        self.closing = True
        tasks = [t for t in (self._writer, self._closer) if t is not None]
        if not self._writer.done() and self._closer is None:
            # Nothing more will be read: let the writer flush, then stop it.
            self._queue.put_nowait(_Close(WSCloseCode.OK, ""))
        _done, pending = await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT + 1)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _write(self) -> None:
        try:
            while True:
                item = await self._queue.get()
                if isinstance(item, _Close):
                    await self._close_ws(item.code, item.reason)
                    return
                self._queued_bytes -= len(item)
                await self.ws.send_str(item)
        except (ConnectionError, RuntimeError):
            # The socket went away under us; the receive loop sees it too.
            return

    async def _close_ws(self, code: int, reason: str) -> None:
        try:
            await asyncio.wait_for(self.ws.close(code=code, message=reason.encode()), CLOSE_TIMEOUT)
        except (asyncio.TimeoutError, ConnectionError, RuntimeError):
            # A peer that does not even take a close frame: drop the TCP connection.
            if self.request.transport is not None:
                self.request.transport.abort()


class ControlHub:
    """Open control sockets by peer id, and the handling of their messages."""

    def __init__(self, config: Config, metrics: Metrics, tracker: Tracker) -> None:
        self.config = config
        self.metrics = metrics
        self.tracker = tracker
        self.connections: dict[str, Connection] = {}
        limits = {
            "max_message_bytes": MAX_MESSAGE_BYTES,
            "messages_per_second": MESSAGES_PER_SECOND,
            "burst": BURST,
            "max_tracks": tracker.max_tracks,
            "max_chunks": MAX_CHUNKS,
            "max_ranges": MAX_RANGES,
            "max_want": MAX_WANT,
            "max_candidates": MAX_CANDIDATES,
            "max_signal_bytes": MAX_SIGNAL_BYTES,
            "upload_slots": tracker.upload_slots,
            "stats_interval": STATS_INTERVAL,
            "idle_timeout": IDLE_TIMEOUT,
        }
        self._limits = limits

    def open(self, ws: web.WebSocketResponse, request: web.Request, now: float) -> Connection:
        """Register a new socket under a fresh random id and greet it."""
        peer_id = secrets.token_urlsafe(16)
        while peer_id in self.connections:  # pragma: no cover - 128 random bits
            peer_id = secrets.token_urlsafe(16)
        conn = Connection(peer_id, ws, request, now)
        self.connections[peer_id] = conn
        self.tracker.join(peer_id, now)
        self.metrics.peers_connected.inc()
        conn.send(json.dumps({
            "type": "welcome",
            "peer_id": peer_id,
            "ice_servers": list(self.config.p2p.ice_servers),
            "limits": self._limits,
        }))
        return conn

    def drop(self, conn: Connection) -> None:
        """The socket is gone: forget the peer everywhere."""
        if self.connections.pop(conn.peer_id, None) is not None:
            self.tracker.remove(conn.peer_id)
            self.metrics.peers_connected.dec()

    def refuse(self, conn: Connection, code: str, detail: str, for_type: str | None, now: float) -> None:
        conn.send(error_message(code, detail, for_type))
        if not conn.strikes.take(now):
            log.info("peer %s keeps misbehaving (%s); closing it", conn.peer_id, code)
            conn.close(WSCloseCode.POLICY_VIOLATION, "too many refused messages")

    def handle(self, conn: Connection, text: str, now: float) -> None:
        """One text frame from ``conn``: validate, apply, answer. Never waits."""
        if conn.closing:
            return
        if not conn.messages.take(now):
            self.refuse(conn, "rate_limited", f"more than {MESSAGES_PER_SECOND:g} messages a second", None, now)
            return
        try:
            message = parse_message(text)
        except ProtocolError as exc:
            self.refuse(conn, exc.code, exc.detail, exc.for_type, now)
            return
        me = conn.peer_id
        try:
            self.tracker.touch(me, now)
            match message:
                case Have():
                    self.tracker.announce(
                        me, message.track, message.rendition, message.chunks, now,
                        complete=message.complete, replace=message.replace,
                    )
                case Want():
                    found = self.tracker.want(me, message.track, message.rendition, message.chunks, now)
                    conn.send(json.dumps({
                        "type": "peers",
                        "track": message.track,
                        "rendition": message.rendition,
                        "peers": [
                            {"peer_id": c.peer_id, "chunks": list(c.chunks), "complete": c.complete}
                            for c in found
                        ],
                    }))
                case Signal():
                    self._relay(conn, message, now)
                case Stats():
                    self._stats(conn, message, now)
                case Slots():
                    self.tracker.set_slots(me, message.in_use)
                case Leave():
                    self.tracker.leave(me, message.track, message.rendition)
                case Ping():
                    conn.send('{"type":"pong"}')
        except TrackerError as exc:
            self.refuse(conn, exc.code, exc.detail, _type_of(message), now)

    def _relay(self, conn: Connection, message: Signal, now: float) -> None:
        # Introduced first, then present: a stranger learns nothing about
        # which ids are connected.
        if not self.tracker.introduced(conn.peer_id, message.to):
            self.refuse(conn, "not_introduced", "signal only peers the tracker gave you", "signal", now)
            return
        target = self.connections.get(message.to)
        if target is None or target.closing:
            self.refuse(conn, "unknown_peer", "that peer has left", "signal", now)
            return
        if not conn.signal_bytes.take(now, len(message.data_json)):
            self.refuse(conn, "rate_limited", "too many signal bytes a second", "signal", now)
            return
        # "from" is always the sender's own id, whatever it wrote.
        target.send(f'{{"type":"signal","from":{json.dumps(conn.peer_id)},"data":{message.data_json}}}')

    def _stats(self, conn: Connection, stats: Stats, now: float) -> None:
        if not conn.stats.take(now):
            self.refuse(conn, "rate_limited", f"stats about every {STATS_INTERVAL} s, not faster", "stats", now)
            return
        m = self.metrics
        m.peer_bytes.inc(stats.p2p_down_bytes)
        m.stalls.inc(stats.stalls)
        m.verify_failures.inc(stats.verify_failures)
        if stats.startup_seconds is not None:
            m.startup_seconds.observe(stats.startup_seconds)

    def expire(self, now: float) -> None:
        """Close the sockets of peers silent for more than ``IDLE_TIMEOUT``."""
        for peer_id in self.tracker.expire(now, IDLE_TIMEOUT):
            conn = self.connections.get(peer_id)
            if conn is not None:
                conn.close(CLOSE_IDLE, "idle")

    async def shutdown(self) -> None:
        """Close every socket (1001 going away) and wait, briefly, for them."""
        conns = list(self.connections.values())
        for conn in conns:
            conn.close(WSCloseCode.GOING_AWAY, "server shutdown")
        if conns:
            await asyncio.wait([asyncio.ensure_future(c.finish()) for c in conns], timeout=CLOSE_TIMEOUT + 1)


def _type_of(message: Message) -> str:
    return {Have: "have", Want: "want", Signal: "signal", Stats: "stats", Slots: "slots", Leave: "leave",
            Ping: "ping"}[type(message)]


async def control_socket(request: web.Request) -> web.StreamResponse:
    """``GET /v1/ws``: upgrade, greet, then receive → hub → queue until closed."""
    config = request.app[CONFIG]
    origin = request.headers.get("Origin")
    if origin is not None and not origin_allowed(
        origin, embed_origins=config.server.embed_origins, public_url=config.public_url, host=request.host
    ):
        return web.json_response(
            {"error": "origin_forbidden", "detail": f"origin {origin[:200]!r} may not open the control socket"},
            status=403,
        )
    ws = web.WebSocketResponse(
        # aiohttp refuses a frame of max_msg_size bytes or more: +1 makes
        # MAX_MESSAGE_BYTES itself the largest frame read, as advertised.
        max_msg_size=MAX_MESSAGE_BYTES + 1,
        # Jittered: aiohttp rounds long timers to whole seconds, so sockets
        # opened in the same second would all be pinged in the same loop
        # iteration (thousands at once under load), stalling signal relay.
        heartbeat=HEARTBEAT + random.random() * HEARTBEAT / 2,
        # No permessage-deflate: the size cap stays a cap on what we must hold,
        # and small JSON gains little from it.
        compress=False,
    )
    if not ws.can_prepare(request).ok:
        return web.json_response({"error": "bad_request", "detail": "expected a WebSocket upgrade"}, status=400)
    await ws.prepare(request)
    hub = request.app[CONTROL]
    loop = asyncio.get_running_loop()
    conn = hub.open(ws, request, loop.time())
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                hub.handle(conn, msg.data, loop.time())
            elif msg.type == WSMsgType.BINARY:
                hub.refuse(conn, "bad_json", "binary frames are not part of the protocol", None, loop.time())
            else:  # ERROR: aiohttp has closed it already (1009 for a frame too big)
                break
    finally:
        hub.drop(conn)
        await conn.finish()
    return ws


async def _sweeper(app: web.Application) -> AsyncIterator[None]:
    hub = app[CONTROL]
    loop = asyncio.get_running_loop()

    async def sweep() -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            hub.expire(loop.time())

    task = asyncio.create_task(sweep(), name="ztream-control-sweeper")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _on_shutdown(app: web.Application) -> None:
    await app[CONTROL].shutdown()


def setup_control(app: web.Application, config: Config, metrics: Metrics) -> None:
    """Hang the tracker and the hub on the app, route ``/v1/ws``, close sockets at shutdown."""
    tracker = Tracker(upload_slots=config.p2p.upload_slots)
    app[TRACKER] = tracker
    app[CONTROL] = ControlHub(config, metrics, tracker)
    app.router.add_get("/v1/ws", control_socket, allow_head=False)
    app.cleanup_ctx.append(_sweeper)
    app.on_shutdown.append(_on_shutdown)
