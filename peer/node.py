"""The headless peer: a thin asyncio + aiortc shell around the pure cores.

Theory of operation
-------------------
``PeerNode`` plays one track (or a playlist, one track after the other) the
way the browser player does and seeds what it holds. Decisions are made by the pure cores; this module only moves bytes:

- ``peer.core.P2PCore`` (the rules of ``client/p2p.js``, pinned to it by
  ``tests/vectors/p2p/``) decides whom to dial and answer, what to announce
  to the tracker and to neighbours, when to ``want``, what to serve or
  choke, whom to ban, how long the scheduler may wait for peers, and what
  ``stats`` to report. It is fed events with ``now`` in real seconds (the
  clock's ``real()``: network delays are real) and returns effects, which
  ``_apply`` carries out, as ``client/transport.js`` does in the browser;
- ``peer.player.Track`` is the virtual player's state of the track playing:
  its manifest and verified chunks, its ``peer.scheduler.Scheduler`` (the
  rules of ``client/scheduler.js``: what to fetch from where, with deadlines
  in audio time) and its ``peer.playback.Playback`` (playhead, stalls,
  start-up), driven by ``peer.clock.VirtualClock``.

The control socket carries ``protocol.messages`` values, read with
``protocol.codec.parse_server`` and written with ``protocol.codec.encode``.
What a benchmark makes a peer do wrong is ``peer.faults``; what the peer did,
``peer.report.PeerReport``; the aiortc objects of a neighbour, ``peer.rtc``.

The shell has four kinds of task: the control socket reader (every message
goes to the core; ``pong`` and refusals are noted here), the play loop
(playback -> ``expired`` -> ``next`` -> dispatch, woken by every arrival and
by a short tick), the housekeeper (the core's ``tick``, re-reads of a live
manifest), and one fetch task per server request. aiortc callbacks (channel
open, message, close) feed the core synchronously.

Signaling follows the browser's convention: the dialler creates the
RTCPeerConnection and one binary DataChannel labelled
``ztream/1/<track>/<rendition>`` and sends ``{"sdp": {"type": "offer", ...}}``;
the other side answers ``{"sdp": {"type": "answer", ...}}``. aiortc puts its
ICE candidates in the SDP; trickled ``{"candidate": {...}}`` from a browser
are added as they come (``null``/empty: end of candidates). The core answers
``{"reject": "full"}`` to an offer it has no room for.

A playlist (``PeerOptions.playlist``: the tracks after the first) is played
in order on one control socket and one core: while a track plays, the next
one's manifest is read and the core's ``lookup`` asks the neighbours about
it (the overlay, docs/wire.md); starting it is one synchronous step (new
``Track``, ``start_session``, which tells the neighbours left behind
where this peer goes). ``Faults.drop_wants_from`` makes the tracker unreachable for
``want`` from that playlist position on: the node's control socket drops
those frames (counted), a real mechanism for tests and benchmarks.

Every chunk is checked against the manifest's SHA-256 before it is used or
served on. A neighbour that sends a bad chunk or breaks the wire format is
dropped and banned for the session (the core's rule), and
``verify_failures`` counts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import math
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import aiohttp
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription

from protocol.codec import encode, parse_server, signal_data
from protocol.messages import (
    Description,
    Error,
    Have,
    IceCandidate,
    Introduce,
    PeerMessage,
    Peers,
    Ping,
    Pong,
    ProtocolError,
    Signal,
    SignalFrom,
    Want,
    Welcome,
)
from protocol.values import ChunkSet, Json
from protocol.wire import T_CHOKE, T_LOOKUP

from . import live
from .cache import ChunkCache
from .clock import VirtualClock
from .core import (
    DEFAULT_P2P_SETTINGS,
    Close,
    Control,
    Deliver,
    Effect,
    Open,
    P2PCore,
    P2PSettings,
    PeerGone,
    PeerHave,
    Reject,
    Rtc,
    Send,
    Serve,
)
from .faults import NO_FAULTS, Faults
from .live_track import SERVER as LIVE_SERVER
from .live_track import Fetch, LiveSettings, LiveState, LiveTrack
from .manifest import Manifest
from .playback import State
from .player import Track, sha256
from .report import PeerReport
from .rtc import Neighbour, aiortc_candidate, ice_server
from .scheduler import CACHE, DEFAULT_SETTINGS, SERVER, Request, Settings
from .upload import decide_upload

__all__ = ["PeerNode", "PeerOptions", "PeerError", "is_loopback_url"]

log = logging.getLogger("ztream.peer")

MANIFEST_REFRESH = 1.0  # real seconds between re-reads of a live manifest
HOUSEKEEPING = 0.05  # real seconds between two runs of the core's tick
MAX_TICK = 0.05  # real seconds the play loop sleeps at most
LIVE_SAMPLE = 0.5  # real seconds between two latency samples of a live track
LIVE_TICK = 0.1  # real seconds the live play loop sleeps at most
HTTP_TIMEOUT = 30.0
CLOSE_TIMEOUT = 2.0
BAN_GRACE = 1.0  # real seconds between banning a neighbour and closing its connection
NOTICE_GRACE = 0.5  # real seconds a connection left for another track stays up, so that the notice arrives
MANIFEST_SOON = 0.2  # real seconds between a live manifest re-read and one that a neighbour's HAVE asks for
STATS_RETRY = 2.1  # real seconds before a refused last report is sent again (the bucket refills one per 2 s)


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


@dataclass
class PeerOptions:
    speed: float = 1.0
    cache_dir: Path | None = None
    seed_only: bool = False
    # Real seconds to keep seeding after the track has played; None: until
    # ``stop()`` (or the ``stop`` event given to ``run``).
    linger: float | None = 0.0
    settings: Settings = DEFAULT_SETTINGS  # the scheduler's
    p2p: P2PSettings = DEFAULT_P2P_SETTINGS  # the P2P core's (neighbours, wants, slots, ...)
    # No ICE servers (a gateway on loopback has no STUN or TURN to offer). None: when the gateway is on loopback.
    loopback_only: bool | None = None
    faults: Faults = NO_FAULTS  # what a benchmark makes this peer do wrong
    name: str = ""
    # The tracks played after the first one, in order (a playlist).
    playlist: tuple[str, ...] = ()
    # The listener's upload choice (peer/upload.py): running a peer is saying
    # "share"; "stop" (``--no-upload``) downloads only. The gateway's
    # ``p2p.upload = "off"`` applies whatever this says; the cap
    # (``p2p.upload_kbps``, or ``p2p.upload_kbps`` here where stricter) always,
    # in the peer's own time: at ``speed`` N, N times as many bytes a real second.
    upload: Literal["share", "stop"] = "share"
    # A live track: real seconds to listen before leaving; None: until ``stop()``.
    live_seconds: float | None = None


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
        self.options = options or PeerOptions()
        self.clock = clock or VirtualClock(self.options.speed)
        self._session = session
        self._own_session = session is None
        self.report = PeerReport(name=self.options.name, track=track)
        self.faults = self.options.faults
        self.core = P2PCore(replace(self.options.p2p, corrupt=self.faults.corrupt or self.options.p2p.corrupt))
        self.playing = Track(track, self.options.settings)  # the virtual player's track
        self.neighbours: dict[str, Neighbour] = {}
        self.peer_id = ""
        self.ice_servers: tuple[dict[str, Json], ...] = ()
        self.leaving = False
        self.vanished = False
        self._frozen = False
        self._in_session = False
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._outbox: asyncio.Queue[str] = asyncio.Queue()
        self._closers: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_manifest = 0.0
        self._pong = asyncio.Event()
        self._stats_error = False
        self._play_started = 0.0
        self._control_started = False
        self.position = 0  # in the playlist
        self._next_manifest: Manifest | None = None
        self._looked_ahead = False
        self._stalls_before = 0  # stalls of the tracks already played
        self._stalled_before = 0.0
        self._switching = False  # starting the next playlist track
        self.live: LiveTrack | None = None  # the track playing is live (its manifest says so)
        self._manifest_soon = False  # a neighbour announced a chunk past our manifest's edge
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
        if self._session is None:
            self._session = aiohttp.ClientSession()
        self._play_started = self.clock.real()
        try:
            await self._start()
            if self.options.seed_only:
                await self._seed_everything()
            else:
                await self._play()
                for nxt in range(1, 1 + len(self.options.playlist)):
                    if self.leaving or self._stopped.is_set() or not self.report.played_to_end:
                        break
                    await self._next_track(nxt)
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
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            raise PeerError(f"cannot reach the gateway at {self.gateway}: {exc}") from exc
        finally:
            if not manifest_task.done():
                manifest_task.cancel()
                with contextlib.suppress(BaseException):
                    await manifest_task
        if first.type != aiohttp.WSMsgType.TEXT:
            raise PeerError(f"the control socket did not greet us ({first.type})")
        try:
            welcome = parse_server(first.data)
        except ProtocolError:
            welcome = None
        if not isinstance(welcome, Welcome):
            raise PeerError(f"expected a welcome, got {first.data[:100]!r}")
        self.peer_id = self.report.peer_id = welcome.peer_id
        self._control_started = True
        self._spawn(self._write_control())
        # decided before the core reads the welcome, which announces what is held
        share = decide_upload(operator=welcome.upload, choice=self.options.upload).share
        self._apply(self.core.set_upload(share, self.clock.real()))
        self._apply(self.core.on_control(welcome, self.clock.real()))
        if self.clock.speed != 1 and self.core.budget.kbps > 0:
            # A peer playing N times faster than real time is a listener
            # simulated N times faster: its uplink (the cap) too, as audio is
            # (a benchmark's swarm at 12x models listeners capped at the
            # gateway's kbit/s in their own time, not at a twelfth of it).
            self.core.budget.set_cap(self.core.budget.kbps * self.clock.speed)
        self.ice_servers = () if self.loopback else self.core.ice_servers
        if self.options.cache_dir is not None:
            self.playing.open_cache(self.options.cache_dir)
        if not self.options.seed_only:
            self._start_session()  # a reload announces what the cache holds
        self._spawn(self._read_control())
        self._spawn(self._housekeeper())

    def _start_session(self) -> None:
        self._in_session = True
        chunks = self.live.wanted() if self.live is not None else self.playing.hashes
        self._apply(self.core.start_session(
            self.playing.id, self.playing.rendition, chunks, self.clock.real(),
            complete=self.playing.complete, held=sorted(self.playing.chunks),
        ))

    async def _get_manifest(self) -> None:
        assert self._session is not None
        url = f"{self.gateway}/v1/tracks/{self.playing.id}/manifest"
        # Live: after the first (whole) read, a delta of the chunks past the newest held (docs/live.md).
        after = live.delta_after(self.playing.manifest) if self.live is not None else None
        if after is not None:
            url += f"?after={after}"
        async with self._session.get(url, timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT)) as r:
            if r.status != 200:
                raise PeerError(f"GET {url}: {r.status} {(await r.text())[:200]}")
            body = await r.read()
        self.report.manifest_reads += 1
        self.report.manifest_bytes += len(body)
        manifest = json.loads(body)
        if after is not None:
            manifest = live.merge_delta(self.playing.manifest, manifest)
        self._set_manifest(manifest)

    def _set_manifest(self, manifest: Manifest) -> None:
        t = self.playing
        if not t.set_manifest(manifest):
            log.warning("%s: the rendition changed under us; keeping %s", self.options.name, t.rendition)
            return
        self.report.rendition = t.rendition
        self.report.total_chunks = len(manifest["chunks"])  # of the track playing
        if manifest.get("live") and self.live is None and self.position == 0:
            self.live = LiveTrack(LiveSettings(request_slots=self.core.settings.request_slots))
        if self.live is not None:
            self.live.manifest(manifest, time.time())
            self.report.live = True
            if self._in_session:
                self._apply(self.core.update_manifest(self.live.wanted(), self.clock.real()))
            return
        if self._in_session:
            self._apply(self.core.update_manifest(t.hashes, self.clock.real(), complete=t.complete))

    # ---- the core's effects ------------------------------------------------

    def _apply(self, effects: Sequence[Effect] | None) -> None:
        """Carry out what the core decided (``client/transport.js`` ``apply``)."""
        for e in effects or ():
            if isinstance(e, Control):
                self._send_control(e.msg)
            elif isinstance(e, Send):
                self._send_frame(e.peer, e.frame)
            elif isinstance(e, Serve):
                self._serve(e.peer, e.index)
            elif isinstance(e, Deliver):
                self._on_chunk(e.peer, e.index, e.data)
            elif isinstance(e, Reject):
                if e.reason == "choked":
                    self.report.chokes_received += 1
                if self.live is not None:
                    if e.reason == "choked":
                        self.live.choked(e.index, e.peer, time.time())
                    else:
                        self.live.failed(e.index, e.peer, time.time())
                    self._wake.set()
                    continue
                req = self.playing.sched.inflight.get(e.index)
                if req is not None and req.source == e.peer:
                    self.playing.sched.failed(e.index, self.clock.now())
                    self._wake.set()
            elif isinstance(e, PeerHave) and self.live is not None:
                self._live_peer_have(e.peer, e.have)
            elif isinstance(e, PeerGone) and self.live is not None:
                self.live.peer_gone(e.peer)
                self._wake.set()
            elif isinstance(e, PeerHave):
                if not self.leaving:
                    self.playing.sched.set_peer(e.peer, e.have, self.core.settings.request_slots)
                    self._wake.set()
            elif isinstance(e, PeerGone):
                self.playing.sched.remove_peer(e.peer)
                self._wake.set()
            elif isinstance(e, Open):
                self._open(e.peer, outgoing=e.role == "offerer")
            elif isinstance(e, Rtc):
                nb = self.neighbours.get(e.peer)
                if nb is not None:
                    self._spawn(self._signal(nb, e.data))
            elif isinstance(e, Close):
                nb = self.neighbours.pop(e.peer, None)
                if nb is not None:
                    if not nb.open:
                        self.report.connect_failures += 1
                        # Not connected directly: TURN credentials are asked for (docs/p2p.md).
                        self._apply(self.core.need_relay(self.clock.real()))
                    # A banned sender's connection closes a moment later, so that
                    # what it had already queued arrives and is counted
                    # (``discarded``), never used: a benchmark accounts for every bad chunk.
                    grace = BAN_GRACE if e.peer in self.core.banned else NOTICE_GRACE if self._switching else 0.0
                    self._close(nb, "closed by the core", grace=grace)

    def _totals(self) -> dict[str, float]:
        r = self.report
        totals: dict[str, float] = {"httpBytes": r.http_down_bytes, "peerBytes": r.p2p_down_bytes,
                                    "livePeerBytes": r.p2p_live_down_bytes, "stalls": r.stalls}
        if self.live is not None and self.live.latency is not None:
            totals["liveLatency"] = self.live.latency  # a value, not a count
        return totals

    def _send_frame(self, peer: str, frame: bytes) -> None:
        nb = self.neighbours.get(peer)
        if nb is None or nb.closed or nb.channel is None or nb.channel.readyState != "open":
            return
        if frame[1] == T_CHOKE:
            self.report.chokes_sent += 1
        elif frame[1] == T_LOOKUP:
            self.report.lookups += 1
        try:
            nb.channel.send(frame)
        except Exception:  # InvalidStateError and friends: the channel is going away
            self._lost(nb, "send failed")

    def _serve(self, peer: str, index: int) -> None:
        data = self.playing.chunks.get(index)
        before = self.core.up_bytes
        self._apply(self.core.served(peer, index, data, self.clock.real()))
        if self.core.up_bytes > before:
            self.report.p2p_up_bytes = self.core.up_bytes
            if self.core.settings.corrupt:
                self.report.bad_sent += 1

    def _on_chunk(self, peer: str, index: int, data: bytes) -> None:
        if not self.playing.matches(index, data):
            self.report.verify_failures += 1
            self.report.banned += 1
            log.info("%s: chunk %d from %s does not match the manifest", self.options.name, index, peer)
            self._apply(self.core.verify_failed(peer, self.clock.real()))
            return
        self._deliver(index, data, peer)

    # ---- playing -----------------------------------------------------------

    async def _play(self) -> None:
        if self.live is not None:
            await self._play_live()
            return
        if self.playing.init is None:
            self._spawn(self._fetch_init())
        self.playing.sched.seek(0.0)
        tick = min(MAX_TICK, 0.5 / self.clock.speed)
        while not self._stopped.is_set():
            now = self.clock.now()
            state = self.playing.advance(now)
            if len(self.report.track_startups) == self.report.tracks_played and self.playing.playback.started_at is not None:
                self.report.track_startups.append(self.clock.real() - self._play_started)
                if self.report.startup_seconds is None:
                    self.report.startup_seconds = self.report.track_startups[0]
                    self.core.note_startup(self.report.startup_seconds)
            self.report.stalls = self._stalls_before + self.playing.playback.stalls
            self.report.stalled_seconds = self._stalled_before + self.playing.playback.stalled_seconds
            if state is State.ENDED:
                self.report.track_p2p_bytes.append(self.report.p2p_down_bytes - sum(self.report.track_p2p_bytes))
                self.report.tracks_played += 1
                self.report.played_to_end = True
                return
            position = self.playing.playback.position
            self._maybe_look_ahead(position)
            if self.faults.leaves(self.position, position):
                await self._leave()
                return
            for req in self.playing.sched.expired(now, position):
                self._expire(req)
            self.playing.sched.set_peer_wait(self._peer_wait_until())
            for req in self.playing.sched.next(now, position):
                self._dispatch(req)
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), tick)

    # ---- a live track ------------------------------------------------------

    async def _play_live(self) -> None:
        """Listen at the edge (``peer.live_track``) for ``live_seconds``, or until stopped."""
        lt = self.live
        assert lt is not None
        if self.clock.speed != 1:
            raise PeerError("a live track plays in real time: speed 1")
        if self.playing.init is None:
            self._spawn(self._fetch_init())
        started = self.clock.real()
        sampled = evicted = 0.0
        while not self._stopped.is_set():
            real = self.clock.real()
            if self.options.live_seconds is not None and real - started >= self.options.live_seconds:
                break
            now = time.time()
            lt.ready = self.playing.init is not None
            state = lt.advance(now)
            if self.report.startup_seconds is None and lt.started_at is not None:
                self.report.startup_seconds = real - self._play_started
                self.report.track_startups.append(self.report.startup_seconds)
                self.core.note_startup(self.report.startup_seconds)
            self.report.stalls = lt.stalls
            self.report.stalled_seconds = lt.stalled_seconds
            self.report.live_jumps = lt.jumps
            self.report.live_skipped = lt.skipped
            if state is LiveState.PLAYING and lt.latency is not None and real - sampled >= LIVE_SAMPLE:
                sampled = real
                source = lt.playing_from()
                self.report.live_samples.append(
                    (round(now, 3), round(lt.latency, 3), "server" if source == LIVE_SERVER else "peer"))
            played = 0.0 if lt.started_at is None else now - lt.started_at
            if self.faults.leaves(self.position, played):
                await self._leave()
                return
            for req in lt.expired(now):
                self._expire(req)
            neighbours = [p for p, nb in self.neighbours.items() if nb.open and not nb.closed]
            for req in lt.next(now, self.peer_id, neighbours):
                self._dispatch_live(req)
            if real - evicted >= 1.0:
                evicted = real
                for index in lt.evictable():
                    lt.drop(index)
                    self.playing.chunks.pop(index, None)
                    self.playing.hashes.pop(index, None)
                    self._apply(self.core.chunk_dropped(index))
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                # Woken by every arrival, HAVE and failure; the tick only moves the playhead.
                await asyncio.wait_for(self._wake.wait(), LIVE_TICK)
        self.report.played_to_end = True  # a live track has no end: listened as long as asked

    def _live_peer_have(self, peer: str, have: Sequence[int]) -> None:
        lt = self.live
        assert lt is not None
        if self.leaving:
            return
        lt.peer_holds(peer, have)
        if lt.edge is not None and have and have[-1] > lt.edge:
            # the neighbour has a chunk our manifest does not list yet: it exists,
            # and we re-read the manifest soon to check it against its hash
            now = time.time()
            for index in have:
                if index > lt.edge:
                    lt.heard(index, now)
            self._manifest_soon = True
        self._wake.set()

    def _dispatch_live(self, req: Fetch) -> None:
        lt = self.live
        assert lt is not None
        if req.source == LIVE_SERVER:
            self._spawn(self._fetch_live_chunk(req))
            return
        effects = self.core.request(req.source, req.index, self.clock.real())
        if effects is None:  # not an open neighbour (any more), or asked already
            lt.failed(req.index, req.source, time.time())
            return
        self._apply(effects)

    async def _fetch_live_chunk(self, req: Fetch) -> None:
        assert self._session is not None and self.live is not None
        began = time.time()
        data, etag = await self._chunk_from_server(req.index, "live chunk")
        lt = self.live
        if lt is None or lt.inflight.get(req.index) is not req:
            return
        if data is not None:
            self.report.http_down_bytes += len(data)
            # The chunk after the edge is not in our manifest yet: the server's ETag is its SHA-256.
            expected = lt.hash_of(req.index) or etag
            if sha256(data) == expected:
                self.playing.hashes[req.index] = expected
                self._deliver_live(req.index, data, LIVE_SERVER, None if req.ahead else time.time() - began)
                if req.ahead:
                    self._manifest_soon = True
                return
            log.warning("%s: live chunk %d from the server does not match its hash", self.options.name, req.index)
        lt.failed(req.index, LIVE_SERVER, time.time())
        self._wake.set()

    def _deliver_live(self, index: int, data: bytes, source: str, seconds: float | None = None) -> None:
        lt = self.live
        assert lt is not None
        if index in lt.held:
            return
        self.playing.chunks[index] = data
        lt.received(index, source, time.time(), seconds)
        if source == LIVE_SERVER:
            self.report.chunks_server += 1
        else:
            self.report.chunks_peer += 1
            self.report.p2p_down_bytes += len(data)
            self.report.p2p_live_down_bytes += len(data)
            self.core.delivered_by(source, len(data))
        self._apply(self.core.chunk_added(index, self.clock.real()))
        self._wake.set()

    # ---- a playlist ------------------------------------------------------

    def _maybe_look_ahead(self, position: float) -> None:
        """Half-way through a track with a next one: read its manifest and ask
        the neighbours who holds it (``P2PCore.lookup``), once."""
        if self._looked_ahead or self.position >= len(self.options.playlist):
            return
        end = self.playing.known_end()
        if end is None or position < end / 2:
            return
        self._looked_ahead = True
        self._spawn(self._look_ahead(self.options.playlist[self.position]))

    async def _look_ahead(self, track: str) -> None:
        try:
            manifest = await self._read_manifest(track)
        except (TimeoutError, aiohttp.ClientError, OSError, PeerError, ValueError):
            self.report.lookup_ahead_failures += 1
            return
        self._next_manifest = manifest
        if not self.leaving:
            self._apply(self.core.lookup(track, str(manifest["rendition"]), self.clock.real()))

    async def _next_track(self, position: int) -> None:
        """Start playlist track ``position``: its manifest (read ahead, or now),
        then new per-track state and the core's new session in one step."""
        track = self.options.playlist[position - 1]
        manifest = self._next_manifest
        if manifest is None or manifest.get("id") not in (None, track):
            manifest = await self._read_manifest(track)
        self._next_manifest = None
        self._looked_ahead = False
        self._stalls_before = self.report.stalls
        self._stalled_before = self.report.stalled_seconds
        # From here to start_session nothing awaits: no frame of the old track
        # meets the new track's hashes.
        self.position = position
        self.report.played_to_end = False
        self.playing = Track(track, self.options.settings)
        if self.options.cache_dir:
            self.playing.cache = ChunkCache(self.options.cache_dir, track, str(manifest["rendition"]))
        self._in_session = False
        self._set_manifest(manifest)
        self._play_started = self.clock.real()
        self._switching = True
        try:
            self._start_session()
        finally:
            self._switching = False

    async def _read_manifest(self, track: str) -> Manifest:
        assert self._session is not None
        url = f"{self.gateway}/v1/tracks/{track}/manifest"
        async with self._session.get(url, timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT)) as r:
            if r.status != 200:
                raise PeerError(f"GET {url}: {r.status} {(await r.text())[:200]}")
            manifest: Manifest = await r.json()
        return manifest

    def _peer_wait_until(self) -> float:
        """The core's ``wait_until`` (real seconds) as audio time for the scheduler."""
        real = self.clock.real()
        until = self.core.wait_until(real)
        if not math.isfinite(until):
            return -math.inf
        return self.clock.now() + (until - real) * self.clock.speed

    def _dispatch(self, req: Request) -> None:
        if req.source == CACHE:
            data = self.playing.chunks.get(req.index)
            if data is None and self.playing.cache is not None:
                data = self.playing.cache.read(req.index)
            if data is not None and self.playing.matches(req.index, data):
                self._deliver(req.index, data, CACHE)
            else:
                self.playing.sched.failed(req.index, self.clock.now())
        elif req.source == SERVER:
            self._spawn(self._fetch_chunk(req))
        else:
            effects = self.core.request(req.source, req.index, self.clock.real())
            if effects is None:  # not an open neighbour (any more), or asked already
                self.playing.sched.failed(req.index, self.clock.now())
                return
            self._apply(effects)

    def _expire(self, req: Request | Fetch) -> None:
        self.report.expired += 1
        if req.source not in (SERVER, CACHE):
            self._apply(self.core.cancel(req.source, req.index))

    def _deliver(self, index: int, data: bytes, source: str) -> None:
        """A verified chunk: buffer it, cache it, announce it."""
        if self.live is not None:
            self._deliver_live(index, data, source)
            return
        if index in self.playing.sched.buffered:
            return
        self.playing.chunks[index] = data
        self.playing.sched.received(index)
        if source == SERVER:
            self.report.chunks_server += 1
        elif source == CACHE:
            self.report.chunks_cache += 1
        else:
            self.report.chunks_peer += 1
            self.report.p2p_down_bytes += len(data)
            self.report.p2p_sources[source] = self.report.p2p_sources.get(source, 0) + len(data)
            self.core.delivered_by(source, len(data))
        if self.playing.cache is not None and source != CACHE:
            with contextlib.suppress(OSError):
                self.playing.cache.write(index, data)
        self._apply(self.core.chunk_added(index, self.clock.real()))
        self._wake.set()

    async def _fetch_init(self) -> None:
        assert self._session is not None
        url = f"{self.gateway}/v1/tracks/{self.playing.id}/init"
        for attempt in range(5):
            try:
                async with self._session.get(url, timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT)) as r:
                    data = await r.read() if r.status == 200 else None
                if data is not None:
                    self.report.http_down_bytes += len(data)
                    if self.playing.verified_init(data) is not None:
                        self.playing.init = data
                        if self.playing.cache is not None:
                            with contextlib.suppress(OSError):
                                self.playing.cache.write_init(data)
                        self._wake.set()
                        return
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                log.info("%s: init: %s", self.options.name, exc)
            await asyncio.sleep(0.2 * (attempt + 1))
        raise PeerError("could not fetch a valid init segment")

    async def _chunk_from_server(self, index: int, what: str) -> tuple[bytes | None, str]:
        """Chunk ``index`` over HTTP and the server's ETag (its SHA-256); None for any failure, logged."""
        assert self._session is not None
        url = f"{self.gateway}/v1/tracks/{self.playing.id}/chunks/{index}"
        try:
            async with self._session.get(url, timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT)) as r:
                if r.status == 200:
                    return await r.read(), r.headers.get("ETag", "").strip('"')
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            log.info("%s: %s %d from the server: %s", self.options.name, what, index, exc)
        return None, ""

    async def _fetch_chunk(self, req: Request) -> None:
        data, etag = await self._chunk_from_server(req.index, "chunk")
        if self.playing.sched.inflight.get(req.index) is not req:
            return  # given up meanwhile (a seek)
        if data is not None:
            self.report.http_down_bytes += len(data)
            expected = self.playing.hashes.get(req.index) or etag
            if sha256(data) == expected:
                self._deliver(req.index, data, SERVER)
                return
            log.warning("%s: chunk %d from the server does not match its hash", self.options.name, req.index)
        self.playing.sched.failed(req.index, self.clock.now())
        if req.live:
            self._last_manifest = 0.0  # re-read the manifest soon
        self._wake.set()

    async def _seed_everything(self) -> None:
        """--seed-only: hold every chunk (from the cache, else from the server once), then
        seed. The session starts once everything is held: a seeder wants no peers."""
        deadline = self.clock.real() + 600
        while not self.playing.complete and self.clock.real() < deadline and not self._stopped.is_set():
            await asyncio.sleep(MANIFEST_REFRESH)
            await self._refresh_manifest()
        if self.playing.init is None:
            await self._fetch_init()
        for _attempt in range(3):
            missing = [i for i in sorted(self.playing.hashes) if i not in self.playing.chunks]
            for start in range(0, len(missing), 4):
                if self._stopped.is_set():
                    return
                batch = [Request(i, SERVER) for i in missing[start : start + 4]]
                for req in batch:
                    self.playing.sched.inflight[req.index] = req  # what _fetch_chunk checks
                await asyncio.gather(*(self._fetch_chunk(req) for req in batch))
        self._start_session()

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
        if self.faults.vanish:
            # Gone without a word: the control socket closes (the tracker
            # forgets us) but the DataChannels stay open and answer nothing,
            # as from a machine that froze: only deadlines notice.
            self.vanished = True
            if self._ws is not None:
                await self._ws.close()
            await self._stopped.wait()
        else:
            self._apply(self.core.stop_session(self.clock.real()))
            if self._ws is not None:
                await self._ws.close()

    # ---- housekeeping ------------------------------------------------------

    async def _housekeeper(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING)
            if self.vanished or self._ws is None or self._ws.closed:
                continue
            self._apply(self.core.tick(self.clock.real(), self._totals()))
            real = self.clock.real()
            refresh = self.live.chunk_seconds if self.live is not None else MANIFEST_REFRESH
            soon = self._manifest_soon and real - self._last_manifest >= MANIFEST_SOON
            if self.playing.manifest and not self.playing.complete and (real - self._last_manifest >= refresh or soon):
                self._manifest_soon = False
                self._last_manifest = real
                self._spawn(self._refresh_manifest())

    async def _final_stats(self) -> None:
        """The last report, confirmed: a ping after it, and the pong (or a
        refusal first); a refused report (the core adds it back) is sent once
        more after a pause."""
        for _attempt in range(2):
            if self._ws is None or self._ws.closed:
                return
            self._stats_error = False
            self._pong.clear()
            self._apply(self.core.flush_stats(self.clock.real(), self._totals()))
            self._send_control(Ping())
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._pong.wait(), 3.0)
            if not self._stats_error:
                return
            await asyncio.sleep(STATS_RETRY)

    async def _refresh_manifest(self) -> None:
        with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, OSError, PeerError, KeyError, ValueError):
            await self._get_manifest()
            self._wake.set()

    # ---- the end -----------------------------------------------------------

    async def _shutdown(self) -> None:
        if self._control_started and not self.report.left_early:  # a peer that left reported as it went
            await self._final_stats()
        if not self.vanished:
            self._apply(self.core.stop_session(self.clock.real()))
        for nb in list(self.neighbours.values()):
            self._close(nb, "shutdown")
        self.neighbours.clear()
        if self._ws is not None and not self._ws.closed:
            await asyncio.sleep(0)  # let the writer send the leave
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
        self.report.held = len(self.playing.chunks)
        self.report.hash_mismatches = self.playing.mismatches()

    def _spawn(self, coro: Coroutine[object, object, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            if not isinstance(exc, (ConnectionError, aiohttp.ClientError)):
                log.error("%s: task failed", self.options.name, exc_info=exc)

    # ---- the control socket ------------------------------------------------

    def _send_control(self, message: PeerMessage) -> None:
        if self._ws is None or self._ws.closed or self.vanished:
            return
        if self.faults.liar:
            if isinstance(message, Have):
                message = Have(message.track, message.rendition, ChunkSet(), complete=True, replace=message.replace)
            elif isinstance(message, (Want, Introduce)):
                return
        if isinstance(message, Want):
            if self.faults.drops_want(self.position):
                self.report.wants_dropped += 1
                return
            self.report.wants += 1
            if self.clock.real() - self._play_started < 1.0:
                self.report.wants_at_start += 1
        elif isinstance(message, Introduce):
            self.report.introduces += 1
        self._outbox.put_nowait(encode(message))

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
                message = parse_server(msg.data)
            except ProtocolError:
                continue  # a newer server may send more
            if isinstance(message, Pong):
                self._pong.set()
            elif isinstance(message, Error):
                if message.for_type == "stats":
                    self._stats_error = True
                    self.report.stats_refused += 1
                elif message.code != "unknown_peer":
                    log.info("%s: gateway refused a message: %s", self.options.name, message)
            elif isinstance(message, Peers) and self.leaving:
                continue
            elif isinstance(message, SignalFrom) and self.faults.liar:
                continue  # a liar answers no offer
            elif isinstance(message, Peers) and message.for_type == "introduce" and message.peers:
                self.report.introduced += 1
            self._apply(self.core.on_control(message, self.clock.real()))
        self._apply(self.core.control_closed())

    # ---- WebRTC ------------------------------------------------------------

    def _open(self, peer: str, *, outgoing: bool) -> None:
        old = self.neighbours.pop(peer, None)
        if old is not None:
            self._close(old, "replaced")
        nb = Neighbour(peer, outgoing=outgoing, label=self.playing.label)
        self.neighbours[peer] = nb
        try:
            pc = self._new_pc(nb)
        except Exception as exc:  # aiortc raises a variety; the neighbour is just lost
            log.info("%s: connection to %s failed: %s", self.options.name, peer, exc)
            self._lost(nb, "no connection")
            return
        if outgoing:
            self._bind(nb, pc.createDataChannel(self.playing.label, ordered=True))
            self._spawn(self._offer(nb))
        else:

            def on_channel(channel: RTCDataChannel) -> None:
                if channel.label != self.playing.label or nb.channel is not None:
                    channel.close()
                    return
                self._bind(nb, channel)

            pc.on("datachannel", on_channel)

    def _new_pc(self, nb: Neighbour) -> RTCPeerConnection:
        # The core's current list: the welcome's, and TURN once asked for.
        servers = [server for s in (() if self.loopback else self.core.ice_servers)
                   if (server := ice_server(s)) is not None]
        pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        nb.pc = pc

        def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                self._lost(nb, f"connection {pc.connectionState}")

        pc.on("connectionstatechange", on_state)
        return pc

    def _bind(self, nb: Neighbour, channel: RTCDataChannel) -> None:
        nb.channel = channel
        channel.on("message", lambda message: self._on_frame(nb, message))
        channel.on("close", lambda: self._lost(nb, "channel closed"))
        if channel.readyState == "open":
            self._on_open(nb)
        else:
            channel.on("open", lambda: self._on_open(nb))

    def _send_description(self, nb: Neighbour, pc: RTCPeerConnection, kind: Literal["offer", "answer"]) -> None:
        local = pc.localDescription
        if not nb.closed and local is not None:
            self._send_control(Signal(nb.peer_id, signal_data(Description(kind, local.sdp))))

    async def _offer(self, nb: Neighbour) -> None:
        pc = nb.pc
        assert pc is not None
        async with nb.lock:
            try:
                await pc.setLocalDescription(await pc.createOffer())
            except Exception as exc:  # aiortc raises a variety; the neighbour is just lost
                log.info("%s: offer to %s failed: %s", self.options.name, nb.peer_id, exc)
                self._lost(nb, "offer failed")
                return
            self._send_description(nb, pc, "offer")

    async def _signal(self, nb: Neighbour, data: Description | IceCandidate) -> None:
        """Signaling data the core passed on (an offer to answer, an answer, a candidate)."""
        pc = nb.pc
        async with nb.lock:
            if nb.closed or pc is None:
                return
            try:
                if isinstance(data, Description) and data.type == "offer":
                    await pc.setRemoteDescription(RTCSessionDescription(data.sdp, "offer"))
                    await self._flush_candidates(nb, pc)
                    await pc.setLocalDescription(await pc.createAnswer())
                    self._send_description(nb, pc, "answer")
                elif isinstance(data, Description):
                    if nb.outgoing and pc.signalingState == "have-local-offer":
                        await pc.setRemoteDescription(RTCSessionDescription(data.sdp, "answer"))
                        await self._flush_candidates(nb, pc)
                else:
                    nb.candidates.append(data)
                    if pc.remoteDescription is not None:
                        await self._flush_candidates(nb, pc)
            except Exception as exc:
                log.info("%s: signal from %s: %s", self.options.name, nb.peer_id, exc)
                self._lost(nb, "bad signal")

    async def _flush_candidates(self, nb: Neighbour, pc: RTCPeerConnection) -> None:
        pending, nb.candidates = nb.candidates, []
        for raw in pending:
            try:
                candidate = aiortc_candidate(raw)
            except ValueError:
                continue  # one aiortc cannot read
            await pc.addIceCandidate(candidate)  # None: the end of candidates

    def _on_open(self, nb: Neighbour) -> None:
        if nb.open or nb.closed or self.neighbours.get(nb.peer_id) is not nb:
            return
        nb.open = True
        self.report.links_opened += 1
        self._apply(self.core.channel_open(nb.peer_id, self.clock.real()))

    def _on_frame(self, nb: Neighbour, message: bytes | str) -> None:
        if self._frozen or nb.closed or self.neighbours.get(nb.peer_id) is not nb:
            if isinstance(message, bytes) and not self.vanished:
                self._late(nb, message)
            return
        # A text frame on the binary channel breaks the format as a bad frame does.
        frame = message if isinstance(message, bytes) else b""
        was_banned = nb.peer_id in self.core.banned
        effects = self.core.on_frame(nb.peer_id, frame, self.clock.real())
        if nb.peer_id in self.core.banned and not was_banned:
            self.report.protocol_errors += 1
            self.report.banned += 1
        self._apply(effects)

    def _late(self, nb: Neighbour, frame: bytes) -> None:
        """A frame from a neighbour already dropped (banned, or we left): never
        used, but a bad chunk is counted, so that a benchmark accounts for every one."""
        if nb.label != self.playing.label:
            return  # a neighbour of a track played before: its hashes are gone
        whole = nb.late.feed(frame)
        if whole is not None and not self.playing.matches(*whole):
            self.report.discarded += 1

    def _lost(self, nb: Neighbour, reason: str) -> None:
        """The connection failed or closed under us: the core hears of it."""
        if nb.closed:
            return
        if self.neighbours.get(nb.peer_id) is nb:
            del self.neighbours[nb.peer_id]
            if not self.vanished:
                self._apply(self.core.channel_closed(nb.peer_id, self.clock.real()))
        self._close(nb, reason)

    def _close(self, nb: Neighbour, reason: str, grace: float = 0.0) -> None:
        if nb.closed:
            return
        nb.closed = True
        log.debug("%s: closing %s: %s", self.options.name, nb.peer_id, reason)
        if nb.pc is not None:
            closer = asyncio.ensure_future(self._close_pc(nb.pc, grace))
            self._closers.add(closer)
            closer.add_done_callback(self._closers.discard)
        self._wake.set()

    @staticmethod
    async def _close_pc(pc: RTCPeerConnection, grace: float = 0.0) -> None:
        if grace > 0:
            await asyncio.sleep(grace)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(pc.close(), CLOSE_TIMEOUT)
