"""The headless peer: a thin asyncio + aiortc shell around the pure cores.

Theory of operation
-------------------
``PeerNode`` plays one track the way the browser player does and seeds what
it holds. Decisions are made by the pure cores; this module only moves bytes:

- ``peer.scheduler.Scheduler`` (the rules of ``client/scheduler.js``) says
  what to fetch from where, with deadlines in audio time;
- ``peer.playback.Playback`` is the virtual player (playhead, stalls,
  start-up) driven by ``peer.clock.VirtualClock``;
- ``peer.link.Link`` is the protocol state of each DataChannel (wire format
  of ``peer.wire``), ``peer.link.UploadSlots`` the seeder's listener limit.

The shell has four kinds of task: the control socket reader (``peers``,
``signal``, ``error``, ``pong`` from the gateway's ``/v1/ws``), the play loop
(playback → ``expired`` → ``next`` → dispatch, woken by every arrival and by
a short tick), the housekeeper (announces held chunks to the tracker and to
neighbours, asks for peers, reports ``slots`` and ``stats``, re-reads a live
manifest), and one fetch task per server request. aiortc callbacks (channel
open, message, close) run synchronously into the same state.

Signaling follows the convention shared with the browser client: the asker
creates the RTCPeerConnection and one binary DataChannel labelled
``ztream/1/<track>/<rendition>``, sends ``{"sdp": {"type": "offer", ...}}``;
the seeder answers ``{"sdp": {"type": "answer", ...}}``. aiortc puts its ICE
candidates in the SDP; trickled ``{"candidate": {...}}`` from a browser are
added as they come (and ``null``/empty as end-of-candidates). A peer that
refuses an offer (no room for another neighbour, leaving) answers
``{"reject": "full"}`` (as ``client/p2p.js`` does) so that the asker stops
waiting; a peer that does not know ``reject`` just times the offer out.

While the tracker has not answered, or connections are opening, the
scheduler holds back chunks that peers would have time to send
(``Scheduler.set_peer_wait``, the rule ``client/p2p.js`` applies too): past
the server lead, a chunk no known peer holds would otherwise go to the
server at once, and a near server is fast.

Every chunk is checked against the manifest's SHA-256 before it is used or
served on. A neighbour that sends a bad chunk or breaks the wire format is
dropped and banned for the session, and ``verify_failures`` counts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from .cache import ChunkCache
from .clock import VirtualClock
from .link import ChunkIn, Choked, Link, PeerHas, UploadSlots, Wanted, Withdrawn, to_ranges
from .playback import Playback, State
from .scheduler import CACHE, DEFAULT_SETTINGS, SERVER, Request, Scheduler, Settings
from .wire import Request as WireRequest
from .wire import WireError, channel_label, encode

__all__ = ["PeerNode", "PeerOptions", "PeerReport", "PeerError", "restrict_ice_to_loopback", "is_loopback_url"]

log = logging.getLogger("ztream.peer")

CONNECT_TIMEOUT = 5.0  # real seconds for a DataChannel to open
WANT_INTERVAL = 1.5  # real seconds between "want"s while short of neighbours
WANT_SOON = 0.4  # real seconds between "want"s when no known peer holds what we need
HAVE_FLUSH = 0.15  # real seconds between announcements of new chunks
SLOTS_INTERVAL = 0.5  # real seconds between "slots" reports
MANIFEST_REFRESH = 1.0  # real seconds between re-reads of a live manifest
HOUSEKEEPING = 0.05  # real seconds between housekeeping rounds
MAX_TICK = 0.05  # real seconds the play loop sleeps at most
SLOT_HOLD = 3.0  # audio seconds a listener keeps its upload slot after its last request
MAX_BUFFERED = 1 << 20  # bytes queued on a channel past which requests are choked
WANT_CHUNKS = 64  # next needed chunks named in a "want"
HTTP_TIMEOUT = 30.0
CLOSE_TIMEOUT = 2.0
BAN_GRACE = 1.0  # real seconds between banning a neighbour and closing its connection
START_WAIT = 2.0  # real seconds a start waits for the tracker's first answer
WANT_GRACE = 1.5  # real seconds the scheduler waits for an outstanding "want"


class PeerError(RuntimeError):
    """The peer could not start: gateway unreachable, unknown track, bad manifest."""


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_ICE_PATCHED = False


def restrict_ice_to_loopback() -> None:
    """Make aiortc gather 127.0.0.1 only (tests and benchmarks stay on loopback)."""
    global _ICE_PATCHED
    if not _ICE_PATCHED:
        import aioice.ice

        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
        _ICE_PATCHED = True


@dataclass
class PeerOptions:
    speed: float = 1.0
    cache_dir: Path | None = None
    seed_only: bool = False
    # Real seconds to keep seeding after the track has played; None: until
    # ``stop()`` (or the ``stop`` event given to ``run``).
    linger: float | None = 0.0
    want_links: int = 3  # neighbours wanted while playing
    max_links: int = 16  # neighbours at most (both directions)
    settings: Settings = DEFAULT_SETTINGS
    loopback_only: bool | None = None  # None: when the gateway is on loopback
    # Benchmark behaviours: a peer that serves corrupt chunks, a peer that
    # leaves at an audio position (closing everything, or going silent).
    corrupt: bool = False
    leave_at: float | None = None
    vanish: bool = False
    name: str = ""


@dataclass
class PeerReport:
    """What one peer did; byte counts are audio bytes (init and chunks)."""

    name: str = ""
    peer_id: str = ""
    track: str = ""
    rendition: str = ""
    http_down_bytes: int = 0
    p2p_down_bytes: int = 0
    p2p_up_bytes: int = 0
    stalls: int = 0
    stalled_seconds: float = 0.0
    startup_seconds: float | None = None  # real seconds from play to sound
    verify_failures: int = 0
    discarded: int = 0  # bad chunks that arrived after their sender was banned (or we left): dropped unread
    bad_sent: int = 0  # corrupt chunks this peer sent (a --bad-peers peer)
    chunks_server: int = 0
    chunks_peer: int = 0
    chunks_cache: int = 0
    expired: int = 0
    chokes_sent: int = 0
    chokes_received: int = 0
    links_opened: int = 0
    connect_failures: int = 0
    protocol_errors: int = 0
    banned: int = 0
    held: int = 0
    total_chunks: int = 0
    hash_mismatches: int = 0  # chunks held at the end whose hash is wrong: must be 0
    played_to_end: bool = False
    left_early: bool = False
    stats_refused: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(eq=False)
class Neighbour:
    peer_id: str
    outgoing: bool
    link: Link
    pc: Any = None
    channel: Any = None
    open: bool = False
    closed: bool = False
    queued: list[bytes] = field(default_factory=list)
    candidates: list[Any] = field(default_factory=list)  # trickled before the remote description
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    timer: asyncio.TimerHandle | None = None
    sent_have: int = -1  # how many chunks our last HAVE to it announced
    has_have: bool = False  # its HAVE arrived
    since: float = field(default_factory=time.monotonic)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _corrupt(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]


class PeerNode:
    """One headless peer for one track (see the module docstring).

    ``gateway`` is the gateway's base URL (``http://host:port``); ``track`` a
    track id. ``session`` may be shared by many peers of one process.
    """

    def __init__(
        self,
        gateway: str,
        track: str,
        *,
        clock: VirtualClock | None = None,
        options: PeerOptions | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.gateway = gateway.rstrip("/")
        self.track = track
        self.options = options or PeerOptions()
        self.clock = clock or VirtualClock(self.options.speed)
        self._session = session
        self._own_session = session is None
        self.report = PeerReport(name=self.options.name, track=track)
        self.sched = Scheduler(self.options.settings)
        self.playback = Playback()
        self.manifest: dict[str, Any] = {}
        self.rendition = ""
        self.label = ""
        self.hashes: dict[int, str] = {}
        self.sizes: dict[int, int] = {}
        self.chunks: dict[int, bytes] = {}
        self.init: bytes | None = None
        self.cache: ChunkCache | None = None
        self.neighbours: dict[str, Neighbour] = {}
        self.banned: set[str] = set()
        self.slots = UploadSlots(4, SLOT_HOLD)
        self.peer_id = ""
        self.ice_servers: list[dict[str, Any]] = []
        self.stats_interval = 5.0
        self.leaving = False
        self.vanished = False
        self._frozen = False
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._outbox: asyncio.Queue[str] = asyncio.Queue()
        self._closers: set[asyncio.Task[Any]] = set()
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._new_have: set[int] = set()
        self._announced_any = False
        self._want_soon = False
        self._last_want = -1e9
        self._last_have = -1e9
        self._last_slots = -1e9
        self._slots_reported = 0
        self._last_stats = -1e9
        self._last_manifest = 0.0
        self._reported: dict[str, int] = {}
        self._last_delta: dict[str, int] = {}
        self._startup_reported = False
        self._pong = asyncio.Event()
        self._peers_answered = asyncio.Event()
        self._want_sent: float | None = None
        self._stats_error = False
        self._play_started = 0.0
        self._control_started = False
        loopback = self.options.loopback_only
        self.loopback = is_loopback_url(self.gateway) if loopback is None else loopback

    # ---- public ------------------------------------------------------------

    def stop(self) -> None:
        """Stop lingering (or playing) and leave."""
        self._stopped.set()
        self._wake.set()

    async def run(self, stop: asyncio.Event | None = None) -> PeerReport:
        """Connect, play (or only seed), linger, leave; the report. Raises ``PeerError``."""
        if stop is not None:
            self._watch(stop)
        if self.loopback:
            restrict_ice_to_loopback()
        if self._session is None:
            self._session = aiohttp.ClientSession()
        self._play_started = time.monotonic()
        try:
            await self._start()
            if self.options.seed_only:
                await self._seed_everything()
            else:
                await self._play()
            if not self.leaving:
                await self._linger()
        finally:
            await self._shutdown()
        self._final_check()
        return self.report

    # ---- start -------------------------------------------------------------

    def _watch(self, stop: asyncio.Event) -> None:
        async def watch() -> None:
            await stop.wait()
            self.stop()

        self._spawn(watch())

    async def _start(self) -> None:
        assert self._session is not None
        ws_url = "ws" + self.gateway[len("http"):] + "/v1/ws" if self.gateway.startswith("http") else self.gateway
        manifest_task = asyncio.ensure_future(self._get_manifest())
        try:
            self._ws = await self._session.ws_connect(ws_url, heartbeat=None, autoping=True, max_msg_size=1 << 20)
            first = await self._ws.receive(timeout=10)
            await manifest_task
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError, ValueError) as exc:
            raise PeerError(f"cannot reach the gateway at {self.gateway}: {exc}") from exc
        finally:
            if not manifest_task.done():
                manifest_task.cancel()
                with contextlib.suppress(BaseException):
                    await manifest_task
        if first.type != aiohttp.WSMsgType.TEXT:
            raise PeerError(f"the control socket did not greet us ({first.type})")
        welcome = json.loads(first.data)
        if welcome.get("type") != "welcome":
            raise PeerError(f"expected a welcome, got {welcome.get('type')!r}")
        self.peer_id = self.report.peer_id = welcome["peer_id"]
        limits = welcome.get("limits", {})
        self.slots = UploadSlots(int(limits.get("upload_slots", 4)), SLOT_HOLD)
        self.stats_interval = float(limits.get("stats_interval", 5))
        self.ice_servers = [] if self.loopback else list(welcome.get("ice_servers", []))
        if self.options.cache_dir is not None:
            self.cache = ChunkCache(self.options.cache_dir, self.track, self.rendition)
            for index, data in self.cache.load(self.manifest).items():
                self.chunks[index] = data
            self.sched.set_cached(self.chunks)
            self.init = self._verified_init(self.cache.read_init())
        self._new_have.update(self.chunks)  # a reload announces what the cache holds
        self._control_started = True
        self._spawn(self._read_control())
        self._spawn(self._write_control())
        self._spawn(self._housekeeper())

    async def _get_manifest(self) -> None:
        assert self._session is not None
        url = f"{self.gateway}/v1/tracks/{self.track}/manifest"
        async with self._session.get(url, timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT)) as r:
            if r.status != 200:
                raise PeerError(f"GET {url}: {r.status} {(await r.text())[:200]}")
            manifest = await r.json()
        self._set_manifest(manifest)

    def _set_manifest(self, manifest: dict[str, Any]) -> None:
        if self.rendition and manifest.get("rendition") != self.rendition:
            log.warning("%s: the rendition changed under us; keeping %s", self.options.name, self.rendition)
            return
        self.manifest = manifest
        self.rendition = manifest["rendition"]
        self.report.rendition = self.rendition
        self.label = channel_label(self.track, self.rendition)
        for c in manifest["chunks"]:
            self.hashes[int(c["index"])] = c["sha256"]
            self.sizes[int(c["index"])] = int(c["size"])
        for nb in self.neighbours.values():
            nb.link.sizes = self.sizes
        self.sched.set_manifest(manifest)
        self.report.total_chunks = len(manifest["chunks"])

    def _verified_init(self, data: bytes | None) -> bytes | None:
        if data is not None and _sha256(data) == self.manifest.get("init", {}).get("sha256"):
            return data
        return None

    # ---- playing -----------------------------------------------------------

    async def _play(self) -> None:
        if self.init is None:
            self._spawn(self._fetch_init())
        self.sched.seek(0.0)
        self._want(time.monotonic())  # at once: the tracker's answer is awaited (peer wait)
        tick = min(MAX_TICK, 0.5 / self.clock.speed)
        while not self._stopped.is_set():
            now = self.clock.now()
            state = self.playback.advance(
                now,
                self.sched.buffered_ahead(self.playback.position),
                self.sched.known_end() if self.sched.complete else None,
                ready=self.init is not None,
            )
            if self.report.startup_seconds is None and self.playback.started_at is not None:
                self.report.startup_seconds = time.monotonic() - self._play_started
            self.report.stalls = self.playback.stalls
            self.report.stalled_seconds = self.playback.stalled_seconds
            if state is State.ENDED:
                self.report.played_to_end = True
                return
            position = self.playback.position
            if self.options.leave_at is not None and position >= self.options.leave_at:
                await self._leave()
                return
            for req in self.sched.expired(now, position):
                self._expire(req)
            self.sched.set_peer_wait(self._peer_wait_until())
            for req in self.sched.next(now, position):
                self._dispatch(req)
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), tick)

    def _peer_wait_until(self) -> float:
        """Until when (audio time) the scheduler may hold chunks back for peers
        being looked for: the tracker's first answer, an outstanding ``want``,
        connections not yet open with the neighbour's HAVE. Only a bound: the
        scheduler's deadlines and emergency mode still go to the server. (The
        same rule as ``waitUntil`` in ``client/p2p.js``; the bounds are real
        seconds, as network delays are.)"""
        real = time.monotonic()
        until = -math.inf
        if not self._peers_answered.is_set():
            until = self._play_started + START_WAIT
        if self._want_sent is not None:
            until = max(until, self._want_sent + WANT_GRACE)
        for nb in self.neighbours.values():
            if not nb.closed and not nb.has_have:
                until = max(until, nb.since + CONNECT_TIMEOUT)
        if until <= real:
            return -math.inf
        return self.clock.now() + (until - real) * self.clock.speed

    def _dispatch(self, req: Request) -> None:
        if req.source == CACHE:
            data = self.chunks.get(req.index)
            if data is None and self.cache is not None:
                data = self.cache.read(req.index)
            if data is not None and _sha256(data) == self.hashes.get(req.index):
                self._deliver(req.index, data, CACHE)
            else:
                self.sched.failed(req.index, self.clock.now())
        elif req.source == SERVER:
            c = self.sched.by_index.get(req.index)
            if (
                c is not None
                and not self.sched.emergency
                and c.start >= self.sched.anchor + self.sched.settings.server_lead
            ):
                self._want_soon = True  # nobody we know holds it: look for more peers
            self._spawn(self._fetch_chunk(req))
        else:
            nb = self.neighbours.get(req.source)
            if nb is None or nb.closed:
                self.sched.remove_peer(req.source)
                return
            frame = nb.link.request(req.index)
            if nb.open:
                self._send_frame(nb, frame)
            else:
                nb.queued.append(frame)

    def _expire(self, req: Request) -> None:
        self.report.expired += 1
        nb = self.neighbours.get(req.source)
        if nb is not None and not nb.closed:
            frame = nb.link.cancel(req.index)
            if nb.open:
                self._send_frame(nb, frame)
            else:  # never sent: take the REQUEST back instead
                asked = encode(WireRequest(req.index))
                nb.queued = [f for f in nb.queued if f != asked]

    def _deliver(self, index: int, data: bytes, source: str) -> None:
        """A verified chunk: buffer it, cache it, announce it."""
        if index in self.sched.buffered:
            return
        self.chunks[index] = data
        self.sched.received(index)
        if source == SERVER:
            self.report.chunks_server += 1
        elif source == CACHE:
            self.report.chunks_cache += 1
        else:
            self.report.chunks_peer += 1
            self.report.p2p_down_bytes += len(data)
        if self.cache is not None and source != CACHE:
            with contextlib.suppress(OSError):
                self.cache.write(index, data)
        self._new_have.add(index)
        self._wake.set()

    async def _fetch_init(self) -> None:
        assert self._session is not None
        url = f"{self.gateway}/v1/tracks/{self.track}/init"
        for attempt in range(5):
            try:
                async with self._session.get(url, timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT)) as r:
                    data = await r.read() if r.status == 200 else None
                if data is not None:
                    self.report.http_down_bytes += len(data)
                    if _sha256(data) == self.manifest["init"]["sha256"]:
                        self.init = data
                        if self.cache is not None:
                            with contextlib.suppress(OSError):
                                self.cache.write_init(data)
                        self._wake.set()
                        return
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                log.info("%s: init: %s", self.options.name, exc)
            await asyncio.sleep(0.2 * (attempt + 1))
        raise PeerError("could not fetch a valid init segment")

    async def _fetch_chunk(self, req: Request) -> None:
        assert self._session is not None
        url = f"{self.gateway}/v1/tracks/{self.track}/chunks/{req.index}"
        data: bytes | None = None
        etag = ""
        try:
            async with self._session.get(url, timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT)) as r:
                if r.status == 200:
                    data = await r.read()
                    etag = r.headers.get("ETag", "").strip('"')
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            log.info("%s: chunk %d from the server: %s", self.options.name, req.index, exc)
        if self.sched.inflight.get(req.index) is not req:
            return  # given up meanwhile (a seek)
        if data is not None:
            self.report.http_down_bytes += len(data)
            expected = self.hashes.get(req.index) or etag
            if _sha256(data) == expected:
                self._deliver(req.index, data, SERVER)
                return
            log.warning("%s: chunk %d from the server does not match its hash", self.options.name, req.index)
        self.sched.failed(req.index, self.clock.now())
        if req.live:
            self._last_manifest = 0.0  # re-read the manifest soon
        self._wake.set()

    async def _seed_everything(self) -> None:
        """--seed-only: hold every chunk (from the cache, else from the server once), then seed."""
        deadline = time.monotonic() + 600
        while not self.manifest.get("complete") and time.monotonic() < deadline and not self._stopped.is_set():
            await asyncio.sleep(MANIFEST_REFRESH)
            await self._refresh_manifest()
        if self.init is None:
            await self._fetch_init()
        self._new_have.update(self.chunks)
        for _attempt in range(3):
            missing = [i for i in sorted(self.hashes) if i not in self.chunks]
            for start in range(0, len(missing), 4):
                if self._stopped.is_set():
                    return
                batch = [Request(i, SERVER) for i in missing[start : start + 4]]
                for req in batch:
                    self.sched.inflight[req.index] = req  # what _fetch_chunk checks
                await asyncio.gather(*(self._fetch_chunk(req) for req in batch))

    async def _linger(self) -> None:
        linger = self.options.linger
        if linger is None:
            await self._stopped.wait()
        elif linger > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), linger)

    async def _leave(self) -> None:
        """Churn: report, then either close everything or go silent."""
        self.leaving = True
        self.report.left_early = True
        self._frozen = True  # nothing more is counted after the last report
        await self._final_stats()
        if self.options.vanish:
            # Gone without a word: the control socket closes (the tracker
            # forgets us) but the DataChannels stay open and answer nothing,
            # as from a machine that froze: only deadlines notice.
            self.vanished = True
            if self._ws is not None:
                await self._ws.close()
            await self._stopped.wait()
        else:
            for nb in list(self.neighbours.values()):
                self._drop(nb, "leaving")
            if self._ws is not None:
                await self._ws.close()

    # ---- the control socket ------------------------------------------------

    def _send_control(self, message: dict[str, Any]) -> None:
        if self._ws is None or self._ws.closed or self.vanished:
            return
        self._outbox.put_nowait(json.dumps(message, separators=(",", ":")))

    async def _write_control(self) -> None:
        """One writer, so that messages leave in the order they were made."""
        assert self._ws is not None
        while True:
            text = await self._outbox.get()
            if self._ws.closed:
                continue
            try:
                await self._ws.send_str(text)
            except (ConnectionError, RuntimeError, aiohttp.ClientError):
                continue

    async def _read_control(self) -> None:
        assert self._ws is not None
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            if self.vanished:
                continue
            try:
                body = json.loads(msg.data)
            except ValueError:
                continue
            kind = body.get("type")
            if kind == "peers":
                self._on_peers(body)
            elif kind == "signal" and isinstance(body.get("data"), dict) and isinstance(body.get("from"), str):
                self._spawn(self._on_signal(body["from"], body["data"]))
            elif kind == "pong":
                self._pong.set()
            elif kind == "error":
                if body.get("for") == "stats":
                    self._stats_error = True
                    self.report.stats_refused += 1
                    for key, value in self._last_delta.items():
                        self._reported[key] = self._reported.get(key, 0) - value
                    self._last_delta = {}
                elif body.get("error") != "unknown_peer":
                    log.info("%s: gateway refused a message: %s", self.options.name, body)

    def _on_peers(self, body: dict[str, Any]) -> None:
        if body.get("track") != self.track or body.get("rendition") != self.rendition or self.leaving:
            return
        self._peers_answered.set()
        self._want_sent = None
        started = 0
        for candidate in body.get("peers", []):
            peer_id = candidate.get("peer_id")
            if not isinstance(peer_id, str) or peer_id == self.peer_id or peer_id in self.banned:
                continue
            if peer_id in self.neighbours or self._live_neighbours() >= self.options.max_links or started >= 2:
                continue
            have = list(self.hashes) if candidate.get("complete") else [int(i) for i in candidate.get("chunks", [])]
            # Known to the scheduler at once: requests queue until the channel
            # opens, and their deadlines cover a connection that never does.
            self.sched.set_peer(peer_id, have)
            nb = Neighbour(peer_id, outgoing=True, link=Link(max_index=self._max_index()))
            nb.link.sizes = self.sizes
            self.neighbours[peer_id] = nb
            self._spawn(self._connect(nb))
            started += 1
        self._wake.set()

    def _live_neighbours(self) -> int:
        return sum(1 for nb in self.neighbours.values() if not nb.closed)

    # ---- WebRTC ------------------------------------------------------------

    def _new_pc(self, nb: Neighbour) -> Any:
        servers = []
        for s in self.ice_servers:
            with contextlib.suppress(TypeError, ValueError):
                servers.append(RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential")))
        pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        nb.pc = pc

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                self._drop(nb, f"connection {pc.connectionState}")

        return pc

    def _bind(self, nb: Neighbour, channel: Any) -> None:
        nb.channel = channel

        @channel.on("message")
        def on_message(message: Any) -> None:
            self._on_frame(nb, message)

        @channel.on("close")
        def on_close() -> None:
            self._drop(nb, "channel closed")

        if channel.readyState == "open":
            self._on_open(nb)
        else:
            channel.on("open", lambda: self._on_open(nb))

    def _arm_timeout(self, nb: Neighbour) -> None:
        def expire() -> None:
            if not nb.open and not nb.closed:
                self.report.connect_failures += 1
                self._drop(nb, "timed out")

        nb.timer = asyncio.get_running_loop().call_later(CONNECT_TIMEOUT, expire)

    async def _connect(self, nb: Neighbour) -> None:
        peer_id = nb.peer_id
        async with nb.lock:
            try:
                pc = self._new_pc(nb)
                self._bind(nb, pc.createDataChannel(self.label, ordered=True))
                await pc.setLocalDescription(await pc.createOffer())
            except Exception as exc:  # aiortc raises a variety; the neighbour is just lost
                log.info("%s: offer to %s failed: %s", self.options.name, peer_id, exc)
                self._drop(nb, "offer failed")
                return
            if nb.closed:
                return
            self._arm_timeout(nb)
            self._send_control({"type": "signal", "to": peer_id, "data": {"sdp": {"type": "offer", "sdp": pc.localDescription.sdp}}})

    async def _on_signal(self, sender: str, data: dict[str, Any]) -> None:
        if sender in self.banned or self.vanished:
            return
        sdp = data.get("sdp")
        if isinstance(sdp, dict) and sdp.get("type") == "offer" and isinstance(sdp.get("sdp"), str):
            await self._accept(sender, sdp["sdp"])
            return
        nb = self.neighbours.get(sender)
        if nb is None or nb.closed:
            return
        async with nb.lock:
            if nb.closed:
                return
            try:
                if isinstance(sdp, dict) and sdp.get("type") == "answer" and isinstance(sdp.get("sdp"), str):
                    if nb.outgoing and nb.pc.signalingState == "have-local-offer":
                        await nb.pc.setRemoteDescription(RTCSessionDescription(sdp["sdp"], "answer"))
                        await self._flush_candidates(nb)
                elif "candidate" in data:
                    nb.candidates.append(data["candidate"])
                    if nb.pc.remoteDescription is not None:
                        await self._flush_candidates(nb)
                elif "reject" in data and not nb.open:
                    self._drop(nb, f"refused: {data['reject']}")
            except Exception as exc:
                log.info("%s: signal from %s: %s", self.options.name, sender, exc)
                self._drop(nb, "bad signal")

    async def _flush_candidates(self, nb: Neighbour) -> None:
        pending, nb.candidates = nb.candidates, []
        for raw in pending:
            if not raw or not isinstance(raw, dict) or not raw.get("candidate"):
                await nb.pc.addIceCandidate(None)  # end of candidates
                continue
            text = str(raw["candidate"])
            if text.startswith("candidate:"):
                text = text[len("candidate:"):]
            try:
                candidate = candidate_from_sdp(text)
            except (AssertionError, ValueError, IndexError):
                continue
            candidate.sdpMid = raw.get("sdpMid")
            candidate.sdpMLineIndex = raw.get("sdpMLineIndex")
            if candidate.sdpMid is None and candidate.sdpMLineIndex is None:
                candidate.sdpMLineIndex = 0
            await nb.pc.addIceCandidate(candidate)

    async def _accept(self, sender: str, offer: str) -> None:
        existing = self.neighbours.get(sender)
        if existing is not None and not existing.closed:
            if existing.outgoing and not existing.open and self.peer_id < sender:
                return  # both offered at once: ours wins, they will answer it
            self._drop(existing, "replaced by its offer")
        if self.leaving or self._live_neighbours() >= self.options.max_links:
            self._send_control({"type": "signal", "to": sender, "data": {"reject": "full"}})
            return
        nb = Neighbour(sender, outgoing=False, link=Link(max_index=self._max_index()))
        nb.link.sizes = self.sizes
        self.neighbours[sender] = nb
        async with nb.lock:
            try:
                pc = self._new_pc(nb)

                @pc.on("datachannel")
                def on_channel(channel: Any) -> None:
                    if channel.label != self.label or nb.channel is not None:
                        channel.close()
                        return
                    self._bind(nb, channel)

                await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
                await self._flush_candidates(nb)
                await pc.setLocalDescription(await pc.createAnswer())
            except Exception as exc:
                log.info("%s: offer from %s failed: %s", self.options.name, sender, exc)
                self._drop(nb, "bad offer")
                return
            if nb.closed:
                return
            self._arm_timeout(nb)
            self._send_control({"type": "signal", "to": sender, "data": {"sdp": {"type": "answer", "sdp": pc.localDescription.sdp}}})

    def _on_open(self, nb: Neighbour) -> None:
        if nb.open or nb.closed:
            return
        nb.open = True
        if nb.timer is not None:
            nb.timer.cancel()
        self.report.links_opened += 1
        self._send_have(nb)
        queued, nb.queued = nb.queued, []
        for frame in queued:
            self._send_frame(nb, frame)

    def _send_frame(self, nb: Neighbour, frame: bytes) -> bool:
        if nb.closed or nb.channel is None or nb.channel.readyState != "open":
            return False
        try:
            nb.channel.send(frame)
        except Exception:  # InvalidStateError and friends: the channel is going away
            self._drop(nb, "send failed")
            return False
        return True

    def _send_have(self, nb: Neighbour) -> None:
        held = len(self.chunks)
        if nb.open and held != nb.sent_have:
            nb.sent_have = held
            self._send_frame(nb, Link.have(self.chunks))

    def _on_frame(self, nb: Neighbour, message: Any) -> None:
        if (self._frozen or nb.closed) and isinstance(message, bytes):
            # In flight when we banned the sender (or left): never used, but a
            # bad one is counted, so that a benchmark accounts for every bad chunk.
            with contextlib.suppress(WireError):
                for event in nb.link.receive(message):
                    if isinstance(event, ChunkIn) and _sha256(event.data) != self.hashes.get(event.index):
                        self.report.discarded += 1
            return
        if self._frozen or nb.closed:
            return
        if not isinstance(message, bytes):
            self._ban(nb, "text frame on a binary channel")
            return
        try:
            events = nb.link.receive(message)
        except WireError as exc:
            self.report.protocol_errors += 1
            self._ban(nb, f"protocol: {exc}")
            return
        for event in events:
            if isinstance(event, ChunkIn):
                self._on_chunk(nb, event)
                if nb.closed:
                    return
            elif isinstance(event, Wanted):
                self._serve(nb, event.index)
            elif isinstance(event, PeerHas):
                nb.has_have = True
                if not self.leaving:
                    self.sched.set_peer(nb.peer_id, event.indices)
                    self._wake.set()
            elif isinstance(event, Choked):
                self.report.chokes_received += 1
                req = self.sched.inflight.get(event.index)
                if req is not None and req.source == nb.peer_id:
                    self.sched.failed(event.index, self.clock.now())
                    self._wake.set()
            elif isinstance(event, Withdrawn):
                pass  # whole chunks go out at once: nothing queued to take back

    def _on_chunk(self, nb: Neighbour, event: ChunkIn) -> None:
        expected = self.hashes.get(event.index)
        if expected is None or _sha256(event.data) != expected:
            self.report.verify_failures += 1
            log.info("%s: chunk %d from %s does not match the manifest", self.options.name, event.index, nb.peer_id)
            self._ban(nb, "bad chunk")
            return
        self._deliver(event.index, event.data, nb.peer_id)

    def _serve(self, nb: Neighbour, index: int) -> None:
        data = self.chunks.get(index)
        if (
            data is None
            or self.leaving
            or nb.channel is None
            or nb.channel.bufferedAmount > MAX_BUFFERED
            or not self.slots.admit(nb.peer_id, self.clock.now())
        ):
            self.report.chokes_sent += 1
            self._send_frame(nb, Link.choke(index))
            return
        if self.options.corrupt:
            data = _corrupt(data)
        for frame in Link.serve(index, data):
            if not self._send_frame(nb, frame):
                return
        if self.options.corrupt:
            self.report.bad_sent += 1
        self.report.p2p_up_bytes += len(data)

    def _ban(self, nb: Neighbour, reason: str) -> None:
        self.banned.add(nb.peer_id)
        self.report.banned += 1
        # Cut off at once, but the connection closes a moment later, so that
        # what the sender had already queued arrives and is counted (as
        # ``discarded``), never used: a benchmark can account for every bad chunk.
        self._drop(nb, reason, grace=BAN_GRACE)

    def _drop(self, nb: Neighbour, reason: str, grace: float = 0.0) -> None:
        if nb.closed:
            return
        nb.closed = True
        log.debug("%s: dropping %s: %s", self.options.name, nb.peer_id, reason)
        if nb.timer is not None:
            nb.timer.cancel()
        if self.neighbours.get(nb.peer_id) is nb:
            del self.neighbours[nb.peer_id]
            self.sched.remove_peer(nb.peer_id)
            self.slots.release(nb.peer_id)
        if nb.pc is not None:
            closer = asyncio.ensure_future(self._close_pc(nb.pc, grace))
            self._closers.add(closer)
            closer.add_done_callback(self._closers.discard)
        self._wake.set()

    @staticmethod
    async def _close_pc(pc: Any, grace: float = 0.0) -> None:
        if grace > 0:
            await asyncio.sleep(grace)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(pc.close(), CLOSE_TIMEOUT)

    def _max_index(self) -> int:
        return max(len(self.hashes), 100_000)

    # ---- housekeeping ------------------------------------------------------

    async def _housekeeper(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING)
            if self.vanished or self._ws is None or self._ws.closed:
                continue
            real = time.monotonic()
            if self._new_have and real - self._last_have >= HAVE_FLUSH:
                self._announce(real)
            playing = not self.options.seed_only and not self.leaving and self.playback.state is not State.ENDED
            if playing and self.rendition:
                short = self._live_neighbours() < self.options.want_links
                if (short and real - self._last_want >= WANT_INTERVAL) or (
                    self._want_soon and real - self._last_want >= WANT_SOON
                ):
                    self._want(real)
            in_use = self.slots.in_use(self.clock.now())
            if in_use != self._slots_reported and real - self._last_slots >= SLOTS_INTERVAL:
                self._slots_reported = in_use
                self._last_slots = real
                self._send_control({"type": "slots", "in_use": in_use})
            if real - self._last_stats >= self.stats_interval:
                self._send_stats(real)
            if self.manifest and not self.manifest.get("complete") and real - self._last_manifest >= MANIFEST_REFRESH:
                self._last_manifest = real
                self._spawn(self._refresh_manifest())

    def _announce(self, real: float) -> None:
        self._last_have = real
        new, self._new_have = self._new_have, set()
        complete = bool(self.manifest.get("complete")) and len(self.chunks) >= len(self.hashes)
        if not self._announced_any:
            self._announced_any = True
            message: dict[str, Any] = {"ranges": [list(r) for r in to_ranges(self.chunks)][:256], "replace": True}
        else:
            message = {"ranges": [list(r) for r in to_ranges(new)][:256]}
        self._send_control({"type": "have", "track": self.track, "rendition": self.rendition, **message,
                            "complete": complete})
        for nb in list(self.neighbours.values()):
            self._send_have(nb)

    def _want(self, real: float) -> bool:
        """Ask the tracker for holders of the next chunks needed; whether it did."""
        self._last_want = real
        self._want_soon = False
        s = self.sched
        lead_end = s.anchor + s.settings.server_lead
        needed = [
            c.index for c in s.chunks
            if c.start + c.duration > self.playback.position and c.start >= lead_end and c.index not in s.buffered
        ][:WANT_CHUNKS]
        if not needed:
            return False
        self._send_control({"type": "want", "track": self.track, "rendition": self.rendition, "chunks": needed})
        self._want_sent = real
        return True

    def _stats_now(self) -> dict[str, int]:
        r = self.report
        return {
            "p2p_down_bytes": r.p2p_down_bytes,
            "p2p_up_bytes": r.p2p_up_bytes,
            "http_down_bytes": r.http_down_bytes,
            "stalls": r.stalls,
            "verify_failures": r.verify_failures,
        }

    def _send_stats(self, real: float) -> None:
        self._last_stats = real
        now = self._stats_now()
        delta = {k: v - self._reported.get(k, 0) for k, v in now.items()}
        message: dict[str, Any] = {"type": "stats", **delta}
        if self.report.startup_seconds is not None and not self._startup_reported:
            self._startup_reported = True
            message["startup_seconds"] = round(self.report.startup_seconds, 4)
        self._reported = now
        self._last_delta = delta
        self._send_control(message)

    async def _final_stats(self) -> None:
        """The last report, confirmed: a ping after it, and the pong (or a
        refusal first); a refused report is sent once more after a pause."""
        for _attempt in range(2):
            if self._ws is None or self._ws.closed:
                return
            self._stats_error = False
            self._pong.clear()
            self._send_stats(time.monotonic())
            self._send_control({"type": "ping"})
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._pong.wait(), 3.0)
            if not self._stats_error:
                return
            await asyncio.sleep(2.1)  # the stats bucket refills one report per 2 s

    async def _refresh_manifest(self) -> None:
        with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, OSError, PeerError, KeyError, ValueError):
            await self._get_manifest()
            self._wake.set()

    # ---- the end -----------------------------------------------------------

    async def _shutdown(self) -> None:
        if self._control_started and not self.report.left_early:  # a peer that left reported as it went
            await self._final_stats()
        for nb in list(self.neighbours.values()):
            self._drop(nb, "shutdown")
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(), CLOSE_TIMEOUT)
        # Let the pc.close() tasks finish, then stop everything else.
        current = asyncio.current_task()
        if self._closers:
            await asyncio.wait(list(self._closers), timeout=CLOSE_TIMEOUT + 1)
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        for task in list(self._tasks):
            if task is not current:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._own_session and self._session is not None:
            await self._session.close()

    def _final_check(self) -> None:
        self.report.held = len(self.chunks)
        self.report.hash_mismatches = sum(1 for i, d in self.chunks.items() if _sha256(d) != self.hashes.get(i))

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            if not isinstance(exc, (ConnectionError, aiohttp.ClientError)):
                log.error("%s: task failed", self.options.name, exc_info=exc)
