"""The headless peer's live track: a listener at the edge, as a state machine.

Theory of operation
-------------------
A live track has no end and no fixed timeline: its manifest is a sliding
window of chunks whose indices grow (with gaps after a reconnect) and whose
newest is the edge (docs/live.md). ``LiveTrack`` is what the headless peer
knows and does about one, fed events with ``now`` (the gateway's clock: UNIX
seconds, as the manifest's ``wall`` is; the shell passes ``time.time()``):

    manifest(m, now)          a (newer) manifest: the window, the edge, the
                              start chunk chosen once (``live.start_index``)
    heard(index, now)         a neighbour announced ``index`` (its HAVE): learnt now
    peer_holds(peer, have)    what a neighbour holds (the P2P core's PeerHave)
    peer_gone(peer)
    received(index, source, now, seconds)   a verified chunk (from the server: how long it took)
    failed(index, source, now)              a request that brought nothing
    next(now, self_id, neighbours) -> [Fetch]   what to ask, and whom
    expired(now) -> [Fetch]                     requests past their deadline (cancel them)
    advance(now) -> state                       the playhead, stalls, pace, latency
    evictable() -> [index]                      held chunks nobody needs any more

The fetch rules are the shared ones (``peer/live.py``): a chunk that a
neighbour holds is asked of it (at most ``request_slots`` at a time each),
with a deadline that leaves the server time to deliver; otherwise the
listener waits ``live.fetch_wait`` for a neighbour to get it, then takes it
from the server: 0 for the chunk's elected fetcher when its hash is low or
its neighbourhood small; a short wait, counted from when the chunk was due
(the previous chunk learnt of, plus its duration), for another elected
fetcher; ``peer_wait`` from the moment it learnt of the chunk (the manifest
or a neighbour's HAVE) for everyone else (``live_fetch_delay``). A listener
that fetches at once asks the server for the chunk after the edge before the
manifest lists it: the gateway holds that request until the chunk is cut
(the contract's edge wait), so the swarm hears of a new chunk from it first;
an elected fetcher that waits asks for it when its wait is over and no
neighbour has announced it. A chunk that falls out of the window before it
arrives is skipped; so is a gap in the indices.

Playback is real time (a live track cannot be played faster): the playhead is
a chunk and an offset into it, moved by ``rate`` (``live.pace_action``, decided
once a second, on the distance behind the end of the newest chunk known)
and stopped at the first chunk not held (a stall). A jump lands on
``live.start_index`` of the window with the target distance, once that chunk
is here (a jump into a stall would add a gap).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from . import live

__all__ = ["Fetch", "LiveSettings", "LiveState", "LiveTrack", "SERVER"]

SERVER = "server"
EPSILON = 1e-6


class LiveState(Enum):
    STARTING = "starting"
    PLAYING = "playing"
    STALLED = "stalled"


@dataclass(frozen=True, slots=True)
class LiveSettings:
    request_slots: int = 2  # requests one neighbour may have at once
    server_parallel: int = 3  # server requests at once
    keep_behind_seconds: float = 10.0  # chunks kept (and served) behind the playhead
    http_estimate: float = 0.2  # seconds a server fetch takes, until measured
    min_peer_window: float = 0.3  # a peer request gets at least this long
    max_peer_wait: float = 2.0  # and at most this long
    pace_interval: float = 1.0  # seconds between two pace decisions
    edge_poll: bool = True  # the elected fetcher asks for the chunk after the edge
    choke_backoff: float = 0.1  # seconds before asking a neighbour that choked a chunk again
    safety: float = 0.3  # seconds added to the server's delivery time when judging what is still in time


@dataclass(frozen=True, slots=True)
class Fetch:
    """Ask ``source`` (``SERVER`` or a peer id) for chunk ``index``; a peer request
    has a ``deadline`` (same clock as ``now``); ``ahead``: the chunk after the
    edge, not in the manifest yet (its hash is the server's ETag)."""

    index: int
    source: str
    deadline: float = math.inf
    ahead: bool = False


@dataclass(slots=True)
class _Entry:
    duration: float
    wall: float
    sha256: str


@dataclass(slots=True)
class LiveTrack:
    settings: LiveSettings = field(default_factory=LiveSettings)
    entries: dict[int, _Entry] = field(default_factory=dict)  # index -> entry: the manifests' windows seen
    window: list[int] = field(default_factory=list)  # the latest manifest's indices, oldest first
    edge: int | None = None
    behind: float = 3.0  # the manifest's start_behind_seconds
    peer_wait: float = 0.7  # the manifest's peer_wait_seconds
    chunk_seconds: float = 1.0
    state: LiveState = LiveState.STARTING
    current: int | None = None  # the chunk playing (or to start with)
    offset: float = 0.0  # seconds into it
    rate: float = 1.0
    held: set[int] = field(default_factory=set)
    source_of: dict[int, str] = field(default_factory=dict)  # held index -> SERVER or the peer it came from
    learnt: dict[int, float] = field(default_factory=dict)  # index -> when first heard of
    inflight: dict[int, Fetch] = field(default_factory=dict)
    failures: dict[int, set[str]] = field(default_factory=dict)  # index -> sources that failed it
    peers: dict[str, set[int]] = field(default_factory=dict)
    http_seconds: float = 0.0
    stalls: int = 0
    stalled_seconds: float = 0.0
    jumps: int = 0
    skipped: int = 0  # chunks gone from the window before they arrived
    started_at: float | None = None
    latency: float | None = None  # seconds from the upstream's bytes to the playhead, now
    ready: bool = False  # the init segment is in
    _last: float | None = None
    _paced_at: float = -math.inf
    _retry_at: dict[int, float] = field(default_factory=dict)
    _recover_until: float = -math.inf
    _busy_until: dict[tuple[int, str], float] = field(default_factory=dict)  # (index, peer) -> when to ask again

    def __post_init__(self) -> None:
        self.http_seconds = self.settings.http_estimate

    # ---- what is known ---------------------------------------------------------

    def manifest(self, m: Mapping[str, object], now: float) -> None:
        """A (newer) live manifest."""
        chunks = m.get("chunks")
        if not isinstance(chunks, list):
            raise ValueError("a live manifest lists its chunks")
        for key, attr in (("start_behind_seconds", "behind"), ("peer_wait_seconds", "peer_wait"),
                          ("chunk_seconds", "chunk_seconds")):
            value = m.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
                setattr(self, attr, float(value))
        window = []
        for c in chunks:
            index = int(c["index"])
            self.entries[index] = _Entry(float(c["duration"]), float(c.get("wall") or 0.0), str(c["sha256"]))
            self.learnt.setdefault(index, now)
            window.append(index)
        self.window = window
        edge = m.get("edge")
        self.edge = int(edge) if isinstance(edge, int) and not isinstance(edge, bool) else (window[-1] if window else None)
        if self.current is None and window:
            self.current = live.start_index([{"index": i, "duration": self.entries[i].duration} for i in window],
                                            self.behind)
        # What left the window without arriving is not coming any more.
        oldest = window[0] if window else None
        for index in [i for i in self.entries if oldest is not None and i < oldest and i not in self.held]:
            del self.entries[index]
            self.learnt.pop(index, None)
            if self.current is not None and index >= self.current:
                self.skipped += 1

    def hash_of(self, index: int) -> str | None:
        e = self.entries.get(index)
        return e.sha256 if e is not None else None

    def heard(self, index: int, now: float) -> None:
        """A neighbour announced ``index``: the listener knows it exists from now on."""
        self.learnt.setdefault(index, now)

    def peer_holds(self, peer: str, have: Iterable[int]) -> None:
        self.peers[peer] = set(have)

    def peer_gone(self, peer: str) -> None:
        self.peers.pop(peer, None)

    def wanted(self) -> list[int]:
        """The chunks of the window from the playhead on: what the P2P core may announce wanting."""
        if self.current is None:
            return []
        return [i for i in self.window if i >= self.current]

    # ---- requests --------------------------------------------------------------

    def received(self, index: int, source: str, now: float, seconds: float | None = None) -> None:
        """Chunk ``index`` arrived, verified (``seconds``: how long a server fetch took)."""
        self.inflight.pop(index, None)
        self.held.add(index)
        self.source_of[index] = source
        self.failures.pop(index, None)
        if source == SERVER and seconds is not None and seconds >= 0:
            # An edge request waits for the cut: only a plain fetch measures the server.
            self.http_seconds = 0.8 * self.http_seconds + 0.2 * min(seconds, 5.0)

    def failed(self, index: int, source: str, now: float) -> None:
        req = self.inflight.get(index)
        if req is not None and req.source == source:
            del self.inflight[index]
        self.failures.setdefault(index, set()).add(source)
        if source == SERVER:
            # the chunk after the edge did not come within the gateway's wait: a
            # reconnect (the next index jumps), so ask again a chunk later
            self._retry_at[index] = now + (self.chunk_seconds if req is not None and req.ahead else 0.25)

    def choked(self, index: int, peer: str, now: float) -> None:
        """``peer`` will not send ``index`` now (all its upload slots are busy: every
        neighbour wants the newest chunk at once): ask it again a moment later."""
        req = self.inflight.get(index)
        if req is not None and req.source == peer:
            del self.inflight[index]
        self._busy_until[(index, peer)] = now + self.settings.choke_backoff

    def expired(self, now: float) -> list[Fetch]:
        """Peer requests past their deadline: given up (the shell cancels them)."""
        out = [req for req in self.inflight.values() if req.source != SERVER and now >= req.deadline]
        for req in out:
            del self.inflight[req.index]
            self.failures.setdefault(req.index, set()).add(req.source)
        return out

    def next(self, now: float, self_id: str, neighbours: Iterable[str]) -> list[Fetch]:
        """The requests to make now (see the module docstring)."""
        if self.current is None:
            return []
        nbrs = sorted(neighbours)
        out: list[Fetch] = []
        servers = sum(1 for r in self.inflight.values() if r.source == SERVER)
        busy: dict[str, int] = {}
        for r in self.inflight.values():
            if r.source != SERVER:
                busy[r.source] = busy.get(r.source, 0) + 1
        for index in self.wanted():
            if index in self.held or index in self.inflight:
                continue
            until = self.until_needed(index)
            failed = self.failures.get(index, set())
            holders = [p for p in nbrs if index in self.peers.get(p, ()) and p not in failed
                       and busy.get(p, 0) < self.settings.request_slots
                       and now >= self._busy_until.get((index, p), -math.inf)]
            # what the server needs to deliver in time, with a margin for a busy loop
            server_time = self.http_seconds + self.settings.safety
            if holders and until - server_time > self.settings.min_peer_window:
                # the least busy holder, then by id: deterministic
                peer = min(holders, key=lambda p: (busy.get(p, 0), p))
                window = min(self.settings.max_peer_wait, until - server_time)
                req = Fetch(index, peer, now + max(self.settings.min_peer_window, window))
                busy[peer] = busy.get(peer, 0) + 1
            else:
                wait = live.fetch_wait(self_id, nbrs, index, self.peer_wait)
                learnt = self.learnt.get(index, now)
                if 0 < wait < self.peer_wait:  # an elected fetcher that waits: from when the chunk was due
                    learnt = min(learnt, self.due_at(index))
                delay = live.live_fetch_delay(elected=wait == 0 or SERVER in failed, peer_wait=wait,
                                              waited=now - learnt, until_needed=until,
                                              http_seconds=server_time)
                if delay > 0 or servers >= self.settings.server_parallel or now < self._retry_at.get(index, -math.inf):
                    continue
                req = Fetch(index, SERVER)
                servers += 1
            self.inflight[index] = req
            out.append(req)
        ahead = self.edge + 1 if self.edge is not None else None
        if (self.settings.edge_poll and ahead is not None and self.state is not LiveState.STARTING
                and ahead not in self.inflight and ahead not in self.held and servers < self.settings.server_parallel
                and now >= self._retry_at.get(ahead, -math.inf)
                and self._ahead_mine(ahead, now, self_id, nbrs)):
            req = Fetch(ahead, SERVER, ahead=True)
            self.inflight[ahead] = req
            out.append(req)
        return out

    def due_at(self, index: int) -> float:
        """When chunk ``index`` is due: the previous chunk was learnt of plus its duration (inf: not known)."""
        prev = self.learnt.get(index - 1)
        entry = self.entries.get(index - 1)
        return math.inf if prev is None or entry is None else prev + entry.duration

    def _ahead_mine(self, ahead: int, now: float, self_id: str, nbrs: list[str]) -> bool:
        """Whether to ask the server for the chunk after the edge now: at once when
        ``fetch_wait`` says 0; an elected fetcher that waits once its wait from when
        the chunk is due is over and no neighbour announced it."""
        wait = live.fetch_wait(self_id, nbrs, ahead, self.peer_wait)
        if wait == 0:
            return True
        if wait >= self.peer_wait:
            return False
        return now >= self.due_at(ahead) + wait and not any(ahead in self.peers.get(p, ()) for p in nbrs)

    def until_needed(self, index: int) -> float:
        """Seconds until the playhead reaches chunk ``index`` (0 for the one playing)."""
        if self.current is None or index <= self.current:
            return 0.0
        ahead = self._duration(self.current) - self.offset
        for i in self.window:
            if self.current < i < index:
                ahead += self._duration(i)
        return max(0.0, ahead) / max(self.rate, EPSILON)

    # ---- playback --------------------------------------------------------------

    def playing_from(self) -> str | None:
        """Where the chunk playing came from: ``SERVER``, a peer id, or None."""
        return self.source_of.get(self.current) if self.current is not None else None

    def distance(self) -> float:
        """Seconds of audio from the playhead to the end of the newest chunk known."""
        if self.current is None:
            return 0.0
        d = self._duration(self.current) - self.offset
        return d + sum(self._duration(i) for i in self.window if i > self.current)

    def buffered_ahead(self) -> float:
        """Seconds held contiguously from the playhead."""
        if self.current is None or self.current not in self.held:
            return 0.0
        d = self._duration(self.current) - self.offset
        for i in self._after(self.current):
            if i not in self.held:
                break
            d += self._duration(i)
        return d

    def advance(self, now: float) -> LiveState:
        """Move the playhead to ``now``."""
        last = now if self._last is None else self._last
        self._last = now
        dt = max(0.0, now - last)
        if self.current is None:
            return self.state
        if self.state is LiveState.STARTING:
            if self.window and self.current < self.window[0] and self.current not in self.held:
                self.current = self.window[0]  # our start left the window before it came
            if self.ready and self.current in self.held:
                self.state = LiveState.PLAYING
                self.started_at = now
            self._measure(now)
            return self.state
        if self.state is LiveState.STALLED:
            self.stalled_seconds += dt
            if self._step(0.0) is None:
                self.state = LiveState.PLAYING
                # back from a stall: a burst from the upstream may have put us far behind
                self._recover_until = now + live.RECOVER_SECONDS
                self._paced_at = -math.inf
        else:
            left = self._step(dt * self.rate)
            if left is not None:
                self.state = LiveState.STALLED
                self.stalls += 1
                self.stalled_seconds += left / max(self.rate, EPSILON)
        # The time since the last call was played at the old rate; decide for what follows.
        if self.state is LiveState.PLAYING and now - self._paced_at >= self.settings.pace_interval:
            self._paced_at = now
            self._pace(now < self._recover_until)
        self._measure(now)
        return self.state

    def _step(self, move: float) -> float | None:
        """Play ``move`` seconds of audio: None when the playhead can go on, else
        what could not be played (the playhead is at a chunk not here, or at the
        end of one whose successor is not here)."""
        while True:
            if self.current not in self.held:
                return move
            room = self._duration(self.current) - self.offset
            if room > EPSILON and move < room:
                self.offset += move
                return None
            move = max(0.0, move - max(0.0, room))
            self.offset = self._duration(self.current)
            nxt = self._next_after(self.current)
            if nxt is None or nxt not in self.held:
                return move
            self.current, self.offset = nxt, 0.0

    def _pace(self, recovering: bool) -> None:
        assert self.current is not None
        action = live.pace_action(self.distance(), self.behind, recovering)
        if isinstance(action, live.Jump):
            target = live.start_index([{"index": i, "duration": self._duration(i)} for i in self.window], action.to)
            if target is not None and target > self.current and target in self.held:
                self.current, self.offset = target, 0.0
                self.jumps += 1
                self.rate = 1.0
            else:
                # not there yet (it is fetched like any chunk ahead): no jump into a stall;
                # meanwhile catch up, and decide again soon
                self.rate = live.RATE_FAST
                self._paced_at = -math.inf if target is not None and target in self.inflight else self._paced_at
        else:
            self.rate = action.rate

    def evictable(self) -> list[int]:
        """Held chunks more than ``keep_behind_seconds`` behind the playhead, or gone from the window."""
        if self.current is None:
            return []
        keep: set[int] = set()
        behind = 0.0
        for i in reversed([i for i in self.window if i < self.current]):
            behind += self._duration(i)
            if behind > self.settings.keep_behind_seconds:
                break
            keep.add(i)
        return sorted(i for i in self.held if i < self.current and i not in keep)

    def drop(self, index: int) -> None:
        self.held.discard(index)
        for key in [k for k in self._busy_until if k[0] <= index]:
            del self._busy_until[key]
        self.source_of.pop(index, None)
        if self.window and index < self.window[0]:
            self.entries.pop(index, None)
            self.learnt.pop(index, None)

    # ---- internals --------------------------------------------------------------

    def _duration(self, index: int) -> float:
        e = self.entries.get(index)
        return e.duration if e is not None else self.chunk_seconds

    def _after(self, index: int) -> list[int]:
        return [i for i in self.window if i > index]

    def _next_after(self, index: int) -> int | None:
        after = self._after(index)
        return after[0] if after else None

    def _measure(self, now: float) -> None:
        e = self.entries.get(self.current) if self.current is not None else None
        if self.state is LiveState.STARTING or e is None or e.wall <= 0:
            return
        self.latency = live.live_latency(now, e.wall, self.offset)
