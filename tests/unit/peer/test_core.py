"""peer/core.py, the Python twin of client/p2p.js, against the shared vectors.

tests/vectors/p2p/cases.json holds sequences of events (with ``now``) and the
effects ``client/p2p.js`` answers to each (tests/js/p2p-vectors.test.mjs runs
the same file); here ``peer.core.P2PCore`` must answer the same. The shared
constants are compared with both sides' defaults.

``P2PCore`` reads and writes typed control messages (``protocol.messages``):
a vector's control message is read with ``protocol.codec.parse_server``, and
a control effect is compared as the message the server reads
(``protocol.codec.parse``), the vector's and the core's alike.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import fields
from typing import Any, Literal

import pytest

from peer.core import (
    DEFAULT_P2P_SETTINGS,
    MAX_REPORT,
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
    camel,
)
from protocol import codec
from protocol.messages import (
    Description,
    Introduce,
    Limits,
    PeerMessage,
    Peers,
    ServerMessage,
    SignalFrom,
    Want,
    Welcome,
    type_of,
)
from protocol.values import Candidate
from protocol.wire import Cancel as WireCancel
from protocol.wire import Choke as WireChoke
from protocol.wire import Have, Holders, Lookup, Piece, Request, Unknown, decode, encode
from tests.support.paths import TESTS

VECTORS = TESTS / "vectors" / "p2p"
CONSTANTS = json.loads((VECTORS / "constants.json").read_text())
CASES = json.loads((VECTORS / "cases.json").read_text())["cases"]


def step_bytes(step: dict[str, Any]) -> bytes | None:
    if "data_hex" in step:
        return None if step["data_hex"] is None else bytes.fromhex(step["data_hex"])
    return bytes(i % 251 for i in range(step["data_pattern"]))


def bytes_json(data: bytes) -> Any:
    if len(data) <= 64:
        return data.hex()
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def frame_of(step: dict[str, Any]) -> bytes:
    if "hex" in step:
        return bytes.fromhex(step["hex"])
    m = step["message"]
    kind = m["type"]
    if kind == "have":
        return encode(Have(tuple((a, b) for a, b in m["ranges"])))
    if kind == "piece":
        data = step_bytes(m)
        assert data is not None
        return encode(Piece(m["index"], m["offset"], m["total"], data))
    if kind == "lookup":
        return encode(Lookup(m["track"], m["rendition"]))
    if kind == "holders":
        return encode(Holders(m["track"], m["rendition"], tuple(m["peers"])))
    return encode({"request": Request, "cancel": WireCancel, "choke": WireChoke}[kind](m["index"]))


def server_message(msg: dict[str, Any]) -> ServerMessage:
    """A vector's server -> peer message, read as the peer's shell reads it."""
    return codec.parse_server(json.dumps(msg))


def as_read(message: PeerMessage) -> dict[str, Any]:
    """A peer -> server message as the server reads it: its canonical frame."""
    body: dict[str, Any] = json.loads(codec.encode(message))
    return body


def frame_json(frame: bytes) -> dict[str, Any]:
    m = decode(frame)
    if isinstance(m, Lookup):
        return {"type": "lookup", "track": m.track, "rendition": m.rendition}
    if isinstance(m, Holders):
        return {"type": "holders", "track": m.track, "rendition": m.rendition, "peers": list(m.peers)}
    if isinstance(m, Have):
        return {"type": "have", "ranges": [list(r) for r in m.ranges]}
    if isinstance(m, Piece):
        # bytes as the vectors write them: hex up to 64 bytes, else size and SHA-256
        return {"type": "piece", "index": m.index, "offset": m.offset, "total": m.total, "data": bytes_json(m.data)}
    if isinstance(m, Unknown):
        return {"type": "unknown", "code": m.kind}
    name = {Request: "request", WireCancel: "cancel", WireChoke: "choke"}[type(m)]
    return {"type": name, "index": m.index}


def effect_json(e: Effect) -> dict[str, Any]:
    """An effect as in the vectors: the browser's object, frames decoded."""
    if isinstance(e, Control):
        return {"kind": "control", "msg": as_read(e.msg)}
    if isinstance(e, Open):
        return {"kind": "open", "peer": e.peer, "role": e.role}
    if isinstance(e, Rtc):
        return {"kind": "rtc", "peer": e.peer, "data": json.loads(codec.signal_data(e.data))}
    if isinstance(e, Close):
        return {"kind": "close", "peer": e.peer}
    if isinstance(e, Send):
        return {"kind": "send", "peer": e.peer, "frame": frame_json(e.frame)}
    if isinstance(e, Serve):
        return {"kind": "serve", "peer": e.peer, "index": e.index}
    if isinstance(e, Deliver):
        return {"kind": "deliver", "peer": e.peer, "index": e.index, "data": bytes_json(e.data)}
    if isinstance(e, Reject):
        return {"kind": "reject", "peer": e.peer, "index": e.index, "reason": e.reason}
    if isinstance(e, PeerHave):
        return {"kind": "peerHave", "peer": e.peer, "have": list(e.have)}
    assert isinstance(e, PeerGone)
    return {"kind": "peerGone", "peer": e.peer}


def as_json(effects: list[Effect]) -> list[dict[str, Any]]:
    return [effect_json(e) for e in effects]


def expected(step: dict[str, Any]) -> Any:
    """A step's expectation, its control messages as the server reads them."""
    expect = step["expect"]
    if not isinstance(expect, list):
        return expect
    return [{**e, "msg": as_read(codec.parse(json.dumps(e["msg"])))} if e["kind"] == "control" else e for e in expect]


def run_step(core: P2PCore, step: dict[str, Any]) -> Any:
    now = step.get("now", 0)
    on = step["on"]
    if on == "control":
        return as_json(core.on_control(server_message(step["msg"]), now))
    if on == "controlClosed":
        return as_json(core.control_closed())
    if on == "startSession":
        s = step["session"]
        return as_json(core.start_session(s["track"], s["rendition"], s["chunks"], now,
                                          complete=s.get("complete", False), held=s.get("held", ())))
    if on == "updateManifest":
        m = step["manifest"]
        return as_json(core.update_manifest(m["chunks"], now, complete=m.get("complete", False)))
    if on == "stopSession":
        return as_json(core.stop_session(now))
    if on == "chunkAdded":
        return as_json(core.chunk_added(step["index"], now))
    if on == "chunkDropped":
        return as_json(core.chunk_dropped(step["index"]))
    if on == "request":
        r = core.request(step["peer"], step["index"], now)
        return None if r is None else as_json(r)
    if on == "cancel":
        return as_json(core.cancel(step["peer"], step["index"]))
    if on == "verifyFailed":
        return as_json(core.verify_failed(step["peer"], now))
    if on == "noteStartup":
        return as_json(core.note_startup(step["seconds"]))
    if on == "channelOpen":
        return as_json(core.channel_open(step["peer"], now))
    if on == "channelClosed":
        return as_json(core.channel_closed(step["peer"], now))
    if on == "frame":
        return as_json(core.on_frame(step["peer"], frame_of(step), now))
    if on == "served":
        return as_json(core.served(step["peer"], step["index"], step_bytes(step), now))
    if on == "tick":
        return as_json(core.tick(now, step.get("totals", {})))
    if on == "flushStats":
        return as_json(core.flush_stats(now, step.get("totals", {})))
    if on == "waitUntil":
        until = core.wait_until(now)
        return until if math.isfinite(until) else None
    if on == "lookup":
        return as_json(core.lookup(step["target"]["track"], step["target"]["rendition"], now))
    if on == "setUpload":
        return as_json(core.set_upload(step["upload"], now))
    if on == "info":
        return core.info()
    raise AssertionError(f"unknown step {on}")


def test_defaults_are_the_shared_constants() -> None:
    assert DEFAULT_P2P_SETTINGS.as_js() == CONSTANTS["settings"]
    assert MAX_REPORT == CONSTANTS["max_report"]
    assert [camel(f.name) for f in fields(P2PSettings)] == list(CONSTANTS["settings"])


def test_settings_by_their_browser_names() -> None:
    assert P2PSettings.from_js({"maxNeighbours": 3}).max_neighbours == 3
    with pytest.raises(TypeError):
        P2PSettings.from_js({"maxNeighbour": 3})


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["name"])
def test_vector(case: dict[str, Any]) -> None:
    core = P2PCore(P2PSettings.from_js(case["settings"]))
    for i, step in enumerate(case["steps"]):
        assert run_step(core, step) == expected(step), f"step {i} ({step['on']} at {step.get('now')})"


# ---- the overlay's want rules, in a tiny world (as tests/js/p2p.test.mjs) -----------------

TRACK, REND = "trk", "r1"


def _welcome(peer: str) -> Welcome:
    return Welcome(peer, (), Limits(upload_slots=4, stats_interval=5))


def _signal(sender: str, kind: Literal["offer", "answer"], sdp: str) -> SignalFrom:
    return SignalFrom(sender, codec.signal_data(Description(kind, sdp)))


class World:
    """Cores joined by a tracker that answers ``want`` and ``introduce`` (anyone holding
    one of the chunks), verbatim signaling, and channels that open as soon as an offer
    is answered."""

    def __init__(self, settings: P2PSettings) -> None:
        self.settings = settings
        self.cores: dict[str, P2PCore] = {}
        self.now = 0.0
        self.sent: list[tuple[str, PeerMessage, float]] = []  # control messages, in order

    def add(self, peer: str, held: list[int], n: int) -> P2PCore:
        core = self.cores[peer] = P2PCore(self.settings)
        self.run(peer, core.start_session(TRACK, REND, range(n), self.now, complete=True, held=held))
        self.run(peer, core.on_control(_welcome(peer), self.now))
        return core

    def run(self, peer: str, effects: list[Effect]) -> None:
        core = self.cores[peer]
        for e in effects:
            if isinstance(e, Control):
                self.control(peer, e.msg)
            elif isinstance(e, Open) and e.role == "offerer":
                self.run(e.peer, self.cores[e.peer].on_control(_signal(peer, "offer", "o"), self.now))
            elif isinstance(e, Rtc) and isinstance(e.data, Description) and e.data.type == "offer":
                self.run(e.peer, self.cores[e.peer].on_control(_signal(peer, "answer", "a"), self.now))
            elif isinstance(e, Rtc) and isinstance(e.data, Description) and e.data.type == "answer":
                # both ends open before either greets the other
                mine, theirs = core.channel_open(e.peer, self.now), self.cores[e.peer].channel_open(peer, self.now)
                self.run(peer, mine)
                self.run(e.peer, theirs)
            elif isinstance(e, Send):
                self.run(e.peer, self.cores[e.peer].on_frame(peer, e.frame, self.now))

    def control(self, peer: str, msg: PeerMessage) -> None:
        self.sent.append((peer, msg, self.now))
        if not isinstance(msg, (Want, Introduce)):
            return
        chunks = msg.chunks

        def holds(other: str) -> bool:
            s = self.cores[other].session if other in self.cores and other != peer else None
            return s is not None and any(i in s.held for i in chunks)

        if isinstance(msg, Want):
            listed = tuple(Candidate(q, (), False) for q in self.cores if holds(q))
            self.run(peer, self.cores[peer].on_control(Peers(msg.track, msg.rendition, listed), self.now))
        else:
            q = msg.peer_id
            answer = Peers(msg.track, msg.rendition, (), "introduce", q, "not_a_holder")
            if holds(q):
                answer = Peers(msg.track, msg.rendition, (Candidate(q, (), False),), "introduce", q)
            self.run(peer, self.cores[peer].on_control(answer, self.now))

    def run_until(self, until: float, step: float = 0.5) -> None:
        while self.now + step <= until:
            self.now += step
            for peer, core in self.cores.items():
                self.run(peer, core.tick(self.now))

    def times(self, kind: str) -> dict[str, list[float]]:
        at: dict[str, list[float]] = {}
        for peer, msg, now in self.sent:
            if type_of(msg) == kind:
                at.setdefault(peer, []).append(now)
        return at


def test_a_small_swarm_that_knows_itself_leaves_the_tracker_alone_but_for_max_want_interval() -> None:
    # four listeners, fewer than want_neighbours: each keeps missing chunks and
    # places, the case where a tracker-only peer keeps wanting
    wants = {}
    for overlay in (False, True):
        w = World(P2PSettings(overlay=overlay))
        for i, peer in enumerate("abcd"):
            w.add(peer, [i], 10)
        assert all(len(c.neighbours) == 3 for c in w.cores.values())
        w.run_until(120)
        wants[overlay] = w.times("want")
        if overlay:
            assert w.times("introduce") == {}  # everybody known is a neighbour already
    # tracker only: at the start, then after every back-off step (1.5, 3, ... 30 s)
    assert wants[False]["d"] == [0, 1.5, 4.5, 10.5, 22.5, 46.5, 76.5, 106.5]
    # the overlay: every round is answered by every neighbour naming nobody new,
    # so the want backs off instead; it goes out once the interval is at its cap
    assert wants[True]["d"] == [0, 76.5, 106.5]
    assert all(len(wants[True][p]) == 3 for p in "abc"), wants[True]


def _neighbour(core: P2PCore, peer: str, ranges: list[tuple[int, int]], now: float) -> None:
    core.on_control(Peers(TRACK, REND, (Candidate(peer, (), False),)), now)
    core.channel_open(peer, now)
    core.on_frame(peer, encode(Have(tuple(ranges))), now)


def _controls(effects: list[Effect], kind: str) -> list[PeerMessage]:
    return [e.msg for e in effects if isinstance(e, Control) and type_of(e.msg) == kind]


def test_a_session_start_with_known_candidates_waits_for_their_introductions() -> None:
    for refused in (False, True):
        core = P2PCore()
        core.on_control(_welcome("me"), 0)
        core.start_session(TRACK, REND, range(4), 0, complete=True, held=[0])
        _neighbour(core, "p", [(0, 3)], 0)
        core.lookup("next", REND, 1)
        core.on_frame("p", encode(Holders("next", REND, ("x",))), 1.1)
        start = core.start_session("next", REND, range(3), 2, complete=True)
        assert [m.peer_id for m in _controls(start, "introduce") if isinstance(m, Introduce)] == ["x"]
        assert _controls(start, "want") == []  # not beside the introduction
        if refused:  # nobody: the want goes out with the last answer
            out = core.on_control(Peers("next", REND, (), "introduce", "x", "not_a_holder"), 2.05)
            assert len(_controls(out, "want")) == 1
        else:  # x dialled: the round found somebody, no want
            core.on_control(Peers("next", REND, (Candidate("x", (0,)),), "introduce", "x"), 2.05)
            assert "x" in core.neighbours
            assert _controls(core.tick(2.6), "want") == []


def test_an_exhausted_round_backs_off_only_when_every_neighbour_asked_answered() -> None:
    core = P2PCore(P2PSettings(want_interval=2))
    core.on_control(_welcome("me"), 0)
    core.start_session(TRACK, REND, range(10), 0, complete=True)
    _neighbour(core, "p", [(0, 1)], 0)
    _neighbour(core, "q", [(2, 3)], 0)
    assert [e.peer for e in core.tick(2) if e.kind == "send"] == ["p", "q"]  # LOOKUPs
    # p answers, q stays silent: after lookup_wait the tracker is asked
    core.on_frame("p", encode(Holders(TRACK, REND, ("q",))), 2.1)
    assert len(_controls(core.tick(2.6), "want")) == 1
    core.on_control(Peers(TRACK, REND, ()), 2.7)  # nobody new: 4 s
    # both answer the next round naming nobody new: no want, the interval doubles
    assert [e.peer for e in core.tick(7.1) if e.kind == "send"] == ["p", "q"]
    core.on_frame("p", encode(Holders(TRACK, REND, ("q",))), 7.2)
    assert core.on_frame("q", encode(Holders(TRACK, REND, ("p",))), 7.3) == []
    assert core.want.interval == 8 and core.want.next_at == 15.3
