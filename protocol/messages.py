'''The control WebSocket's messages, both ways, as typed values.

Theory of operation
-------------------

One frozen dataclass per message type, as h11 has one per HTTP event; no
I/O, no peers, no clock, no text: what a frame looks like, and which frames
are refused, is ``codec.py`` (``parse``, ``encode``, ``render``,
``parse_server``). The hub and the cluster deal only in these values;
``type_of(message)`` is the wire ``type`` of one (an error's ``for``). The
wire format, field by field, is docs/websocket.md.

The messages, in brief (docs/websocket.md has every field and rule)::

    server -> peer   welcome {peer_id, ice_servers, limits}
                     peers   {track, rendition, peers: [{peer_id, chunks, complete}],
                              for?, peer_id?, reason?}   for "introduce": the answer to one
                     signal  {from, data}      "from" is the sender's real id
                     pong    {}
                     error   {error, detail, for?}   "for": the refused type
                     turn    {ice_servers, ttl_seconds}   relay credentials, asked for
    peer -> server   have    {track, rendition, chunks?, ranges?, complete?, replace?}
                     want    {track, rendition, chunks?}
                     signal  {to, data}        data: an object, <= 32 KiB as JSON
                     stats   {p2p_down_bytes?, p2p_up_bytes?, http_down_bytes?,
                              stalls?, startup_seconds?, verify_failures?,
                              p2p_relay_down_bytes?, p2p_live_down_bytes?,
                              connections?, neighbours?, sources?,
                              live_latency_seconds?}   sources: {peer_id: verified bytes}
                     slots   {in_use}
                     leave   {track, rendition?}
                     ping    {}
                     introduce {track, rendition, peer_id, chunks?}   a holder a neighbour named
                     turn    {}        TURN credentials, for a peer that needs a relay

``ProtocolError`` is a refused frame, carrying the wire error code; the codec
raises it and the hub answers it with an ``error``.

A ``signal``'s ``data`` is relayed unread by the server (``data_json``). The
peers read it as one of the signaling payloads (the browser's convention,
docs/p2p.md): ``Description`` (``{"sdp": {"type", "sdp"}}``, an offer or an
answer), ``IceCandidate`` (``{"candidate": {...} | null}``, trickled) or
``Refusal`` (``{"reject": "full"}``, an offer refused); ``codec.signal_data``
and ``codec.parse_signal_data`` are their text.
'''

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .values import Candidate, ChunkSet, Json

__all__ = [
    "ProtocolError",
    "PeerMessage",
    "ServerMessage",
    "Have",
    "Want",
    "Signal",
    "Stats",
    "CANDIDATE_TYPES",
    "CONNECTION_OUTCOMES",
    "LEGACY_OUTCOMES",
    "Slots",
    "Leave",
    "Ping",
    "Introduce",
    "Turn",
    "Limits",
    "Welcome",
    "Peers",
    "SignalFrom",
    "Pong",
    "Error",
    "TurnServers",
    "Description",
    "IceCandidate",
    "Refusal",
    "SignalData",
    "type_of",
]


class ProtocolError(ValueError):
    """A frame refused; ``code`` is the wire error code and ``for_type`` the
    message type when it could be read."""

    def __init__(self, code: str, detail: str, for_type: str | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.for_type = for_type


# -- peer -> server ------------------------------------------------------------


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
    data_json: str  # ``data`` re-serialized (strict, compact JSON), ready to relay


# How a neighbour connection ended up: connected, by the candidate types of
# the selected pair as the reporting player saw them, "<local>/<remote>"
# ("unknown" for an end the browser did not say), or not at all (ICE failed;
# never opened within connectTimeout). The four bare types come from players
# older than the pairs (the pair's type only, "host" sometimes a default):
# accepted, counted as unknown.
CANDIDATE_TYPES = ("host", "srflx", "prflx", "relay", "unknown")
LEGACY_OUTCOMES = ("host", "srflx", "prflx", "relay")
CONNECTION_PAIRS = tuple(f"{local}/{remote}" for local in CANDIDATE_TYPES for remote in CANDIDATE_TYPES)
CONNECTION_OUTCOMES = (*LEGACY_OUTCOMES, *CONNECTION_PAIRS, "failed", "timeout")


@dataclass(frozen=True, slots=True)
class Stats:
    p2p_down_bytes: int = 0
    p2p_up_bytes: int = 0
    http_down_bytes: int = 0
    stalls: int = 0
    verify_failures: int = 0
    startup_seconds: float | None = None
    p2p_relay_down_bytes: int = 0
    # (outcome, count) pairs, counts > 0, in CONNECTION_OUTCOMES order.
    connections: tuple[tuple[str, int], ...] = ()
    neighbours: int | None = None
    # (peer id, verified bytes received from it since the last report), counts > 0,
    # in the order written: the evidence the tracker ranks holders by.
    sources: tuple[tuple[str, int], ...] = ()
    # A live listener's distance, in seconds, from the upstream's bytes to its
    # playback now (docs/live.md); None: not playing a live track.
    live_latency_seconds: float | None = None
    # The part of p2p_down_bytes that was live tracks' chunks (docs/live.md).
    p2p_live_down_bytes: int = 0


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


@dataclass(frozen=True, slots=True)
class Introduce:
    """Ask to be introduced to ``peer_id``, a holder of (track, rendition) that a
    neighbour named (the overlay, docs/wire.md): the server checks it."""

    track: str
    rendition: str
    peer_id: str
    chunks: tuple[int, ...] = ()  # the chunks needed, as in ``want``: the holder must hold one


@dataclass(frozen=True, slots=True)
class Turn:
    """Ask for TURN credentials: the peer needs a relay (docs/p2p.md). Answered
    with ``TurnServers``, or an ``error`` (``no_turn``, ``rate_limited``)."""


PeerMessage = Have | Want | Signal | Stats | Slots | Leave | Ping | Introduce | Turn


# -- server -> peer ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Limits:
    """``welcome``'s ``limits``, in wire order. The gateway sends them all; a
    client reading one without some key (None here) keeps its own default."""

    max_message_bytes: int | None = None
    messages_per_second: int | None = None
    burst: int | None = None
    max_tracks: int | None = None
    max_chunks: int | None = None
    max_ranges: int | None = None
    max_want: int | None = None
    max_candidates: int | None = None
    max_signal_bytes: int | None = None
    upload_slots: int | None = None
    stats_interval: int | None = None
    idle_timeout: int | None = None
    upload_kbps: int | None = None  # p2p.upload_kbps: each listener's upload cap (0: none)


@dataclass(frozen=True, slots=True)
class Welcome:
    peer_id: str
    ice_servers: tuple[dict[str, Json], ...]  # p2p.ice_servers, as configured
    limits: Limits
    # p2p.upload: "on", "opt-in" or "off" (docs/p2p.md, "Listeners' consent");
    # None: not said (an older gateway), read as "on". Any other string a newer
    # gateway may send is read by the peers as the strictest, "off".
    upload: str | None = None


@dataclass(frozen=True, slots=True)
class Peers:
    """Candidates: the answer to a ``want``, or with ``for_type="introduce"`` to an
    ``introduce`` of ``peer_id`` (that one candidate, or none: refused, and
    ``reason`` says why: ``not_a_holder`` or ``busy``)."""

    track: str
    rendition: str
    peers: tuple[Candidate, ...]
    for_type: str | None = None
    peer_id: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class SignalFrom:
    """A relayed ``signal``: ``sender`` is the real sender's id, whatever it wrote."""

    sender: str
    data_json: str


@dataclass(frozen=True, slots=True)
class Pong:
    pass


@dataclass(frozen=True, slots=True)
class Error:
    code: str
    detail: str
    for_type: str | None = None


@dataclass(frozen=True, slots=True)
class TurnServers:
    """The answer to ``turn``: ``ice_servers`` entries with credentials valid
    ``ttl_seconds`` from now; the peer asks again before they end."""

    ice_servers: tuple[dict[str, Json], ...]
    ttl_seconds: int


ServerMessage = Welcome | Peers | SignalFrom | Pong | Error | TurnServers


# -- signaling payloads (a signal's data, between peers) -------------------------


@dataclass(frozen=True, slots=True)
class Description:
    """An SDP offer or answer: ``{"sdp": {"type": type, "sdp": sdp}}``."""

    type: Literal["offer", "answer"]
    sdp: str


@dataclass(frozen=True, slots=True)
class IceCandidate:
    """A trickled ICE candidate: ``{"candidate": {"candidate", "sdpMid"?, "sdpMLineIndex"?}}``.
    An empty or missing ``candidate`` (or ``{"candidate": null}``) ends the candidates."""

    candidate: str | None
    sdp_mid: str | None = None
    sdp_mline_index: int | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    """An offer refused: ``{"reject": reason}`` (``full``: no room for another neighbour)."""

    reason: str


SignalData = Description | IceCandidate | Refusal


# -- the wire type of each -----------------------------------------------------


_TYPES: dict[type, str] = {
    Have: "have", Want: "want", Signal: "signal", Stats: "stats", Slots: "slots", Leave: "leave", Ping: "ping",
    Introduce: "introduce", Turn: "turn", TurnServers: "turn",
    Welcome: "welcome", Peers: "peers", SignalFrom: "signal", Pong: "pong", Error: "error",
}


def type_of(message: PeerMessage | ServerMessage) -> str:
    """The wire ``type`` of a message."""
    return _TYPES[type(message)]
