"""The swarm hub: the control WebSocket's rules, with no socket in sight.

Theory of operation
-------------------

``SwarmHub`` is a pure state machine, as h11's ``Connection`` is: it is fed
connection events and peer messages and *returns* what should happen, as a
list of plain outputs; it never sends, sleeps, reads a clock or touches a
metric itself. The aiohttp handler (``socket.py``) carries the outputs out,
and a cluster shell could carry out the same outputs elsewhere.

Inputs (``now`` is seconds on any monotonic clock; peer ids come from the
injected ``new_id``)::

    open(now, address)             -> (peer_id, outputs)   a socket was accepted
                                                (address: the client's)
    receive(peer, message, now)    -> outputs   a text frame, as codec.parse
                                                made it (a message, or the
                                                ProtocolError it raised)
    refuse(peer, error, now)       -> outputs   a frame refused before parsing
                                                (a binary frame)
    close(peer, now)               -> outputs   the socket is gone
    tick(now)                      -> outputs   time passed (idle expiry)
    shutdown()                     -> outputs   the server is stopping

Outputs::

    Send(peer, message)            render(message) to that peer's socket
    Close(peer, code, reason)      close that socket after what is queued
    Count(metric, labels, n)       add n to a counter or gauge
    Observe(metric, labels, value) one observation of a histogram

Rules (docs/websocket.md is the contract):

- Rate: a token bucket per peer, ``MESSAGES_PER_SECOND`` refilled up to
  ``BURST``; a message over it is refused with ``rate_limited`` whatever it
  says (checked before anything the message asks is done). Stats have a
  bucket of their own, signals a byte budget.
- Strikes: every refused message costs a strike from a second bucket
  (``STRIKES`` refilled at ``STRIKES_PER_SECOND``); a peer out of strikes
  gets its error, then ``Close(1008)``. An occasional error never closes.
- Relay: a ``signal`` passes only between peers the tracker introduced
  (checked first, so a stranger learns nothing about which ids exist), to a
  peer still open, with ``from`` set to the sender's real id.
- Introduce (the overlay, docs/wire.md): ``introduce`` names a peer a
  neighbour said holds (track, rendition); the tracker introduces the pair
  only if that peer is connected (not closing), not the asker, and by the
  rules of ``want`` holds that swarm, one of the ``chunks`` needed and has a
  free upload slot, and the privacy rules allow it
  (``_introductions_allowed``). The answer is ``peers`` with ``for:
  "introduce"`` and the ``peer_id`` asked: that one candidate, or none and a
  ``reason`` (``not_a_holder``: the neighbour who named it was wrong;
  ``busy``: not now). A refusal is an answer, not a strike: the asker only
  repeated what a neighbour said.
- Stats accepted become ``Count``s (credited as far as corroborated, see
  "Honest metrics" below) of ``ztream_peer_bytes_total``,
  ``ztream_playback_stalls_total``, ``ztream_chunk_verify_failures_total``,
  ``ztream_peer_relay_bytes_total`` (the TURN-relayed part of the peer
  bytes), ``ztream_p2p_connections_total{result,candidate}`` (one per
  reported connection outcome), the gauge ``ztream_peers_without_neighbours``
  (peers whose last report said ``neighbours: 0``) and ``Observe``s of
  ``ztream_startup_seconds`` and ``ztream_live_latency_seconds``; a report refused
  (``bad_stats`` by the parser, or over its rate) counts nothing.
  ``ztream_peers_connected`` moves by one on ``open`` and ``close``.
- ICE servers: each ``welcome`` carries ``ice_servers(peer_id)`` (the
  gateway's STUN address, see gateway/nat/); never TURN credentials.
- TURN: only a peer that needs a relay asks (``turn``); the answer is
  ``turn(peer_id)`` (credentials valid minutes, gateway/nat/turn.py), or the
  error ``no_turn`` (none configured; no strike). Asking is rate limited per
  client *address* (``TURN_PER_SECOND``, ``TURN_BURST``): past it,
  ``rate_limited`` (a strike). The peer renews by asking again while its
  socket lives; a closed socket's credentials simply run out.
- Honest metrics: a report moves the metrics only as far as something
  corroborates it, so one socket moves the offload figure by no more than
  its own listening could (docs/metrics.md). Peer bytes are credited from a
  per-peer *listening budget* (``LISTEN_BYTES_PER_SECOND``, up to
  ``LISTEN_BURST_BYTES``): what a report claims past it waits (up to the
  burst) and is credited as the budget refills, so an honest peer's total
  arrives whole, late at worst, and a forger's is bounded by time.
  Connection outcomes are credited one per introduction the peer took part
  in (``want``/``introduce`` answers, either side), plus a small allowance
  (``CONNECTIONS_BURST``, refilled ``CONNECTIONS_PER_SECOND``) for what
  this node did not see; the rest is dropped.
- Evidence for the tracker: a report's ``sources`` (verified bytes per
  neighbour) credit those neighbours in the tracker (``Tracker.credit``):
  only neighbours the tracker introduced to the reporter, and in all no
  more than the report's credited peer bytes.
- Scope: the credited peer bytes are counted by how near their source was
  to the reporter (``ztream_peer_bytes_total{scope}``, networks.py): each
  named source's bytes, in the report's order and in all no more than what
  was credited, at the scope of the two peers' places (the source's as the
  tracker has it, or as it was when it left: the last ``MAX_DEPARTED``
  peers closed are remembered); a source never introduced to the reporter,
  and the bytes no source accounts for, count as ``unknown``.
- Privacy: with ``min_listeners`` N, a ``want`` is answered with no peers
  (and introduces no one) until N peers hold or ask for that track: nobody
  learns a stranger's address in a swarm of two (docs/p2p.md).
- Idle: a peer that sends nothing for ``IDLE_TIMEOUT`` seconds is dropped
  from the tracker by ``tick`` and closed with 4000.

A peer the hub has closed (strikes, idle, shutdown) is *closing*: what it
still sends is ignored, signals to it are refused with ``unknown_peer``, and
it stays counted until ``close``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, KeysView, Sequence
from dataclasses import dataclass
from typing import Any

from protocol.limits import (
    BURST,
    CLOSE_IDLE,
    CLOSE_POLICY,
    IDLE_TIMEOUT,
    MAX_CANDIDATES,
    MAX_CHUNKS,
    MAX_MESSAGE_BYTES,
    MAX_RANGES,
    MAX_SIGNAL_BYTES,
    MAX_WANT,
    MESSAGES_PER_SECOND,
    SIGNAL_BURST_BYTES,
    SIGNAL_BYTES_PER_SECOND,
    STATS_BURST,
    STATS_INTERVAL,
    STATS_PER_SECOND,
    STRIKES,
    STRIKES_PER_SECOND,
    TURN_BURST,
    TURN_PER_SECOND,
)
from protocol.messages import (
    Error,
    Have,
    Introduce,
    Leave,
    Limits,
    PeerMessage,
    Peers,
    Ping,
    Pong,
    ProtocolError,
    ServerMessage,
    Signal,
    SignalFrom,
    Slots,
    Stats,
    Turn,
    TurnServers,
    Want,
    Welcome,
    type_of,
)
from protocol.values import BadChunks, Candidate

from .bucket import TokenBucket
from .networks import SCOPES, UNKNOWN_PLACE, Place, scope
from .tracker import Tracker, TrackerError

__all__ = ["SwarmHub", "Send", "Close", "Count", "Observe", "Output", "CLOSE_GOING_AWAY",
           "LISTEN_BYTES_PER_SECOND", "LISTEN_BURST_BYTES", "CONNECTIONS_BURST", "CONNECTIONS_PER_SECOND"]

# What one listener can plausibly download from peers: 64 kB/s is four times a
# 128 kbit/s rendition (fetching ahead), and the burst a whole long track.
LISTEN_BYTES_PER_SECOND = 64_000
LISTEN_BURST_BYTES = 16 * 1024 * 1024
# Connection outcomes credited beyond the introductions seen here (a cluster's
# other nodes introduce too): a few, then one every 30 s.
CONNECTIONS_BURST = 8
CONNECTIONS_PER_SECOND = 1 / 30
# Introductions remembered per peer for crediting its connection outcomes.
MAX_INTRODUCTIONS_CREDITED = 256
# Client addresses whose TURN budget is remembered; past it the oldest is forgotten.
MAX_TURN_CLIENTS = 65_536
# Places of peers that left, for the scope of bytes reported after a source
# closed (a report comes every 5 s): about 100 bytes each.
MAX_DEPARTED = 4096

# RFC 6455 7.4.1: the endpoint is going away (server shutdown).
CLOSE_GOING_AWAY = 1001
# Ids drawn before giving up on a generator that keeps repeating itself
# (128 random bits never do; a broken test double might).
_ID_TRIES = 8

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Send:
    peer: str
    message: ServerMessage


@dataclass(frozen=True, slots=True)
class Close:
    peer: str
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Count:
    metric: str
    labels: Labels
    n: float


@dataclass(frozen=True, slots=True)
class Observe:
    metric: str
    labels: Labels
    value: float


Output = Send | Close | Count | Observe

PEERS_CONNECTED = "ztream_peers_connected"
PEER_BYTES = "ztream_peer_bytes_total"
STALLS = "ztream_playback_stalls_total"
VERIFY_FAILURES = "ztream_chunk_verify_failures_total"
STARTUP_SECONDS = "ztream_startup_seconds"
LIVE_LATENCY_SECONDS = "ztream_live_latency_seconds"
PEER_RELAY_BYTES = "ztream_peer_relay_bytes_total"
LIVE_PEER_BYTES = "ztream_live_peer_bytes_total"
P2P_CONNECTIONS = "ztream_p2p_connections_total"


def connection_labels(outcome: str) -> tuple[tuple[str, str], ...]:
    """``ztream_p2p_connections_total``'s labels for one reported outcome
    (``CONNECTION_OUTCOMES``): ``result``; ``local`` and ``remote``, the
    selected pair's candidate types; ``candidate``, the pair's type (``relay``
    when either end is relayed, else the remote end's). ``none`` for a
    connection that never connected, ``unknown`` where the player could not say."""
    if outcome in ("failed", "timeout"):
        local = remote = candidate = "none"
        result = outcome
    else:
        result = "connected"
        local, _, remote = outcome.partition("/") if "/" in outcome else ("unknown", "", "unknown")
        candidate = "relay" if "relay" in (local, remote) else remote
    return (("result", result), ("candidate", candidate), ("local", local), ("remote", remote))
ALONE = "ztream_peers_without_neighbours"

IceServers = Sequence[dict[str, Any]]
# What ``turn(peer_id)`` gives: the TURN entries and how long they stay valid (s).
TurnGrant = tuple[IceServers, int]


class _Peer:
    """One open peer's budgets; the tracker keeps what it holds.

    A budget is made at its first use, full: as it would be by then had it
    been made at the open, a bucket filling only up to its burst. An idle
    peer holds none (four buckets are a third of the hub's cost per socket).
    """

    __slots__ = ("id", "address", "_messages", "_stats", "_signal_bytes", "_strikes", "closing", "alone",
                 "_listen", "backlog", "intros", "_connections")

    def __init__(self, peer_id: str, now: float, address: str | None = None) -> None:
        self.id = peer_id
        self.address = address
        self._messages: TokenBucket | None = None
        self._stats: TokenBucket | None = None
        self._signal_bytes: TokenBucket | None = None
        self._strikes: TokenBucket | None = None
        self.closing = False
        # Its last stats said it had no neighbour open (counted in ALONE).
        self.alone = False
        self._listen: TokenBucket | None = None
        # Peer bytes reported past the listening budget, credited as it refills.
        self.backlog = 0
        # Introductions it took part in, not yet matched by a reported connection outcome.
        self.intros = 0
        self._connections: TokenBucket | None = None

    def listen(self, now: float) -> TokenBucket:
        if self._listen is None:
            self._listen = TokenBucket(LISTEN_BYTES_PER_SECOND, LISTEN_BURST_BYTES, now)
        return self._listen

    def connections(self, now: float) -> TokenBucket:
        if self._connections is None:
            self._connections = TokenBucket(CONNECTIONS_PER_SECOND, CONNECTIONS_BURST, now)
        return self._connections

    def messages(self, now: float) -> TokenBucket:
        if self._messages is None:
            self._messages = TokenBucket(MESSAGES_PER_SECOND, BURST, now)
        return self._messages

    def stats(self, now: float) -> TokenBucket:
        if self._stats is None:
            self._stats = TokenBucket(STATS_PER_SECOND, STATS_BURST, now)
        return self._stats

    def signal_bytes(self, now: float) -> TokenBucket:
        if self._signal_bytes is None:
            self._signal_bytes = TokenBucket(SIGNAL_BYTES_PER_SECOND, SIGNAL_BURST_BYTES, now)
        return self._signal_bytes

    def strikes(self, now: float) -> TokenBucket:
        if self._strikes is None:
            self._strikes = TokenBucket(STRIKES_PER_SECOND, STRIKES, now)
        return self._strikes


class SwarmHub:
    """Open peers, their budgets, and what each of their messages causes.

    ``tracker`` holds the swarms (it is shared: the admin page reads it);
    ``ice_servers`` go into every ``welcome``: a fixed list, or a function of
    the peer id (per-peer TURN credentials; it may read the wall clock, the
    only input that is not passed in); ``new_id()`` mints peer ids
    (``secrets.token_urlsafe(16)`` in the gateway, a counter in tests);
    ``min_listeners``: see "Privacy" above; ``turn(peer_id)``: TURN
    credentials for a peer that asks (None: no TURN server configured);
    ``upload`` and ``upload_kbps``: the listeners' upload policy and cap,
    told in every ``welcome`` (``p2p.upload``, ``p2p.upload_kbps``; None: not
    said). The gateway cannot check that a listener keeps them: the policy
    is the listener's own promise, and a chunk is only ever served by a
    listener who chose to (docs/p2p.md, "Listeners' consent").
    """

    def __init__(
        self,
        tracker: Tracker,
        *,
        new_id: Callable[[], str],
        ice_servers: Iterable[dict[str, Any]] | Callable[[str], IceServers] = (),
        min_listeners: int = 0,
        turn: Callable[[str], TurnGrant] | None = None,
        upload: str | None = None,
        upload_kbps: int | None = None,
    ) -> None:
        self.tracker = tracker
        self._upload = upload
        self._turn = turn
        # Client address -> its budget of TURN requests (oldest first).
        self._turn_budgets: dict[str, TokenBucket] = {}
        self._new_id = new_id
        if callable(ice_servers):
            self._ice_servers: Callable[[str], IceServers] = ice_servers
        else:
            fixed = tuple(ice_servers)
            self._ice_servers = lambda _peer: fixed
        self.min_listeners = min_listeners
        self._peers: dict[str, _Peer] = {}
        # Peer id -> its place, for the last MAX_DEPARTED peers closed (oldest first).
        self._departed: dict[str, Place] = {}
        self.limits = Limits(
            max_message_bytes=MAX_MESSAGE_BYTES,
            messages_per_second=MESSAGES_PER_SECOND,
            burst=BURST,
            max_tracks=tracker.max_tracks,
            max_chunks=MAX_CHUNKS,
            max_ranges=MAX_RANGES,
            max_want=MAX_WANT,
            max_candidates=MAX_CANDIDATES,
            max_signal_bytes=MAX_SIGNAL_BYTES,
            upload_slots=tracker.upload_slots,
            stats_interval=STATS_INTERVAL,
            idle_timeout=IDLE_TIMEOUT,
            upload_kbps=upload_kbps,
        )

    @property
    def peers(self) -> KeysView[str]:
        """The ids of the open peers (closing ones included, until ``close``)."""
        return self._peers.keys()

    def __len__(self) -> int:
        return len(self._peers)

    def __contains__(self, peer: object) -> bool:
        return peer in self._peers

    # -- connection events ---------------------------------------------------

    def open(self, now: float, address: str | None = None) -> tuple[str, list[Output]]:
        """A new socket from client ``address``: a fresh id, registered with the
        tracker (which groups peers by address), and its welcome.

        The ``Origin`` was checked before the upgrade (a refused page never
        gets this far), so the hub trusts no one beyond its own connection.
        """
        for _ in range(_ID_TRIES):
            peer_id = self._new_id()
            if peer_id not in self._peers:
                break
        else:
            raise RuntimeError("the peer id generator keeps returning ids in use")
        self._peers[peer_id] = _Peer(peer_id, now, address)
        self.tracker.join(peer_id, now, address)
        welcome = Welcome(peer_id, tuple(self._ice_servers(peer_id)), self.limits, self._upload)
        return peer_id, [Count(PEERS_CONNECTED, (), 1), Send(peer_id, welcome)]

    def close(self, peer: str, now: float) -> list[Output]:
        """The socket is gone: forget the peer everywhere. Idempotent."""
        p = self._peers.pop(peer, None)
        if p is None:
            return []
        place = self.tracker.place(peer)
        if place != UNKNOWN_PLACE:
            self._departed[peer] = place
            while len(self._departed) > MAX_DEPARTED:
                del self._departed[next(iter(self._departed))]
        self.tracker.remove(peer)
        out: list[Output] = [Count(PEERS_CONNECTED, (), -1)]
        if p.alone:
            out.append(Count(ALONE, (), -1))
        return out

    def tick(self, now: float) -> list[Output]:
        """Close the peers silent for more than ``IDLE_TIMEOUT`` (4000)."""
        out: list[Output] = []
        for peer_id in self.tracker.expire(now, IDLE_TIMEOUT):
            p = self._peers.get(peer_id)
            if p is not None and not p.closing:
                p.closing = True
                out.append(Close(peer_id, CLOSE_IDLE, "idle"))
        # A budget refilled to its burst is what a new one would be: forget it.
        full = TURN_BURST / TURN_PER_SECOND
        for address in [a for a, b in self._turn_budgets.items() if now - b.stamp >= full]:
            del self._turn_budgets[address]
        return out

    def shutdown(self) -> list[Output]:
        """Close every peer (1001 going away)."""
        out: list[Output] = []
        for p in self._peers.values():
            if not p.closing:
                p.closing = True
                out.append(Close(p.id, CLOSE_GOING_AWAY, "server shutdown"))
        return out

    # -- messages ------------------------------------------------------------

    def refuse(self, peer: str, error: ProtocolError, now: float) -> list[Output]:
        """A frame refused before it could be parsed (a binary frame): the
        error, and a strike."""
        p = self._peers.get(peer)
        if p is None or p.closing:
            return []
        return self._refuse(p, error.code, error.detail, error.for_type, now)

    def receive(self, peer: str, message: PeerMessage | ProtocolError, now: float) -> list[Output]:
        """One text frame from ``peer``, as parsed: apply it, answer it."""
        p = self._peers.get(peer)
        if p is None or p.closing:
            return []
        if not p.messages(now).take(now):
            return self._refuse(p, "rate_limited", f"more than {MESSAGES_PER_SECOND:g} messages a second", None, now)
        if isinstance(message, ProtocolError):
            return self._refuse(p, message.code, message.detail, message.for_type, now)
        tracker = self.tracker
        try:
            tracker.touch(peer, now)
            match message:
                case Have():
                    tracker.announce(
                        peer, message.track, message.rendition, message.chunks, now,
                        complete=message.complete, replace=message.replace,
                    )
                case Want():
                    if self.min_listeners > 1 and not self._enough_listeners(peer, message.track, message.rendition):
                        # Validated like any want, but nobody is introduced yet.
                        tracker.want(peer, message.track, message.rendition, message.chunks, now, limit=0)
                        return [Send(peer, Peers(message.track, message.rendition, ()))]
                    found = tracker.want(peer, message.track, message.rendition, message.chunks, now)
                    self._introduced(p, [c.peer_id for c in found])
                    return [Send(peer, Peers(message.track, message.rendition, tuple(found)))]
                case Signal():
                    return self._relay(p, message, now)
                case Stats():
                    return self._stats(p, message, now)
                case Slots():
                    tracker.set_slots(peer, message.in_use)
                case Leave():
                    tracker.leave(peer, message.track, message.rendition)
                case Ping():
                    return [Send(peer, Pong())]
                case Introduce():
                    answer = self._introduce(peer, message, now)
                    self._introduced(p, [c.peer_id for c in answer.peers])
                    return [Send(peer, answer)]
                case Turn():
                    return self._turn_request(p, now)
        except (TrackerError, BadChunks) as exc:
            return self._refuse(p, exc.code, exc.detail, type_of(message), now)
        return []

    def _introduced(self, p: _Peer, others: Sequence[str]) -> None:
        """Each introduction may become one connection outcome on each side."""
        for other in others:
            p.intros = min(p.intros + 1, MAX_INTRODUCTIONS_CREDITED)
            q = self._peers.get(other)
            if q is not None:
                q.intros = min(q.intros + 1, MAX_INTRODUCTIONS_CREDITED)

    def _turn_request(self, p: _Peer, now: float) -> list[Output]:
        if self._turn is None:
            # Not a strike: asking was reasonable, the answer is just no.
            return [Send(p.id, Error("no_turn", "this gateway has no TURN server", "turn"))]
        key = p.address if p.address is not None else p.id
        budget = self._turn_budgets.pop(key, None)
        if budget is None:
            budget = TokenBucket(TURN_PER_SECOND, TURN_BURST, now)
            while len(self._turn_budgets) >= MAX_TURN_CLIENTS:
                del self._turn_budgets[next(iter(self._turn_budgets))]
        self._turn_budgets[key] = budget  # moved to the young end
        if not budget.take(now):
            return self._refuse(p, "rate_limited", "too many TURN credentials asked from this address", "turn", now)
        servers, ttl = self._turn(p.id)
        return [Send(p.id, TurnServers(tuple(servers), ttl))]

    def _enough_listeners(self, peer: str, track: str, rendition: str) -> bool:
        # Whoever holds the track, and the asker (a fresh listener holds nothing yet).
        listeners = set(self.tracker.holders(track, rendition))
        listeners.add(peer)
        return len(listeners) >= self.min_listeners

    def _introduce(self, peer: str, message: Introduce, now: float) -> Peers:
        target = self._peers.get(message.peer_id)
        if target is None or target.closing or target.id == peer:
            verdict: Candidate | str = "not_a_holder"
        elif not self._introductions_allowed(peer, message.track, message.rendition):
            verdict = "busy"  # as a want answer would, say nothing of who holds what
        else:
            verdict = self.tracker.introduce(peer, target.id, message.track, message.rendition, message.chunks, now)
        if isinstance(verdict, str):
            return Peers(message.track, message.rendition, (), "introduce", message.peer_id, verdict)
        return Peers(message.track, message.rendition, (verdict,), "introduce", message.peer_id)

    def _introductions_allowed(self, peer: str, track: str, rendition: str) -> bool:
        """The privacy rules an introduction obeys, whoever found the candidate:
        the same as for a ``want`` answer (``min_listeners``). A ``p2p="relay"``
        listener needs no rule here: its ICE policy reveals no address to
        whoever it is introduced to (docs/p2p.md), and an id is not an address."""
        return self.min_listeners <= 1 or self._enough_listeners(peer, track, rendition)

    def _refuse(self, p: _Peer, code: str, detail: str, for_type: str | None, now: float) -> list[Output]:
        out: list[Output] = [Send(p.id, Error(code, detail, for_type))]
        if not p.strikes(now).take(now):
            p.closing = True
            out.append(Close(p.id, CLOSE_POLICY, "too many refused messages"))
        return out

    def _relay(self, p: _Peer, message: Signal, now: float) -> list[Output]:
        # Introduced first, then present: a stranger learns nothing about
        # which ids are connected.
        if not self.tracker.introduced(p.id, message.to):
            return self._refuse(p, "not_introduced", "signal only peers the tracker gave you", "signal", now)
        target = self._peers.get(message.to)
        # A peer of another cluster node is present too: the shell relays the Send there.
        if (target.closing if target is not None else not self.tracker.elsewhere(message.to)):
            return self._refuse(p, "unknown_peer", "that peer has left", "signal", now)
        if not p.signal_bytes(now).take(now, len(message.data_json)):
            return self._refuse(p, "rate_limited", "too many signal bytes a second", "signal", now)
        # "from" is always the sender's own id, whatever it wrote.
        return [Send(message.to, SignalFrom(p.id, message.data_json))]

    def _stats(self, p: _Peer, stats: Stats, now: float) -> list[Output]:
        if not p.stats(now).take(now):
            return self._refuse(p, "rate_limited", f"stats about every {STATS_INTERVAL} s, not faster", "stats", now)
        # Upload and HTTP bytes are validated but not counted: the server
        # counts what it serves itself, and an upload is someone's download.
        credited = self._listened(p, stats.p2p_down_bytes, now)
        out: list[Output] = [
            Count(PEER_BYTES, (("scope", name),), n) for name, n in self._scopes(p, stats, credited).items() if n
        ]
        out.extend(
            Count(metric, (), n)
            for metric, n in ((STALLS, stats.stalls), (VERIFY_FAILURES, stats.verify_failures))
            if n
        )
        # The relayed part of the credited bytes: TURN moved that egress, it did not remove it.
        relay = min(stats.p2p_relay_down_bytes, credited)
        if relay:
            out.append(Count(PEER_RELAY_BYTES, (), relay))
        # The live part, as far as the report was believed: live offload is
        # live peer bytes against ztream_live_server_bytes (docs/live.md).
        live = min(stats.p2p_live_down_bytes, credited)
        if live:
            out.append(Count(LIVE_PEER_BYTES, (), live))
        # The neighbours named as sources have shown what they hold, as far as
        # this report is believed and only those the tracker introduced.
        evidence = credited
        for source, n in stats.sources:
            if evidence <= 0:
                break
            if source != p.id and self.tracker.introduced(p.id, source):
                self.tracker.credit(source, min(n, evidence), now, to=p.id)
                evidence -= min(n, evidence)
        for outcome, n in stats.connections:
            n = self._connections_credited(p, n, now)
            if not n:
                continue
            out.append(Count(P2P_CONNECTIONS, connection_labels(outcome), n))
        if stats.neighbours is not None and (stats.neighbours == 0) != p.alone:
            p.alone = not p.alone
            out.append(Count(ALONE, (), 1 if p.alone else -1))
        if stats.startup_seconds is not None:
            out.append(Observe(STARTUP_SECONDS, (), stats.startup_seconds))
        if stats.live_latency_seconds is not None:
            out.append(Observe(LIVE_LATENCY_SECONDS, (), stats.live_latency_seconds))
        return out

    def _scopes(self, p: _Peer, stats: Stats, credited: int) -> dict[str, int]:
        """The ``credited`` bytes of a report by scope (module docstring, "Scope")."""
        out = dict.fromkeys(SCOPES, 0)
        here = self.tracker.place(p.id)
        left = credited
        for source, n in stats.sources:
            if left <= 0:
                break
            take = min(n, left)
            left -= take
            if source != p.id and self.tracker.introduced(p.id, source):
                out[scope(here, self.tracker.place(source))] += take
            elif source in self._departed:
                out[scope(here, self._departed[source])] += take
            else:
                out["unknown"] += take
        out["unknown"] += left
        return out

    @staticmethod
    def _listened(p: _Peer, reported: int, now: float) -> int:
        """The peer bytes of this report believed now: the backlog and the
        report, as far as the listening budget goes; the rest waits (bounded)."""
        claimed = p.backlog + reported
        if not claimed:
            return 0
        budget = p.listen(now)
        budget.take(now, 0)  # refill to now
        credited = min(claimed, int(budget.tokens))
        budget.tokens -= credited
        p.backlog = min(claimed - credited, LISTEN_BURST_BYTES)
        return credited

    @staticmethod
    def _connections_credited(p: _Peer, n: int, now: float) -> int:
        """Of ``n`` reported outcomes, those an introduction (or the allowance) vouches for."""
        from_intros = min(n, p.intros)
        p.intros -= from_intros
        rest = n - from_intros
        allowance = p.connections(now)
        allowance.take(now, 0)
        extra = min(rest, int(allowance.tokens))
        allowance.tokens -= extra
        return from_intros + extra
