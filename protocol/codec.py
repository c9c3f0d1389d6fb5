'''The control WebSocket's frames: text to messages and back, both ways.

Theory of operation
-------------------

The typed values are ``messages.py``; this module is their text form, and
does no I/O. Peer → server: ``parse(text)`` turns one text frame into a
``PeerMessage`` or raises ``ProtocolError`` carrying the wire error code;
``encode(message)`` is the canonical frame for one (what a client should
send). Server → peer: ``render(message)`` is the exact text frame;
``parse_server(text)`` reads one back (for the Python peer and the tests).
A signal's ``data`` (relayed unread by the server) is read by
``parse_signal_data`` and written by ``signal_data``, for the peers.
``tests/vectors/control/messages.json`` pins both directions, field by
field, for this module and for ``client/control-protocol.js``. The wire
format, field by field, is docs/websocket.md.

Unknown extra fields are ignored; ``track`` and ``rendition`` are 1..128
characters of ``A-Z a-z 0-9 . _ ~ : -``; chunk indices are integers in
``0 .. MAX_INDEX`` (a u32: a live track's indices grow for as long as it is on
the air); a list holds at most ``MAX_CHUNKS`` of them (``MAX_WANT`` in a
``want`` or ``introduce``); ranges ``[first, last]`` are inclusive.

Error codes raised here: ``bad_json`` (not JSON), ``not_an_object``,
``unknown_type``, ``bad_field``, ``bad_stats``. A stats report with any value
that is not a number of the right kind (booleans are not numbers here),
negative, NaN or infinite, or absurd (``> MAX_REPORT_BYTES`` bytes,
``> MAX_REPORT_STALLS`` stalls or verify failures, ``startup_seconds >
MAX_STARTUP_SECONDS``) is refused whole with ``bad_stats``. ``connections``
(neighbour connection outcomes since the last report) is an object whose keys
are among ``CONNECTION_OUTCOMES`` (connected, by the selected pair's candidate
types ``<local>/<remote>``, each ``host`` / ``srflx`` / ``prflx`` / ``relay`` /
``unknown``; ``failed``; ``timeout``; older players' bare types), each a count; another key
or value is ``bad_stats`` too. ``p2p_relay_down_bytes`` is the part of
``p2p_down_bytes`` that came over TURN-relayed connections (docs/p2p.md),
``p2p_live_down_bytes`` the part that was live tracks' chunks (docs/live.md);
``neighbours`` the number of open neighbour connections now (absent: not
said); ``sources`` an object of at most ``MAX_SOURCES`` peer ids, each with
the verified bytes received from that neighbour since the last report (its
values counted like the byte counts; another key or value is ``bad_stats``);
``live_latency_seconds`` a live listener's distance from the upstream's bytes
to its playback (a number in ``0 .. MAX_LIVE_LATENCY_SECONDS`` or null, absent:
not playing live).
``turn`` (peer → server) has no field; the server's ``turn`` carries
``ice_servers`` (a list of objects) and ``ttl_seconds``.
'''

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import TypeGuard, TypeVar

from .limits import (
    MAX_CHUNKS,
    MAX_INDEX,
    MAX_LIVE_LATENCY_SECONDS,
    MAX_REPORT_BYTES,
    MAX_REPORT_STALLS,
    MAX_SIGNAL_BYTES,
    MAX_SLOTS_IN_USE,
    MAX_SOURCES,
    MAX_STARTUP_SECONDS,
    MAX_WANT,
)
from .messages import (
    CONNECTION_OUTCOMES,
    Description,
    Error,
    Have,
    IceCandidate,
    Introduce,
    Leave,
    Limits,
    PeerMessage,
    Peers,
    Ping,
    Pong,
    ProtocolError,
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
from .values import BadChunks, Candidate, ChunkSet

T = TypeVar("T")

__all__ = ["encode", "parse", "parse_server", "parse_signal_data", "render", "signal_data"]

_NAME = re.compile(r"[A-Za-z0-9._~:-]{1,128}")
_PEER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


# -- parse: peer -> server -----------------------------------------------------


def _is_int(value: object) -> TypeGuard[int]:
    # bool is an int subclass in Python; on the wire true/false are not numbers.
    return isinstance(value, int) and not isinstance(value, bool)


def _name(body: dict[str, object], key: str, kind: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ProtocolError("bad_field", f"{key}: expected 1..128 characters of A-Z a-z 0-9 . _ ~ : -", kind)
    return value


def _index_list(value: object, key: str, kind: str, max_len: int) -> list[int]:
    if not isinstance(value, list):
        raise ProtocolError("bad_field", f"{key}: expected a list of chunk indices", kind)
    if len(value) > max_len:
        raise ProtocolError("bad_field", f"{key}: at most {max_len} entries", kind)
    for i in value:
        if not _is_int(i) or not 0 <= i <= MAX_INDEX:
            raise ProtocolError("bad_field", f"{key}: chunk indices are integers in 0..{MAX_INDEX}", kind)
    return value


def _parse_have(body: dict[str, object]) -> Have:
    track = _name(body, "track", "have")
    rendition = _name(body, "rendition", "have")
    chunks = _index_list(body.get("chunks", []), "chunks", "have", MAX_CHUNKS)
    ranges = body.get("ranges", [])
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


def _parse_want(body: dict[str, object]) -> Want:
    track = _name(body, "track", "want")
    rendition = _name(body, "rendition", "want")
    chunks = _index_list(body.get("chunks", []), "chunks", "want", MAX_WANT)
    return Want(track, rendition, tuple(chunks))


def _parse_signal(body: dict[str, object]) -> Signal:
    # A "from" the sender wrote is ignored: the relay writes the real one.
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
    "p2p_relay_down_bytes": MAX_REPORT_BYTES,
    "p2p_live_down_bytes": MAX_REPORT_BYTES,
}


def _parse_connections(value: object) -> tuple[tuple[str, int], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise ProtocolError("bad_stats", "connections: expected an object", "stats")
    for key, n in value.items():
        if key not in CONNECTION_OUTCOMES:
            raise ProtocolError("bad_stats", f"connections: {key[:40]!r} is not failed, timeout nor local/remote candidate types", "stats")
        if not _is_int(n) or not 0 <= n <= MAX_REPORT_STALLS:
            raise ProtocolError("bad_stats", f"connections.{key}: expected 0..{MAX_REPORT_STALLS}", "stats")
    return tuple((key, value[key]) for key in CONNECTION_OUTCOMES if value.get(key))


def _parse_stats(body: dict[str, object]) -> Stats:
    counts: dict[str, int] = {}
    for key, limit in _STAT_COUNTS.items():
        value = body.get(key, 0)
        if not _is_int(value):
            raise ProtocolError("bad_stats", f"{key}: expected an integer", "stats")
        if not 0 <= value <= limit:
            raise ProtocolError("bad_stats", f"{key}: expected 0..{limit}", "stats")
        counts[key] = value
    startup = _seconds(body, "startup_seconds", MAX_STARTUP_SECONDS)
    latency = _seconds(body, "live_latency_seconds", MAX_LIVE_LATENCY_SECONDS)
    connections = _parse_connections(body.get("connections"))
    neighbours = body.get("neighbours")
    if neighbours is not None and (not _is_int(neighbours) or not 0 <= neighbours <= MAX_REPORT_STALLS):
        raise ProtocolError("bad_stats", f"neighbours: expected 0..{MAX_REPORT_STALLS} or null", "stats")
    sources = _parse_sources(body.get("sources"))
    return Stats(startup_seconds=startup, connections=connections, neighbours=neighbours, sources=sources,
                 live_latency_seconds=latency, **counts)


def _seconds(body: dict[str, object], key: str, limit: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if not (_is_int(value) or isinstance(value, float)):
        raise ProtocolError("bad_stats", f"{key}: expected a number or null", "stats")
    # NaN fails both comparisons, so it is refused here as well.
    if not (math.isfinite(value) and 0 <= value <= limit):
        raise ProtocolError("bad_stats", f"{key}: expected 0..{limit:g}", "stats")
    return float(value)


def _number(value: float | None) -> float | int | None:
    # JSON has one number type: 600.0 is written 600, as JavaScript writes it.
    return int(value) if value is not None and value.is_integer() else value


def _parse_sources(value: object) -> tuple[tuple[str, int], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict) or len(value) > MAX_SOURCES:
        raise ProtocolError("bad_stats", f"sources: expected an object of at most {MAX_SOURCES} peer ids", "stats")
    out: list[tuple[str, int]] = []
    for peer_id, n in value.items():
        if not _PEER_ID.fullmatch(peer_id):
            raise ProtocolError("bad_stats", "sources: keys are peer ids", "stats")
        if not _is_int(n) or not 0 <= n <= MAX_REPORT_BYTES:
            raise ProtocolError("bad_stats", f"sources.{peer_id}: expected 0..{MAX_REPORT_BYTES}", "stats")
        if n:
            out.append((peer_id, n))
    return tuple(out)


def _parse_slots(body: dict[str, object]) -> Slots:
    in_use = body.get("in_use")
    if not _is_int(in_use) or not 0 <= in_use <= MAX_SLOTS_IN_USE:
        raise ProtocolError("bad_field", f"in_use: expected an integer in 0..{MAX_SLOTS_IN_USE}", "slots")
    return Slots(in_use)


def _parse_leave(body: dict[str, object]) -> Leave:
    track = _name(body, "track", "leave")
    rendition = None if body.get("rendition") is None else _name(body, "rendition", "leave")
    return Leave(track, rendition)


def _parse_ping(body: dict[str, object]) -> Ping:
    return Ping()


def _parse_introduce(body: dict[str, object]) -> Introduce:
    track = _name(body, "track", "introduce")
    rendition = _name(body, "rendition", "introduce")
    peer_id = body.get("peer_id")
    if not isinstance(peer_id, str) or not _PEER_ID.fullmatch(peer_id):
        raise ProtocolError("bad_field", "peer_id: expected a peer id", "introduce")
    chunks = _index_list(body.get("chunks", []), "chunks", "introduce", MAX_WANT)
    return Introduce(track, rendition, peer_id, tuple(chunks))


_PARSERS: dict[str, Callable[[dict[str, object]], PeerMessage]] = {
    "have": _parse_have,
    "want": _parse_want,
    "signal": _parse_signal,
    "stats": _parse_stats,
    "slots": _parse_slots,
    "leave": _parse_leave,
    "ping": _parse_ping,
    "introduce": _parse_introduce,
    "turn": lambda body: Turn(),
}


def _object(text: str) -> dict[str, object]:
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        # RecursionError: "[[[[..." nested deeper than the decoder's stack.
        raise ProtocolError("bad_json", "the message is not JSON") from None
    if not isinstance(body, dict):
        raise ProtocolError("not_an_object", "a message is a JSON object with a \"type\"")
    return body


def _dispatch(text: str, parsers: Mapping[str, Callable[[dict[str, object]], T]]) -> T:
    """The frame's object handed to the parser of its ``type``."""
    body = _object(text)
    kind = body.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("bad_field", "type: expected a string")
    parser = parsers.get(kind)
    if parser is None:
        raise ProtocolError("unknown_type", f"unknown message type {kind[:40]!r}")
    return parser(body)


def parse(text: str) -> PeerMessage:
    """One peer → server text frame to a message; raises ``ProtocolError``."""
    return _dispatch(text, _PARSERS)


def _compact(body: dict[str, object]) -> str:
    return json.dumps(body, separators=(",", ":"), allow_nan=False)


def encode(message: PeerMessage) -> str:
    """The canonical peer → server frame for ``message`` (compact JSON, every
    field spelled out); ``parse(encode(m)) == m``."""
    match message:
        case Have():
            return _compact({"type": "have", "track": message.track, "rendition": message.rendition,
                             "ranges": message.chunks.ranges(), "complete": message.complete,
                             "replace": message.replace})
        case Want():
            return _compact({"type": "want", "track": message.track, "rendition": message.rendition,
                             "chunks": list(message.chunks)})
        case Signal():
            return f'{{"type":"signal","to":{json.dumps(message.to)},"data":{message.data_json}}}'
        case Stats():
            # neighbours and live_latency_seconds: written only when known (null
            # and absent mean the same); sources and live bytes only when there are some.
            known: dict[str, object] = {} if message.neighbours is None else {"neighbours": message.neighbours}
            if message.sources:
                known["sources"] = dict(message.sources)
            if message.live_latency_seconds is not None:
                known["live_latency_seconds"] = _number(message.live_latency_seconds)
            if message.p2p_live_down_bytes:
                known["p2p_live_down_bytes"] = message.p2p_live_down_bytes
            return _compact({"type": "stats", "p2p_down_bytes": message.p2p_down_bytes,
                             "p2p_up_bytes": message.p2p_up_bytes, "http_down_bytes": message.http_down_bytes,
                             "stalls": message.stalls, "startup_seconds": _number(message.startup_seconds),
                             "verify_failures": message.verify_failures,
                             "p2p_relay_down_bytes": message.p2p_relay_down_bytes,
                             "connections": dict(message.connections), **known})
        case Slots():
            return _compact({"type": "slots", "in_use": message.in_use})
        case Leave():
            body: dict[str, object] = {"type": "leave", "track": message.track}
            if message.rendition is not None:
                body["rendition"] = message.rendition
            return _compact(body)
        case Ping():
            return '{"type":"ping"}'
        case Introduce():
            return _compact({"type": "introduce", "track": message.track, "rendition": message.rendition,
                             "peer_id": message.peer_id, "chunks": list(message.chunks)})
        case Turn():
            return '{"type":"turn"}'


# -- render: server -> peer ----------------------------------------------------


def render(message: ServerMessage) -> str:
    """The exact text frame the server sends for ``message``.

    The separators are those the gateway has always sent: ``json.dumps``'s
    defaults for welcome, peers and error; compact for pong and the relayed
    signal, whose ``data`` is passed through as the sender's re-serialized JSON.
    """
    match message:
        case Welcome():
            limits = {f.name: v for f in fields(message.limits) if (v := getattr(message.limits, f.name)) is not None}
            welcome: dict[str, object] = {"type": "welcome", "peer_id": message.peer_id,
                                          "ice_servers": list(message.ice_servers), "limits": limits}
            if message.upload is not None:
                welcome["upload"] = message.upload
            return json.dumps(welcome)
        case Peers():
            answer: dict[str, object] = {
                "type": "peers", "track": message.track, "rendition": message.rendition,
                "peers": [{"peer_id": c.peer_id, "chunks": list(c.chunks), "complete": c.complete}
                          for c in message.peers],
            }
            if message.for_type is not None:
                answer["for"] = message.for_type
            if message.peer_id is not None:
                answer["peer_id"] = message.peer_id
            if message.reason is not None:
                answer["reason"] = message.reason
            return json.dumps(answer)
        case SignalFrom():
            return f'{{"type":"signal","from":{json.dumps(message.sender)},"data":{message.data_json}}}'
        case Pong():
            return '{"type":"pong"}'
        case Error():
            body = {"type": "error", "error": message.code, "detail": message.detail}
            if message.for_type is not None:
                body["for"] = message.for_type
            return json.dumps(body)
        case TurnServers():
            return json.dumps({"type": "turn", "ice_servers": list(message.ice_servers),
                               "ttl_seconds": message.ttl_seconds})


# -- parse_server: server -> peer (the Python peer's side) ---------------------


def _str(body: dict[str, object], key: str, kind: str) -> str:
    value = body.get(key)
    if not isinstance(value, str):
        raise ProtocolError("bad_field", f"{key}: expected a string", kind)
    return value


def _parse_welcome(body: dict[str, object]) -> Welcome:
    peer_id = _str(body, "peer_id", "welcome")
    ice = body.get("ice_servers")
    if not isinstance(ice, list) or not all(isinstance(s, dict) for s in ice):
        raise ProtocolError("bad_field", "ice_servers: expected a list of objects", "welcome")
    raw = body.get("limits")
    if not isinstance(raw, dict):
        raise ProtocolError("bad_field", "limits: expected an object", "welcome")
    values: dict[str, int] = {}
    for f in fields(Limits):
        if f.name not in raw:
            continue
        value = raw[f.name]
        if not _is_int(value) or value < 0:
            raise ProtocolError("bad_field", f"limits.{f.name}: expected an integer", "welcome")
        values[f.name] = value
    upload = body.get("upload")
    if upload is not None and not isinstance(upload, str):
        raise ProtocolError("bad_field", "upload: expected a string", "welcome")
    return Welcome(peer_id, tuple(ice), Limits(**values), upload)


def _parse_peers(body: dict[str, object]) -> Peers:
    track = _str(body, "track", "peers")
    rendition = _str(body, "rendition", "peers")
    entries = body.get("peers")
    if not isinstance(entries, list):
        raise ProtocolError("bad_field", "peers: expected a list", "peers")
    found: list[Candidate] = []
    for e in entries:
        if not (isinstance(e, dict) and isinstance(e.get("peer_id"), str)
                and isinstance(e.get("chunks"), list) and all(_is_int(i) for i in e["chunks"])
                and isinstance(e.get("complete"), bool)):
            raise ProtocolError("bad_field", "peers: expected {peer_id, chunks, complete} entries", "peers")
        found.append(Candidate(e["peer_id"], tuple(e["chunks"]), e["complete"]))
    extra = [body.get("for"), body.get("peer_id"), body.get("reason")]
    strings = [v for v in extra if v is None or isinstance(v, str)]
    if len(strings) != len(extra):
        raise ProtocolError("bad_field", "for, peer_id, reason: expected strings", "peers")
    return Peers(track, rendition, tuple(found), *strings)


def _parse_signal_from(body: dict[str, object]) -> SignalFrom:
    sender = _str(body, "from", "signal")
    data = body.get("data")
    if not isinstance(data, dict):
        raise ProtocolError("bad_field", "data: expected an object", "signal")
    return SignalFrom(sender, _compact(data))


def _parse_error(body: dict[str, object]) -> Error:
    for_type = body.get("for")
    if for_type is not None and not isinstance(for_type, str):
        raise ProtocolError("bad_field", "for: expected a string", "error")
    return Error(_str(body, "error", "error"), _str(body, "detail", "error"), for_type)


def _parse_turn_servers(body: dict[str, object]) -> TurnServers:
    ice = body.get("ice_servers")
    if not isinstance(ice, list) or not all(isinstance(s, dict) for s in ice):
        raise ProtocolError("bad_field", "ice_servers: expected a list of objects", "turn")
    ttl = body.get("ttl_seconds")
    if not _is_int(ttl) or ttl <= 0:
        raise ProtocolError("bad_field", "ttl_seconds: expected a positive integer", "turn")
    return TurnServers(tuple(ice), ttl)


_SERVER_PARSERS: dict[str, Callable[[dict[str, object]], ServerMessage]] = {
    "welcome": _parse_welcome,
    "peers": _parse_peers,
    "signal": _parse_signal_from,
    "pong": lambda body: Pong(),
    "error": _parse_error,
    "turn": _parse_turn_servers,
}


def parse_server(text: str) -> ServerMessage:
    """One server → peer text frame to a message; raises ``ProtocolError``
    (a client ignores such a frame: a newer server may send more)."""
    return _dispatch(text, _SERVER_PARSERS)


# -- a signal's data: the peers' signaling payloads ------------------------------


def _parse_candidate(raw: object) -> IceCandidate:
    if not isinstance(raw, dict):
        return IceCandidate(None)  # null (or nonsense): the end of candidates
    text, mid, line = raw.get("candidate"), raw.get("sdpMid"), raw.get("sdpMLineIndex")
    return IceCandidate(
        text if isinstance(text, str) else None,
        mid if isinstance(mid, str) else None,
        line if _is_int(line) else None,
    )


def parse_signal_data(data_json: str) -> SignalData | None:
    """A signal's ``data`` (the JSON object ``SignalFrom.data_json``) as a signaling
    payload; None for one a peer does not know (ignored)."""
    try:
        data = json.loads(data_json)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    reject = data.get("reject")
    if reject:
        return Refusal(reject if isinstance(reject, str) else "")
    sdp = data.get("sdp")
    if isinstance(sdp, dict):
        kind, text = sdp.get("type"), sdp.get("sdp")
        if kind in ("offer", "answer") and isinstance(text, str):
            return Description("offer" if kind == "offer" else "answer", text)
        return None
    if "candidate" in data:
        return _parse_candidate(data["candidate"])
    return None


def signal_data(data: SignalData) -> str:
    """A signaling payload as a signal's ``data`` (compact JSON)."""
    match data:
        case Description():
            return _compact({"sdp": {"type": data.type, "sdp": data.sdp}})
        case IceCandidate():
            if data.candidate is None and data.sdp_mid is None and data.sdp_mline_index is None:
                return '{"candidate":null}'
            body: dict[str, object] = {"candidate": data.candidate}
            if data.sdp_mid is not None:
                body["sdpMid"] = data.sdp_mid
            if data.sdp_mline_index is not None:
                body["sdpMLineIndex"] = data.sdp_mline_index
            return _compact({"candidate": body})
        case Refusal():
            return _compact({"reject": data.reason})
