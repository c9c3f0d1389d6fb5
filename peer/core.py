"""The P2P rules of a peer: the Python twin of ``P2PCore`` in ``client/p2p.js``.

Theory of operation
-------------------
``P2PCore`` is fed events (a control-socket message, a DataChannel frame, a
channel that opened or closed, a chunk the player obtained, a request the
scheduler made, the passing of time) and answers each with a list of
*effects*, frozen dataclasses that the I/O shell (``peer/node.py``) carries
out. Each effect's ``kind`` is the ``kind`` of the browser's effect object:

    Control(msg)                  "control"   send a message (``protocol.messages``) on the control socket
    Open(peer, role)              "open"      create an RTCPeerConnection; role "offerer"
                                              (we dial: DataChannel and SDP offer) or
                                              "answerer" (we were dialled)
    Rtc(peer, data)               "rtc"       apply signaling data (a ``Description`` or an ``IceCandidate``)
    Close(peer)                   "close"     close that connection
    Send(peer, frame)             "send"      send one wire frame (bytes) on its channel
    Serve(peer, index)            "serve"     read chunk ``index`` and call
                                              ``served(peer, index, data | None, now)``
    Deliver(peer, index, data)    "deliver"   a requested chunk arrived whole (not verified)
    Reject(peer, index, reason)   "reject"    a requested chunk will not come from that peer
    PeerHave(peer, have)          "peerHave"  tell the scheduler what a neighbour holds
    PeerGone(peer)                "peerGone"  tell the scheduler a neighbour is gone

The control socket's messages are the typed values of ``protocol.messages``
both ways: ``on_control`` takes what ``protocol.codec.parse_server`` read,
and ``Control`` carries what the shell writes with ``protocol.codec.encode``.

Time is always an argument (``now``, seconds of one monotonic clock: real
seconds, as network delays are), so the rules are exact and testable without
a socket. There is no I/O and no clock here.

The rules are those of ``client/p2p.js`` (its header lists them: tracker
announcements and ``want`` with back-off, the neighbour caps (dial up to
``want_neighbours``, accept offers up to ``max_neighbours``), glare, connect
timeout and cool-down, wire HAVE/REQUEST/PIECE/CANCEL/CHOKE, upload slots,
verify failures and bans, the peer wait, stats, and the neighbour overlay:
lookup rounds of LOOKUP/HOLDERS among neighbours and ``introduce`` requests
before ``want``, a round that found the overlay exhausted (every neighbour
asked and every introduction answered, nobody new) backing the want off
instead of sending it until the interval is at ``max_want_interval``, a
session's start waiting for its introductions before it wants, departure
notices, the directory, nonsense counted like a bad chunk; see docs/wire.md
"Overlay"). The two are pinned to each
other by ``tests/vectors/p2p/``: sequences of events with ``now`` and the
effects both must return, run by ``tests/unit/peer/test_core.py`` and
``tests/js/p2p-vectors.test.mjs``; the default settings are
``tests/vectors/p2p/constants.json``, which both suites compare with their
own defaults. Names are the browser's in snake case (``onControl`` ->
``on_control``, ``maxNeighbours`` -> ``max_neighbours``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import ClassVar, Literal, TypeGuard

from protocol.codec import parse_signal_data, signal_data
from protocol.limits import MAX_LIVE_LATENCY_SECONDS as MAX_LIVE_LATENCY
from protocol.limits import MAX_SOURCES
from protocol.messages import (
    Description,
    Error,
    IceCandidate,
    Introduce,
    Leave,
    PeerMessage,
    Peers,
    Ping,
    Refusal,
    ServerMessage,
    Signal,
    SignalData,
    SignalFrom,
    Slots,
    Stats,
    Turn,
    TurnServers,
    Want,
    Welcome,
)
from protocol.messages import (
    Have as TrackerHave,
)
from protocol.values import ChunkSet, Json
from protocol.wire import (
    MAX_RANGES,
    Cancel,
    Choke,
    Have,
    Holders,
    Lookup,
    Piece,
    Reassembler,
    Request,
    Unknown,
    WireError,
    decode,
    encode,
    split_chunk,
)

from .upload import UploadBudget, stricter_cap

__all__ = [
    "P2PSettings",
    "DEFAULT_P2P_SETTINGS",
    "MAX_REPORT",
    "P2PCore",
    "Effect",
    "Control",
    "Open",
    "Rtc",
    "Close",
    "Send",
    "Serve",
    "Deliver",
    "Reject",
    "PeerHave",
    "PeerGone",
    "expand_ranges",
    "to_ranges",
    "corrupt_copy",
    "camel",
]

MAX_REPORT = 1 << 30  # the server refuses larger counts in one report

Role = Literal["offerer", "answerer"]


@dataclass(frozen=True, slots=True)
class P2PSettings:
    """The browser's ``DEFAULT_P2P_SETTINGS``, in snake case (seconds, counts)."""

    want_neighbours: int = 5  # we dial (and want) while we have fewer neighbours than this
    max_neighbours: int = 16  # connections to other peers at most, both directions: offers beyond are refused
    upload_slots: int = 4  # neighbours served at once; the welcome's limits.upload_slots wins
    request_slots: int = 2  # concurrent requests the scheduler may send one neighbour
    max_queued: int = 16  # requests of one neighbour queued here; more are choked
    connect_timeout: float = 5  # seconds for a connection to open and bring the neighbour's HAVE
    start_wait: float = 2  # seconds a new session waits for the tracker's first answer
    want_grace: float = 1.5  # seconds the scheduler waits for an outstanding `want`
    want_timeout: float = 10  # an unanswered `want` is given up after this
    want_interval: float = 1.5  # seconds between wants while neighbours are missing (doubling while nobody new comes)
    max_want_interval: float = 30
    retry_cooldown: float = 30  # seconds before a peer that failed to connect is dialled again
    stats_interval: float = 5  # the welcome's limits.stats_interval wins
    urgent_stats_gap: float = 1  # earliest report after a verify failure or a start-up time
    slots_gap: float = 1  # seconds between `slots` reports
    keepalive: float = 60  # ping when nothing else was sent for this long
    max_want: int = 256  # the tracker's limits.max_want
    max_tracker_ranges: int = 256  # the tracker's limits.max_ranges
    max_wire_ranges: int = MAX_RANGES  # protocol.MAX_RANGES
    live_slack: int = 64  # chunk indices past the manifest a neighbour may announce
    lookup_wait: float = 0.5  # seconds a lookup round waits for neighbours and introductions before `want`
    lookup_gap: float = 1  # seconds between two LOOKUPs of one neighbour that are answered; more are ignored
    lookup_interval: float = 5  # seconds before the same neighbour is asked again
    max_holders: int = 8  # ids in one HOLDERS answer; an answer with more is a flood
    directory_ttl: float = 30  # seconds an id learnt from the overlay stays a candidate
    max_directory: int = 64  # candidates remembered per track (the oldest is forgotten)
    max_bad_holders: int = 8  # suggestions of one neighbour refused as not holders, beyond those introduced, before it counts as a bad chunk
    overlay: bool = True  # ask neighbours before the tracker (False: the tracker only)
    upload: bool = True  # announce and serve what is held (False: download only; set_upload changes it)
    upload_kbps: float = 0  # upload cap in kbit/s (0: none); the welcome's limits.upload_kbps applies where stricter
    upload_burst: float = 2  # seconds of the cap a burst may take
    corrupt: bool = False  # TEST ONLY: flip a byte in every chunk served (a bad seeder)

    @classmethod
    def from_js(cls, settings: Mapping[str, object]) -> P2PSettings:
        """Settings named as in ``client/p2p.js`` (camelCase); unknown names raise ``TypeError``."""
        names = {camel(f.name): f.name for f in fields(cls)}
        unknown = [k for k in settings if k not in names]
        if unknown:
            raise TypeError(f"unknown p2p setting: {unknown[0]}")
        chosen = replace(DEFAULT_P2P_SETTINGS)
        for k, v in settings.items():
            # a frozen dataclass's own way to set a field (its __init__ does the same);
            # the values are the browser's, one JSON scalar per setting
            object.__setattr__(chosen, names[k], v)
        return chosen

    def as_js(self) -> dict[str, object]:
        return {camel(f.name): getattr(self, f.name) for f in fields(self)}


DEFAULT_P2P_SETTINGS = P2PSettings()


def camel(name: str) -> str:
    """``max_neighbours`` -> ``maxNeighbours``."""
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


# ---- effects ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Control:
    kind: ClassVar[str] = "control"
    msg: PeerMessage


@dataclass(frozen=True, slots=True)
class Open:
    kind: ClassVar[str] = "open"
    peer: str
    role: Role


@dataclass(frozen=True, slots=True)
class Rtc:
    kind: ClassVar[str] = "rtc"
    peer: str
    data: Description | IceCandidate


@dataclass(frozen=True, slots=True)
class Close:
    kind: ClassVar[str] = "close"
    peer: str


@dataclass(frozen=True, slots=True)
class Send:
    kind: ClassVar[str] = "send"
    peer: str
    frame: bytes


@dataclass(frozen=True, slots=True)
class Serve:
    kind: ClassVar[str] = "serve"
    peer: str
    index: int


@dataclass(frozen=True, slots=True)
class Deliver:
    kind: ClassVar[str] = "deliver"
    peer: str
    index: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Reject:
    kind: ClassVar[str] = "reject"
    peer: str
    index: int
    reason: str


@dataclass(frozen=True, slots=True)
class PeerHave:
    kind: ClassVar[str] = "peerHave"
    peer: str
    have: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class PeerGone:
    kind: ClassVar[str] = "peerGone"
    peer: str


Effect = Control | Open | Rtc | Close | Send | Serve | Deliver | Reject | PeerHave | PeerGone


# ---- pure helpers ----------------------------------------------------------------------


def to_ranges(indices: Iterable[int]) -> list[tuple[int, int]]:
    """Indices as sorted inclusive runs (``protocol.js`` ``toRanges``)."""
    runs: list[tuple[int, int]] = []
    for i in sorted(set(indices)):
        if runs and i == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs


def _live_latency(value: object) -> float | None:
    """A live track's latency now (``totals["liveLatency"]``) as a report says it:
    to the millisecond, within what the gateway accepts (a larger value would have
    the whole report refused); None when not live."""
    if not _finite(value) or value < 0:
        return None
    return min(round(value * 1000) / 1000, MAX_LIVE_LATENCY)


def expand_ranges(ranges: Iterable[Sequence[int]], limit: int, floor: int = 0) -> list[int]:
    """Every index of inclusive ranges, bounded to [floor, limit), ascending and once
    each: overlapping ranges (a hostile HAVE) cost no more than ``limit - floor``
    (a live window's indices are large, its span small)."""
    out: list[int] = []
    nxt = floor  # first index not yet listed
    for first, last in sorted((r for r in ranges if r[0] < limit), key=lambda r: r[0]):
        end = min(last, limit - 1)
        out.extend(range(max(first, nxt), end + 1))
        nxt = max(nxt, end + 1)
    return out


def corrupt_copy(data: bytes) -> bytes:
    """TEST ONLY: ``data`` with its middle byte toggled (what a corrupting seeder sends)."""
    middle = len(data) >> 1
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]


def _int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# ---- state ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _Session:
    track: str
    rendition: str
    chunks: set[int]
    max_index: int
    complete: bool
    held: dict[int, None]  # insertion-ordered set
    min_index: int = 0  # the manifest's oldest chunk: a live window's floor
    added: dict[int, None] = field(default_factory=dict)  # held since the last tracker announcement
    full_have: bool = True  # announce the whole holding (replace) next
    wire_dirty: bool = False  # neighbours need a new HAVE
    announced_complete: bool = False
    started_at: float = 0.0
    answered: bool = False  # the tracker answered a want of this session
    known_at: float = -math.inf  # when a lookup round last found the overlay exhausted (every answer in, nobody new)
    shown: bool = False  # a holding was announced to the tracker on this socket (withdrawn when sharing stops)


@dataclass(slots=True)
class _Want:
    outstanding: bool = False
    sent_at: float = -math.inf
    next_at: float = -math.inf
    interval: float = 4.0


@dataclass(slots=True)
class _Neighbour:
    id: str
    role: Role
    since: float
    state: Literal["connecting", "open"] = "connecting"
    opened_at: float | None = None
    ranges: list[tuple[int, int]] | None = None  # its last HAVE
    pending: dict[int, None] = field(default_factory=dict)  # chunks we asked of it
    cancelled: set[int] = field(default_factory=set)  # chunks given up whose pieces may still come
    reassembler: Reassembler = field(default_factory=Reassembler)
    uploads: list[int] = field(default_factory=list)  # chunks it asked of us, queued
    serving: int | None = None  # the chunk being read for it
    serving_cancelled: bool = False
    lookups: dict[tuple[str, str], float] = field(default_factory=dict)  # our LOOKUPs it has not answered: when asked
    asked_at: float = -math.inf  # when we last asked it
    answered_at: float = -math.inf  # when we last answered a LOOKUP of its
    noticed: bool = False  # it told us where it goes
    bad_holders: int = 0  # its suggestions the server refused as not holders
    good_holders: int = 0  # its suggestions the server introduced


@dataclass(slots=True)
class _Round:
    active: bool = False
    until: float = -math.inf
    found: int = 0
    asked: set[str] = field(default_factory=set)
    answered: int = 0  # neighbours asked in this round that answered


@dataclass(slots=True)
class _Known:
    until: float
    source: str | None  # the neighbour that told us, or None: the tracker


_MAX_DIRECTORY_TRACKS = 16


_COUNTS = ("down", "up", "http", "stalls", "failures", "live")


@dataclass(frozen=True, slots=True)
class _Report:
    """The last ``stats`` sent: what it counted (by ``_COUNTS``), and the start-up time."""

    counts: dict[str, int]
    startup: float | None


def _max_of(values: Iterable[int]) -> int:
    return max(values, default=-1)


class P2PCore:
    """The pure P2P state machine of one peer (see the module docstring)."""

    def __init__(self, settings: P2PSettings = DEFAULT_P2P_SETTINGS) -> None:
        self.settings = settings
        self.peer_id: str | None = None
        self.ice_servers: tuple[dict[str, Json], ...] = ()
        self.upload_slots = settings.upload_slots
        self.stats_interval = settings.stats_interval
        self.uploading = settings.upload  # announce and serve (set_upload)
        self.budget = UploadBudget(settings.upload_kbps, settings.upload_burst)
        self.connected = False  # welcomed on the current control socket
        self.session: _Session | None = None
        self.neighbours: dict[str, _Neighbour] = {}
        self.banned: dict[str, None] = {}
        self.cooldown: dict[str, float] = {}  # peer id -> time before which it is not dialled
        self.want = _Want(interval=settings.want_interval)
        # (track, rendition) -> peer id -> what we know, oldest first
        self.directory: dict[tuple[str, str], dict[str, _Known]] = {}
        self.introducing: dict[str, tuple[str | None, float]] = {}  # `introduce` asked: id -> (source, at)
        self.round = _Round()
        self.last_sent_at = -math.inf
        self._slots_reported = 0
        self._slots_at = -math.inf
        # cumulative counters of this side; the player's are passed to tick()
        self.up_bytes = 0
        self.verify_failures = 0
        # Verified bytes per neighbour since the last report (stats ``sources``):
        # the tracker's evidence of who delivers.
        self.sources: dict[str, int] = {}
        # TURN on request (docs/p2p.md), as the browser's: the welcome's servers
        # plus the TURN entries asked for, renewed halfway through their life.
        self.welcome_ice: tuple[dict[str, Json], ...] = ()
        self.needs_relay = False  # ask at welcome (a relay-only peer)
        self.turn_servers: tuple[dict[str, Json], ...] = ()
        self._turn_renew_at = math.inf
        self._turn_asking = False
        self._turn_unavailable = False
        self._turn_retry_at = -math.inf
        self.reported = dict.fromkeys(_COUNTS, 0)
        self.last_report: _Report | None = None
        self.pending_startup: float | None = None
        self.urgent_stats = False
        self._stats_at = -math.inf

    # ---- control socket ------------------------------------------------------

    def control_closed(self) -> list[Effect]:
        """The control socket closed: a new one brings a new welcome and peer id."""
        self.connected = False
        self.want.outstanding = False
        self._turn_asking = False
        return []

    def need_relay(self, now: float) -> list[Effect]:
        """A direct connection failed (or only relays are allowed): ask for TURN
        credentials unless held, asked or refused (``client/p2p.js`` ``needRelay``)."""
        out: list[Effect] = []
        if (not self.connected or self._turn_asking or self._turn_unavailable or self.turn_servers
                or now < self._turn_retry_at):
            return out
        self._turn_asking = True
        self._send_control(out, Turn(), now)
        return out

    def on_control(self, msg: ServerMessage, now: float) -> list[Effect]:
        """One message from the control socket (``protocol.codec.parse_server``'s)."""
        out: list[Effect] = []
        if isinstance(msg, Welcome):
            self.peer_id = msg.peer_id
            self.welcome_ice = msg.ice_servers
            self._turn_asking = False
            if self.needs_relay or self.turn_servers:
                # Credentials name the peer id: a new socket asks afresh, before any dial.
                self.turn_servers = ()
                self.connected = True
                out.extend(self.need_relay(now))
            self.ice_servers = self.welcome_ice + self.turn_servers
            slots = msg.limits.upload_slots
            if slots is not None and slots > 0:
                self.upload_slots = slots
            interval = msg.limits.stats_interval
            if interval is not None and interval > 0:
                self.stats_interval = interval
            if msg.limits.upload_kbps is not None:
                self.budget.set_cap(stricter_cap(self.settings.upload_kbps, msg.limits.upload_kbps))
            self.connected = True
            self._slots_reported = 0  # a new connection starts at 0 in use
            self.last_sent_at = now
            if self.session is not None:
                self.session.full_have = True
                self.session.shown = False  # a new socket: the tracker knows nothing of us
                self.want.outstanding = False
                self.want.next_at = now
                self.want.interval = self.settings.want_interval
                self.session.known_at = -math.inf  # a new connection asks the tracker afresh
                self._end_round()
                self.introducing.clear()
                self._flush_tracker(out, now)
                self._maybe_want(out, now)
        elif isinstance(msg, TurnServers):
            first = not self.turn_servers
            self._turn_asking = False
            self.turn_servers = msg.ice_servers
            self._turn_renew_at = now + msg.ttl_seconds / 2
            self.ice_servers = self.welcome_ice + self.turn_servers
            if first:
                # A relay makes every dial that failed worth one more try, now
                # (client/p2p.js: the same rule).
                self.cooldown.clear()
                self.want.next_at = now
                self._maybe_want(out, now)
        elif isinstance(msg, Peers):
            if msg.for_type == "introduce":
                self._on_introduced(msg, now, out)
            else:
                self._on_peers(msg, now, out)
        elif isinstance(msg, SignalFrom):
            data = parse_signal_data(msg.data_json)
            if data is not None:
                self._on_signal(msg.sender, data, now, out)
        elif isinstance(msg, Error):
            if msg.for_type == "stats" and self.last_report is not None:
                # refused whole (rate limited): those counts go out with the next report
                r = self.last_report
                for k in _COUNTS:
                    self.reported[k] -= r.counts[k]
                if r.startup is not None and self.pending_startup is None:
                    self.pending_startup = r.startup
                self.last_report = None
            elif msg.for_type == "want":
                self.want.outstanding = False
            elif msg.for_type == "turn":
                self._turn_asking = False
                if msg.code == "no_turn":
                    self._turn_unavailable = True
                else:
                    self._turn_retry_at = now + self.settings.max_want_interval
        return out

    # ---- session (one track's rendition) -------------------------------------

    def start_session(
        self,
        track: str,
        rendition: str,
        chunks: Iterable[int],
        now: float,
        *,
        complete: bool = False,
        held: Iterable[int] = (),
    ) -> list[Effect]:
        """The player opened a track (``chunks``: the manifest's indices, ``held``:
        those we can serve). Ends the previous session."""
        out: list[Effect] = []
        old = self.session
        if (old is not None and self.uploading and self.settings.overlay and self.peer_id is not None
                and (old.track, old.rendition) != (track, rendition)):
            # where we go, told to the neighbours we leave: they can introduce us to whoever asks
            frame = encode(Holders(track, rendition, (self.peer_id,)))
            out.extend(Send(nb.id, frame) for nb in self.neighbours.values() if nb.state == "open")
        out.extend(self.stop_session(now))
        chunk_set = set(chunks)
        self.session = _Session(
            track=track,
            rendition=rendition,
            chunks=chunk_set,
            max_index=_max_of(chunk_set),
            min_index=min(chunk_set, default=0),
            complete=bool(complete),
            held=dict.fromkeys(held),
            started_at=now,
        )
        self.want = _Want(next_at=now, interval=self.settings.want_interval)
        if self.connected:
            self._flush_tracker(out, now)
            self._maybe_want(out, now)
        return out

    def update_manifest(self, chunks: Iterable[int], now: float, *, complete: bool = False) -> list[Effect]:
        """A newer manifest of the same rendition (a live transcode grew or ended)."""
        out: list[Effect] = []
        s = self.session
        if s is None:
            return out
        chunk_set = set(chunks)
        top = _max_of(chunk_set)
        grew = top > s.max_index
        s.chunks = chunk_set
        s.max_index = max(s.max_index, top)
        s.min_index = min(chunk_set, default=0)
        s.complete = bool(complete)
        if grew:
            # neighbours' announcements are clamped to what the manifest lists: re-read them
            for nb in self.neighbours.values():
                if nb.ranges is not None:
                    out.append(self._peer_have_effect(nb))
        if self.holds_all():
            self._flush_tracker(out, now)
        return out

    def stop_session(self, now: float) -> list[Effect]:
        """The player leaves this track: tell the tracker, close every neighbour."""
        out: list[Effect] = []
        s = self.session
        if s is None:
            return out
        for peer in list(self.neighbours):
            self._close_neighbour(peer, out, now, cool=False)
        if self.connected:
            self._send_control(out, Leave(s.track, s.rendition), now)
        self.session = None
        self._end_round()
        self.introducing.clear()
        return out

    def lookup(self, track: str, rendition: str, now: float) -> list[Effect]:
        """Ask the open neighbours about another track (the next of a playlist),
        ahead of time: their answers fill the directory that the lookup round of
        that track's session starts from."""
        out: list[Effect] = []
        if self.settings.overlay:
            for nb in list(self.neighbours.values()):
                self._ask(nb, track, rendition, out, now)
        return out

    def set_upload(self, on: bool, now: float) -> list[Effect]:
        """The peer shares (True) or not (False) from now on (``peer/upload.py``
        decides). Stopping withdraws the tracker announcement, sends the open
        neighbours an empty HAVE and chokes their queued requests (a chunk being
        read still goes); starting announces the whole holding again."""
        out: list[Effect] = []
        if on == self.uploading:
            return out
        self.uploading = on
        if not on:
            for nb in self.neighbours.values():
                out.extend(Send(nb.id, encode(Choke(index))) for index in nb.uploads)
                nb.uploads = []
        s = self.session
        if s is None:
            return out
        s.full_have = True
        s.wire_dirty = False
        frame = self._have_frame()
        out.extend(Send(nb.id, frame) for nb in self.neighbours.values() if nb.state == "open")
        self._flush_tracker(out, now)
        return out

    def delivered_by(self, peer: str, nbytes: int) -> None:
        """``nbytes`` from ``peer`` passed their SHA-256 check: named in the next report's ``sources``."""
        if nbytes > 0:
            self.sources[peer] = self.sources.get(peer, 0) + nbytes

    def chunk_added(self, index: int, now: float) -> list[Effect]:
        """We now hold chunk ``index`` (from the server, the cache or a verified peer)."""
        s = self.session
        if s is None or not _int(index) or index < 0 or index in s.held:
            return []
        s.held[index] = None
        s.added[index] = None
        s.wire_dirty = True
        return []

    def chunk_dropped(self, index: int) -> list[Effect]:
        """We can no longer serve chunk ``index`` (evicted, missing from the cache)."""
        s = self.session
        if s is None or index not in s.held:
            return []
        del s.held[index]
        s.added.pop(index, None)
        s.full_have = True
        s.wire_dirty = True
        s.announced_complete = False
        return []

    def holds_all(self) -> bool:
        s = self.session
        return s is not None and s.complete and all(i in s.held for i in s.chunks)

    def missing(self) -> list[int]:
        """Chunks of the manifest not held, ascending."""
        s = self.session
        return [] if s is None else sorted(i for i in s.chunks if i not in s.held)

    # ---- requests (the scheduler) ---------------------------------------------

    def request(self, peer: str, index: int, now: float) -> list[Effect] | None:
        """Ask neighbour ``peer`` for chunk ``index``: the effects, or None when that
        cannot be done now (not an open neighbour, already asked, or just
        cancelled with pieces possibly still on their way)."""
        nb = self.neighbours.get(peer)
        if nb is None or nb.state != "open" or index in nb.pending or index in nb.cancelled:
            return None
        nb.pending[index] = None
        nb.reassembler.expect(index)
        return [Send(peer, encode(Request(index)))]

    def cancel(self, peer: str, index: int) -> list[Effect]:
        """The scheduler gave up chunk ``index`` from ``peer`` (deadline, seek, emergency)."""
        nb = self.neighbours.get(peer)
        if nb is None or index not in nb.pending:
            return []
        del nb.pending[index]
        nb.reassembler.forget(index)
        nb.cancelled.add(index)
        return [Send(peer, encode(Cancel(index)))]

    def verify_failed(self, peer: str, now: float) -> list[Effect]:
        """A chunk from ``peer`` failed its SHA-256 check: drop and ban that peer, count it."""
        out: list[Effect] = []
        self.verify_failures += 1
        self.urgent_stats = True
        self.banned[peer] = None
        if peer in self.neighbours:
            self._close_neighbour(peer, out, now, cool=False)
        return out

    def note_startup(self, seconds: float) -> list[Effect]:
        """The start-up time of this load is known: report it once."""
        if _finite(seconds) and seconds >= 0:
            self.pending_startup = seconds
            self.urgent_stats = True
        return []

    # ---- neighbours (the transport's events) ---------------------------------

    def channel_open(self, peer: str, now: float) -> list[Effect]:
        """The DataChannel to ``peer`` is open: greet it with our holding."""
        nb = self.neighbours.get(peer)
        if nb is None or nb.state != "connecting":
            return []
        nb.state = "open"
        nb.opened_at = now
        return [Send(peer, self._have_frame())]

    def channel_closed(self, peer: str, now: float) -> list[Effect]:
        """The connection to ``peer`` closed or failed."""
        out: list[Effect] = []
        nb = self.neighbours.get(peer)
        if nb is not None:
            self._close_neighbour(peer, out, now, cool=nb.state != "open")
        return out

    def on_frame(self, peer: str, frame: bytes, now: float) -> list[Effect]:
        """One binary frame from ``peer``'s DataChannel."""
        out: list[Effect] = []
        nb = self.neighbours.get(peer)
        if nb is None or nb.state != "open":
            return out
        try:
            msg = decode(frame)
        except WireError:
            return self._misbehaved(peer, now)
        if isinstance(msg, Have):
            nb.ranges = list(msg.ranges)
            out.append(self._peer_have_effect(nb))
        elif isinstance(msg, Request):
            self._on_request(nb, msg.index, out, now)
        elif isinstance(msg, Piece):
            if msg.index in nb.cancelled:
                if msg.offset + len(msg.data) >= msg.total:
                    nb.cancelled.discard(msg.index)
                return out  # the tail of a transfer we cancelled
            if msg.index not in nb.pending:
                return self._misbehaved(peer, now)
            try:
                chunk = nb.reassembler.feed(msg)
            except WireError:
                return self._misbehaved(peer, now)
            if chunk is not None:
                del nb.pending[msg.index]
                out.append(Deliver(peer, msg.index, chunk))
        elif isinstance(msg, Cancel):
            if msg.index in nb.uploads:
                nb.uploads.remove(msg.index)
            if nb.serving == msg.index:
                nb.serving_cancelled = True
        elif isinstance(msg, Lookup):
            self._on_lookup(nb, msg, out, now)
        elif isinstance(msg, Holders):
            return self._on_holders(nb, msg, now)
        elif isinstance(msg, Unknown):
            pass  # a newer peer's message
        elif msg.index in nb.pending:  # Choke
            del nb.pending[msg.index]
            nb.reassembler.forget(msg.index)
            out.append(Reject(peer, msg.index, "choked"))
        return out

    def served(self, peer: str, index: int, data: bytes | None, now: float) -> list[Effect]:
        """The shell read chunk ``index`` for ``peer`` (``data``, or None when it could not)."""
        out: list[Effect] = []
        nb = self.neighbours.get(peer)
        if nb is None or nb.serving != index:
            return out
        cancelled = nb.serving_cancelled
        nb.serving = None
        nb.serving_cancelled = False
        if not cancelled:
            if not data:
                out.append(Send(peer, encode(Choke(index))))
                self.chunk_dropped(index)
            else:
                sent = corrupt_copy(data) if self.settings.corrupt else data
                out.extend(Send(peer, encode(piece)) for piece in split_chunk(index, sent))
                self.up_bytes += len(sent)
                self.budget.spend(len(sent), now)
        self._pump(nb, out, now)
        return out

    def slots_in_use(self) -> int:
        """Number of neighbours being served now (upload slots in use)."""
        return sum(1 for nb in self.neighbours.values() if nb.serving is not None or nb.uploads)

    # ---- time -------------------------------------------------------------------

    def tick(self, now: float, totals: Mapping[str, float] | None = None) -> list[Effect]:
        """Periodic work: tracker and neighbour announcements, wants, connection
        timeouts, slot and stats reports, keepalive. ``totals``: the player's
        cumulative counters ``{httpBytes, peerBytes, stalls}``."""
        out: list[Effect] = []
        st = self.settings
        for peer, nb in list(self.neighbours.items()):
            if nb.ranges is None and now - nb.since > st.connect_timeout:
                self._close_neighbour(peer, out, now, cool=True)
        if self.want.outstanding and now - self.want.sent_at > st.want_timeout:
            self.want.outstanding = False
        for peer, (_source, at) in list(self.introducing.items()):
            if now - at > st.want_timeout:
                del self.introducing[peer]
        for nb in self.neighbours.values():
            for key, at in list(nb.lookups.items()):
                if now - at > st.want_timeout:
                    del nb.lookups[key]
        # requests the upload cap held back
        for nb in self.neighbours.values():
            self._pump(nb, out, now)
        s = self.session
        if s is not None and s.wire_dirty:
            s.wire_dirty = False
            if self.uploading:  # a peer that does not share has nothing new to tell
                frame = self._have_frame()
                out.extend(Send(nb.id, frame) for nb in self.neighbours.values() if nb.state == "open")
        if self.connected:
            self._flush_tracker(out, now)
            self._maybe_want(out, now)
            in_use = self.slots_in_use()
            if in_use != self._slots_reported and (now - self._slots_at >= st.slots_gap or in_use >= self.upload_slots):
                self._slots_reported = in_use
                self._slots_at = now
                self._send_control(out, Slots(in_use), now)
            self._maybe_stats(out, now, totals or {})
            if self.turn_servers and now >= self._turn_renew_at and not self._turn_asking:
                self._turn_asking = True
                self._turn_renew_at = math.inf
                self._send_control(out, Turn(), now)
            if now - self.last_sent_at >= st.keepalive:
                self._send_control(out, Ping(), now)
        return out

    def wait_until(self, now: float) -> float:
        """Until when (same clock) the scheduler may hold back server requests for
        chunks it could get from peers: -inf when nothing is pending."""
        s = self.session
        if s is None or not self.missing():
            return -math.inf
        st = self.settings
        until = -math.inf
        if not s.answered:
            until = s.started_at + st.start_wait
        if self.want.outstanding:
            until = max(until, self.want.sent_at + st.want_grace)
        if self.round.active:
            until = max(until, self.round.until)
        for nb in self.neighbours.values():
            if nb.ranges is None:
                until = max(until, nb.since + st.connect_timeout)
        return until if until > now else -math.inf

    def flush_stats(self, now: float, totals: Mapping[str, float] | None = None) -> list[Effect]:
        """Report the counts not yet reported now, whatever the interval (the peer goes away)."""
        out: list[Effect] = []
        if self.connected:
            self._maybe_stats(out, now, totals or {}, force=True)
        return out

    def info(self) -> dict[str, object]:
        """A summary for the interface and for tests (the browser's ``info()``)."""
        s = self.session
        return {
            "peerId": self.peer_id,
            "connected": self.connected,
            "track": s.track if s is not None else None,
            "held": len(s.held) if s is not None else 0,
            "neighbours": [
                {
                    "id": nb.id,
                    "role": nb.role,
                    "state": nb.state,
                    "have": None if nb.ranges is None else sum(b - a + 1 for a, b in nb.ranges),
                }
                for nb in self.neighbours.values()
            ],
            "banned": list(self.banned),
            "upBytes": self.up_bytes,
            "verifyFailures": self.verify_failures,
            "slotsInUse": self.slots_in_use(),
            "uploadSlots": self.upload_slots,
            "uploading": self.uploading,
            "uploadKbps": self.budget.kbps,
        }

    # ---- internals ----------------------------------------------------------------

    def _send_control(self, out: list[Effect], msg: PeerMessage, now: float) -> None:
        out.append(Control(msg))
        self.last_sent_at = now

    def _new_neighbour(self, peer: str, role: Role, now: float) -> _Neighbour:
        nb = _Neighbour(id=peer, role=role, since=now)
        self.neighbours[peer] = nb
        return nb

    def _close_neighbour(self, peer: str, out: list[Effect], now: float, *, cool: bool) -> None:
        nb = self.neighbours.pop(peer, None)
        if nb is None:
            return
        if nb.ranges is not None:
            out.append(PeerGone(peer))
        out.extend(Reject(peer, index, "closed") for index in nb.pending)
        out.append(Close(peer))
        if cool:
            self.cooldown[peer] = now + self.settings.retry_cooldown
        self.round.asked.discard(peer)
        # a place came free: look for another neighbour soon
        self.want.next_at = min(self.want.next_at, now + 1)

    def _misbehaved(self, peer: str, now: float) -> list[Effect]:
        out: list[Effect] = []
        self.banned[peer] = None
        self._close_neighbour(peer, out, now, cool=False)
        return out

    def _peer_have_effect(self, nb: _Neighbour) -> PeerHave:
        limit = (self.session.max_index + 1 if self.session is not None else 0) + self.settings.live_slack
        floor = self.session.min_index if self.session is not None else 0  # a live window's oldest chunk
        return PeerHave(nb.id, tuple(expand_ranges(nb.ranges or [], limit, floor)))

    def _have_frame(self) -> bytes:
        held = self.session.held if self.session is not None and self.uploading else {}
        return encode(Have(tuple(to_ranges(held)[: self.settings.max_wire_ranges])))

    def _flush_tracker(self, out: list[Effect], now: float) -> None:
        s = self.session
        if s is None or not self.connected:
            return
        if not self.uploading:
            # nothing announced; what was, withdrawn (an empty holding removes the track)
            s.added.clear()
            if s.full_have and s.shown:
                self._send_control(out, TrackerHave(s.track, s.rendition, ChunkSet(()), False, replace=True), now)
            s.full_have = False
            s.shown = False
            s.announced_complete = False
            return
        complete = self.holds_all()
        limit = self.settings.max_tracker_ranges
        # to_ranges' runs are sorted, disjoint and apart: a ChunkSet's own form
        if s.full_have:
            s.full_have = False
            s.added.clear()
            s.announced_complete = complete
            held = ChunkSet(tuple(to_ranges(s.held)[:limit]))
            self._send_control(out, TrackerHave(s.track, s.rendition, held, complete, replace=True), now)
            s.shown = True
        elif s.added or (complete and not s.announced_complete):
            added = ChunkSet(tuple(to_ranges(s.added)[:limit]))
            s.added.clear()
            s.announced_complete = complete
            self._send_control(out, TrackerHave(s.track, s.rendition, added, complete), now)
            s.shown = True

    def _maybe_want(self, out: list[Effect], now: float) -> None:
        s = self.session
        if s is None or not self.connected:
            return
        if self.round.active:
            if now >= self.round.until:
                self._finish_round(out, now)
            return
        if self.want.outstanding or now < self.want.next_at:
            return
        if len(self.neighbours) >= self.settings.want_neighbours or not self.missing():
            return
        if self.settings.overlay and self._start_round(out, now):
            return
        # nobody left to ask: every open neighbour was asked lately. If the last
        # round found the overlay exhausted, their answers still stand
        if self.settings.overlay and now - s.known_at < self.settings.lookup_interval and self._open_neighbours() > 0:
            self._want_later(out, now)
            return
        self._send_want(out, now)

    def _back_off(self, now: float) -> None:
        """The next want later, doubling the interval (as after a tracker answer that brought nobody)."""
        self.want.interval = min(self.want.interval * 2, self.settings.max_want_interval)
        self.want.next_at = now + self.want.interval

    def _want_later(self, out: list[Effect], now: float) -> None:
        """The overlay is exhausted: no want now, it backs off instead; once the
        interval is at ``max_want_interval`` the want goes out all the same, so the
        tracker still checks the neighbours' view (a swarm split in two, a
        neighbour that hides the others) at the pace of a tracker-only peer."""
        if self.want.interval >= self.settings.max_want_interval:
            self._send_want(out, now)
        else:
            self._back_off(now)

    def _open_neighbours(self) -> int:
        return sum(1 for nb in self.neighbours.values() if nb.state == "open")

    def _send_want(self, out: list[Effect], now: float) -> None:
        s = self.session
        missing = self.missing()
        if s is None or not self.connected or self.want.outstanding or not missing:
            return
        if len(self.neighbours) >= self.settings.want_neighbours:
            return
        self.want.outstanding = True
        self.want.sent_at = now
        self.want.next_at = now + self.want.interval
        self._send_control(out, Want(s.track, s.rendition, tuple(missing[: self.settings.max_want])), now)

    def _on_peers(self, msg: Peers, now: float, out: list[Effect]) -> None:
        s = self.session
        if s is None or msg.track != s.track or msg.rendition != s.rendition:
            return
        self.want.outstanding = False
        s.answered = True
        dialled = 0
        for c in msg.peers:
            peer = c.peer_id
            if not peer:
                continue
            if peer == self.peer_id or peer in self.neighbours or peer in self.banned:
                continue
            if self.cooldown.get(peer, -math.inf) > now:
                continue
            if len(self.neighbours) >= self.settings.want_neighbours:
                break
            self._new_neighbour(peer, "offerer", now)
            out.append(Open(peer, "offerer"))
            dialled += 1
        if dialled > 0:
            self.want.interval = self.settings.want_interval
            self.want.next_at = now + self.want.interval
        else:
            self._back_off(now)
        # holders of our track: what we tell a neighbour that asks
        for c in msg.peers:
            self._remember(s.track, s.rendition, c.peer_id, None, now)

    # ---- overlay internals --------------------------------------------------------

    def _start_round(self, out: list[Effect], now: float) -> bool:
        """Start a lookup round; False when there is nobody to ask and nothing to introduce."""
        s = self.session
        assert s is not None
        self.round = _Round(active=True, until=now + self.settings.lookup_wait)
        introduced = self._introduce_known(out, now)
        for nb in list(self.neighbours.values()):
            if self._ask(nb, s.track, s.rendition, out, now):
                self.round.asked.add(nb.id)
        if introduced == 0 and not self.round.asked:
            self._end_round()
            return False
        # Even at a session's start (nobody to ask yet, only candidates from the
        # directory) the round waits for its introductions: the first seconds
        # come from the server anyway, and an introduction answers within a
        # round trip, so a want beside it would mostly find the same peers.
        return True

    def _end_round(self) -> None:
        self.round = _Round()

    def _finish_round(self, out: list[Effect], now: float) -> None:
        """The round is over: someone new came (no want); nobody did, but every
        neighbour asked answered and every introduction was answered (the overlay
        is exhausted: the tracker knows the same holders, it refused the busy
        ones; newcomers will dial us): back off; otherwise want now."""
        found, answered = self.round.found, self.round.answered
        exhausted = answered > 0 and not self.round.asked and not self.introducing
        self._end_round()
        if found > 0:
            self.want.interval = self.settings.want_interval
            self.want.next_at = now + self.want.interval
        elif exhausted:
            if self.session is not None:
                self.session.known_at = now
            self._want_later(out, now)
        else:
            self._send_want(out, now)

    def _check_round(self, out: list[Effect], now: float) -> None:
        """Every answer of the round is in: finish it without waiting out lookup_wait."""
        if self.round.active and not self.round.asked and not self.introducing:
            self._finish_round(out, now)

    def _ask(self, nb: _Neighbour, track: str, rendition: str, out: list[Effect], now: float) -> bool:
        """LOOKUP to ``nb`` unless it was asked lately; True when sent."""
        if nb.state != "open" or now - nb.asked_at < self.settings.lookup_interval:
            return False
        nb.asked_at = now
        nb.lookups[(track, rendition)] = now
        out.append(Send(nb.id, encode(Lookup(track, rendition))))
        return True

    def _introduce_known(self, out: list[Effect], now: float) -> int:
        """``introduce`` requests for the session's known candidates, while there is room; how many."""
        s = self.session
        known = self.directory.get((s.track, s.rendition)) if s is not None else None
        if s is None or not known or not self.connected:
            return 0
        sent = 0
        chunks = self.missing()[: self.settings.max_want]  # as in a want: it must hold one of them
        for peer, k in list(known.items()):
            if len(self.neighbours) + len(self.introducing) >= self.settings.want_neighbours:
                break
            if k.until <= now or not self._dialable(peer, now) or peer in self.introducing:
                continue
            self.introducing[peer] = (k.source, now)
            self._send_control(out, Introduce(s.track, s.rendition, peer, tuple(chunks)), now)
            sent += 1
        return sent

    def _dialable(self, peer: str, now: float) -> bool:
        return (peer != self.peer_id and peer not in self.neighbours and peer not in self.banned
                and self.cooldown.get(peer, -math.inf) <= now)

    def _remember(self, track: str, rendition: str, peer: str, source: str | None, now: float) -> None:
        """``peer`` holds (track, rendition), as ``source`` (a neighbour, or None: the tracker) said."""
        if peer == self.peer_id:
            return
        key = (track, rendition)
        known = self.directory.get(key)
        if known is None:
            known = self.directory[key] = {}
            if len(self.directory) > _MAX_DIRECTORY_TRACKS:
                del self.directory[next(iter(self.directory))]
        known.pop(peer, None)
        known[peer] = _Known(now + self.settings.directory_ttl, source)
        if len(known) > self.settings.max_directory:
            del known[next(iter(known))]

    def _holders_of(self, track: str, rendition: str, except_: str, now: float) -> list[str]:
        """What we know holds (track, rendition), for a neighbour's LOOKUP (never ``except_`` itself)."""
        found: dict[str, None] = {}
        s = self.session
        if s is not None and (s.track, s.rendition) == (track, rendition):
            if s.held and self.uploading and self.peer_id is not None:
                found[self.peer_id] = None
            for nb in self.neighbours.values():
                if nb.id != except_ and nb.ranges:
                    found[nb.id] = None
        for peer, k in self.directory.get((track, rendition), {}).items():
            if k.until > now and peer != except_ and peer not in self.banned:
                found[peer] = None
        return list(found)[: self.settings.max_holders]

    def _on_lookup(self, nb: _Neighbour, msg: Lookup, out: list[Effect], now: float) -> None:
        if now - nb.answered_at < self.settings.lookup_gap:
            return  # rate limited: ignored
        nb.answered_at = now
        peers = tuple(self._holders_of(msg.track, msg.rendition, nb.id, now))
        out.append(Send(nb.id, encode(Holders(msg.track, msg.rendition, peers))))

    def _on_holders(self, nb: _Neighbour, msg: Holders, now: float) -> list[Effect]:
        out: list[Effect] = []
        key = (msg.track, msg.rendition)
        asked = key in nb.lookups
        if not asked:
            # unsolicited: only the notice "I go to this track", once
            if nb.noticed or msg.peers != (nb.id,):
                return self._bad_overlay(nb.id, now)
            nb.noticed = True
            self._remember(msg.track, msg.rendition, nb.id, nb.id, now)
            return out
        unique = set(msg.peers)
        if len(msg.peers) > self.settings.max_holders or len(unique) != len(msg.peers) or self.peer_id in unique:
            return self._bad_overlay(nb.id, now)
        del nb.lookups[key]
        s = self.session
        ours = s is not None and (s.track, s.rendition) == key
        if ours and nb.id in self.round.asked:
            self.round.asked.discard(nb.id)
            self.round.answered += 1
        for peer in msg.peers:
            self._remember(msg.track, msg.rendition, peer, nb.id, now)
        if self.round.active and ours:
            self._introduce_known(out, now)
        self._check_round(out, now)
        return out

    def _on_introduced(self, msg: Peers, now: float, out: list[Effect]) -> None:
        """The server introduced us (``peers`` with ``for: "introduce"``): dial."""
        s = self.session
        if s is None or msg.track != s.track or msg.rendition != s.rendition:
            return
        for c in msg.peers:
            peer = c.peer_id
            if not peer:
                continue
            entry = self.introducing.pop(peer, None)
            source = self.neighbours.get(entry[0]) if entry is not None and entry[0] is not None else None
            if source is not None and source.id != peer:
                source.good_holders += 1
            if not self._dialable(peer, now) or len(self.neighbours) >= self.settings.want_neighbours:
                continue
            self._new_neighbour(peer, "offerer", now)
            out.append(Open(peer, "offerer"))
            s.answered = True
            if self.round.active:
                self.round.found += 1
        # refused (not a connected holder with a free slot, or not allowed): the answer lists nobody
        asked = msg.peer_id
        listed = any(c.peer_id == asked for c in msg.peers)
        if asked is not None and not listed:
            self._introduce_refused(asked, msg.reason == "busy", now, out)
        self._check_round(out, now)

    def _introduce_refused(self, peer: str, busy: bool, now: float, out: list[Effect]) -> None:
        """The server refused to introduce ``peer``: forget it; unless it is only busy, its source was wrong."""
        entry = self.introducing.pop(peer, None)
        if entry is None:
            return
        if entry[0] == peer:
            # a departing peer naming itself may not have announced a chunk yet: it stays a candidate
            self._check_round(out, now)
            return
        s = self.session
        if s is not None:
            self.directory.get((s.track, s.rendition), {}).pop(peer, None)
        source = self.neighbours.get(entry[0]) if entry[0] is not None and not busy else None
        if source is not None:
            source.bad_holders += 1
            if source.bad_holders - source.good_holders >= self.settings.max_bad_holders:
                out.extend(self._bad_overlay(source.id, now))
        self._check_round(out, now)

    def _bad_overlay(self, peer: str, now: float) -> list[Effect]:
        """Overlay nonsense from ``peer``: counted like a bad chunk (dropped, banned, reported)."""
        out = self.verify_failed(peer, now)
        for known in self.directory.values():
            for other, k in list(known.items()):
                if k.source == peer or other == peer:
                    del known[other]
        return out

    def _on_signal(self, sender: str, data: SignalData, now: float, out: list[Effect]) -> None:
        nb = self.neighbours.get(sender)

        def reject() -> None:
            self._send_control(out, Signal(sender, signal_data(Refusal("full"))), now)

        if isinstance(data, Refusal):
            if nb is not None and nb.role == "offerer" and nb.state == "connecting":
                self._close_neighbour(sender, out, now, cool=True)
            return
        if not (isinstance(data, Description) and data.type == "offer"):
            if nb is not None:
                out.append(Rtc(sender, data))
            return
        if self.session is None or sender in self.banned:
            if nb is None:
                reject()
            return
        if nb is not None:
            if nb.role == "offerer" and nb.state == "connecting" and self.peer_id is not None and self.peer_id < sender:
                return  # glare: our offer stands, the other side answers it
            self._close_neighbour(sender, out, now, cool=False)  # glare lost, or a restart
        elif len(self.neighbours) >= self.settings.max_neighbours:
            reject()
            return
        self._new_neighbour(sender, "answerer", now)
        out.append(Open(sender, "answerer"))
        out.append(Rtc(sender, data))

    def _on_request(self, nb: _Neighbour, index: int, out: list[Effect], now: float) -> None:
        s = self.session

        def choke() -> None:
            out.append(Send(nb.id, encode(Choke(index))))

        if s is None or not self.uploading or index not in s.held:
            return choke()
        if nb.serving == index or index in nb.uploads:
            return None  # asked twice: once is enough
        served = nb.serving is not None or bool(nb.uploads)
        if not served and self.slots_in_use() >= self.upload_slots:
            return choke()
        if len(nb.uploads) >= self.settings.max_queued:
            return choke()
        nb.uploads.append(index)
        self._pump(nb, out, now)
        return None

    def _pump(self, nb: _Neighbour, out: list[Effect], now: float) -> None:
        """Serve ``nb``'s next queued request, if none is being read and the upload cap allows."""
        if nb.serving is not None or not nb.uploads or not self.budget.can_start(now):
            return
        nb.serving = nb.uploads.pop(0)
        nb.serving_cancelled = False
        out.append(Serve(nb.id, nb.serving))

    def _maybe_stats(self, out: list[Effect], now: float, totals: Mapping[str, float], force: bool = False) -> None:
        due = now - self._stats_at >= self.stats_interval
        urgent = self.urgent_stats and now - self._stats_at >= self.settings.urgent_stats_gap
        if not due and not urgent and not force:
            return

        def clamp(n: float) -> int:
            return max(0, min(MAX_REPORT, math.floor(n)))

        cur = {
            "down": totals.get("peerBytes", 0),
            "up": self.up_bytes,
            "http": totals.get("httpBytes", 0),
            "stalls": totals.get("stalls", 0),
            "failures": self.verify_failures,
            "live": totals.get("livePeerBytes", 0),
        }
        delta = {k: clamp(cur[k] - self.reported[k]) for k in _COUNTS}
        startup = self.pending_startup
        self.urgent_stats = False
        if all(v == 0 for v in delta.values()) and startup is None:
            return  # nothing to say; the keepalive ping covers silence
        self._stats_at = now
        for k in _COUNTS:
            self.reported[k] += delta[k]
        self.pending_startup = None
        self.last_report = _Report(delta, startup)
        # The neighbours that delivered most, as many as a report may name.
        named = sorted(self.sources.items(), key=lambda kv: -kv[1])[:MAX_SOURCES]
        self.sources = {}
        msg = Stats(
            p2p_down_bytes=delta["down"],
            p2p_up_bytes=delta["up"],
            http_down_bytes=delta["http"],
            stalls=delta["stalls"],
            startup_seconds=startup,
            verify_failures=delta["failures"],
            sources=tuple((peer, clamp(n)) for peer, n in named),
            live_latency_seconds=_live_latency(totals.get("liveLatency")),
            p2p_live_down_bytes=min(delta["live"], delta["down"]),
        )
        self._send_control(out, msg, now)
