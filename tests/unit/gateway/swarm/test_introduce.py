"""The control socket's ``introduce`` (the neighbour overlay): the hub checks a
candidate a neighbour named against the tracker before introducing the pair."""

from __future__ import annotations

import itertools

from gateway.swarm.codec import parse, render
from gateway.swarm.hub import Send, SwarmHub
from gateway.swarm.messages import (
    Candidate,
    Error,
    Introduce,
    Peers,
    ProtocolError,
    Signal,
    SignalFrom,
    Slots,
)
from gateway.swarm.tracker import ChunkSet, Tracker

T, R = "t1", "r1"


def make_hub(upload_slots: int = 4) -> SwarmHub:
    counter = itertools.count(1)
    return SwarmHub(Tracker(upload_slots=upload_slots), new_id=lambda: f"peer{next(counter)}")


def opened(hub: SwarmHub) -> str:
    return hub.open(0.0)[0]


def holding(hub: SwarmHub, peer: str, chunks: list[int], complete: bool = False) -> None:
    hub.tracker.announce(peer, T, R, ChunkSet.of(chunks), 0.0, complete=complete)


def answer(hub: SwarmHub, peer: str, target: str, now: float = 1.0, track: str = T,
           chunks: tuple[int, ...] = ()) -> Peers:
    (out,) = hub.receive(peer, Introduce(track, R, target, chunks), now)
    assert isinstance(out, Send) and out.peer == peer and isinstance(out.message, Peers)
    return out.message


def test_a_connected_holder_is_introduced_and_may_then_be_signalled() -> None:
    hub = make_hub()
    asker, holder = opened(hub), opened(hub)
    holding(hub, holder, [0, 1, 2], complete=True)
    assert not hub.tracker.introduced(asker, holder)
    got = answer(hub, asker, holder, chunks=(1, 7))
    assert got == Peers(T, R, (Candidate(holder, (1, 7), True),), "introduce", holder)
    assert render(got) == (
        '{"type": "peers", "track": "t1", "rendition": "r1", "peers": [{"peer_id": "peer2", "chunks": [1, 7], '
        '"complete": true}], "for": "introduce", "peer_id": "peer2"}'
    )
    assert hub.tracker.introduced(asker, holder) and hub.tracker.introduced(holder, asker)
    assert hub.receive(asker, Signal(holder, '{"sdp":1}'), 1.1) == [Send(holder, SignalFrom(asker, '{"sdp":1}'))]


def test_refused_with_an_empty_answer_not_an_error() -> None:
    hub = make_hub(upload_slots=1)
    asker, holder, stranger, busy = opened(hub), opened(hub), opened(hub), opened(hub)
    holding(hub, holder, [0])
    holding(hub, busy, [0])
    hub.receive(busy, Slots(1), 0.5)  # no free upload slot
    refused = [
        answer(hub, asker, "nobody"),  # no such peer
        answer(hub, asker, stranger),  # connected, holds nothing
        answer(hub, asker, holder, track="t2"),  # holds another track
        answer(hub, asker, asker),  # oneself
        answer(hub, asker, busy),  # no slot free: want would not offer it either
        answer(hub, asker, holder, chunks=(5, 6)),  # none of the chunks needed
    ]
    assert [p.peers for p in refused] == [()] * 6
    assert [p.peer_id for p in refused] == ["nobody", stranger, holder, asker, busy, holder]
    assert [p.reason for p in refused] == ["not_a_holder"] * 4 + ["busy"] * 2
    assert answer(hub, asker, holder, chunks=(5, 0)).peers == (Candidate(holder, (0,), False),)
    hub.tracker.remove(asker)  # (introduced now: start the checks below afresh)
    hub.tracker.join(asker, 1.0)
    for other in (stranger, busy):
        assert not hub.tracker.introduced(asker, other)
    # refusals are answers: no strikes, however many (within the message rate)
    for i in range(60):
        answer(hub, asker, "nobody", now=2.0 + i * 0.1)
    assert asker in hub


def test_a_closing_or_departed_holder_is_not_introduced() -> None:
    hub = make_hub()
    asker, holder, gone = opened(hub), opened(hub), opened(hub)
    holding(hub, holder, [0])
    holding(hub, gone, [0])
    hub.close(gone, 0.5)
    hub.shutdown()  # every peer is closing now
    assert hub.receive(asker, Introduce(T, R, holder), 1.0) == []  # a closing asker is ignored
    hub2 = make_hub()
    a, h = opened(hub2), opened(hub2)
    holding(hub2, h, [0])
    hub2.close(h, 0.5)
    assert answer(hub2, a, h).peers == ()


def test_privacy_hook_applies() -> None:
    class Private(SwarmHub):
        def _introductions_allowed(self, peer: str, track: str, rendition: str) -> bool:
            return False

    hub = Private(Tracker(), new_id=iter(["a", "b"]).__next__)
    asker, holder = opened(hub), opened(hub)
    holding(hub, holder, [0])
    got = answer(hub, asker, holder)
    assert got.peers == () and got.reason == "busy"  # nothing said about who holds what
    assert not hub.tracker.introduced(asker, holder)


def test_bad_introduce_frames_are_protocol_errors() -> None:
    hub = make_hub()
    asker = opened(hub)
    for text in ('{"type":"introduce","track":"t1","rendition":"r1"}',
                 '{"type":"introduce","track":"t1","rendition":"r1","peer_id":"../x"}'):
        try:
            parse(text)
        except ProtocolError as exc:
            out = hub.receive(asker, exc, 1.0)
            assert out == [Send(asker, Error("bad_field", "peer_id: expected a peer id", "introduce"))]
        else:
            raise AssertionError(text)


def test_min_listeners_applies_to_introductions_as_to_wants() -> None:
    counter = itertools.count(1)
    hub = SwarmHub(Tracker(), new_id=lambda: f"peer{next(counter)}", min_listeners=3)
    asker, holder = opened(hub), opened(hub)
    holding(hub, holder, [0])
    got = answer(hub, asker, holder)  # two listeners of the track: under the minimum
    assert got.peers == () and got.reason == "busy"
    assert not hub.tracker.introduced(asker, holder)
    third = opened(hub)
    holding(hub, third, [0])
    assert answer(hub, asker, holder, now=2.0).peers == (Candidate(holder, (), False),)
    assert hub.tracker.introduced(asker, holder)
