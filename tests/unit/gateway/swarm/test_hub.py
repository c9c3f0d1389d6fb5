"""SwarmHub, driven synchronously: events in, outputs out, no socket, exact time."""

from __future__ import annotations

import itertools

from gateway.swarm.hub import (
    PEER_BYTES,
    PEERS_CONNECTED,
    STALLS,
    STARTUP_SECONDS,
    VERIFY_FAILURES,
    Close,
    Count,
    Observe,
    Output,
    Send,
    SwarmHub,
)
from gateway.swarm.tracker import Tracker
from protocol.codec import parse
from protocol.limits import BURST, IDLE_TIMEOUT, STATS_BURST, STRIKES
from protocol.messages import (
    Error,
    Have,
    Leave,
    Peers,
    Ping,
    Pong,
    ProtocolError,
    Signal,
    SignalFrom,
    Slots,
    Stats,
    Want,
    Welcome,
)
from protocol.values import Candidate, ChunkSet

# Bytes no source accounts for (these reports name none).
UNKNOWN = (("scope", "unknown"),)

T, R = "t1", "r1"


def make_hub(upload_slots: int = 4) -> SwarmHub:
    counter = itertools.count(1)
    return SwarmHub(
        Tracker(upload_slots=upload_slots),
        new_id=lambda: f"peer{next(counter)}",
        ice_servers=[{"urls": "stun:127.0.0.1:3478"}],
    )


def opened(hub: SwarmHub, now: float = 0.0) -> str:
    peer, _ = hub.open(now)
    return peer


def have(chunks: list[int]) -> Have:
    return Have(T, R, ChunkSet.of(chunks))


def errors(outputs: list[Output]) -> list[str]:
    return [o.message.code for o in outputs if isinstance(o, Send) and isinstance(o.message, Error)]


def test_open_welcomes_and_counts() -> None:
    hub = make_hub(upload_slots=3)
    peer, out = hub.open(0.0)
    assert peer == "peer1" and peer in hub and peer in hub.tracker
    assert out[0] == Count(PEERS_CONNECTED, (), 1)
    send = out[1]
    assert isinstance(send, Send) and send.peer == peer and isinstance(send.message, Welcome)
    assert send.message.peer_id == peer
    assert send.message.ice_servers == ({"urls": "stun:127.0.0.1:3478"},)
    assert send.message.limits.upload_slots == 3 and send.message.limits.max_message_bytes == 65536
    assert len(out) == 2


def test_open_refuses_an_id_in_use() -> None:
    hub = SwarmHub(Tracker(), new_id=lambda: "same")
    hub.open(0.0)
    try:
        hub.open(0.0)
    except RuntimeError:
        pass
    else:
        raise AssertionError("a repeated id was accepted")
    assert len(hub) == 1


def test_have_want_peers() -> None:
    hub = make_hub()
    early, late, asker = opened(hub), opened(hub), opened(hub)
    assert hub.receive(early, have([0, 1, 2, 3, 4]), 1.0) == []
    assert hub.receive(late, have([3, 4, 5]), 2.0) == []
    out = hub.receive(asker, Want(T, R, (4, 5)), 3.0)
    assert out == [Send(asker, Peers(T, R, (Candidate(late, (4, 5)), Candidate(early, (4,)))))]
    # Another rendition is another swarm: answered, empty.
    assert hub.receive(asker, Want(T, "other", (4,)), 3.0) == [Send(asker, Peers(T, "other", ()))]
    # Slots all in use, then leaving: not offered.
    hub.receive(late, Slots(4), 4.0)
    hub.receive(early, Leave(T), 4.0)
    assert hub.receive(asker, Want(T, R, (4,)), 5.0) == [Send(asker, Peers(T, R, ()))]


def test_ping_pong() -> None:
    hub = make_hub()
    p = opened(hub)
    assert hub.receive(p, Ping(), 0.0) == [Send(p, Pong())]


def test_relay_only_between_introduced_peers_with_from_rewritten() -> None:
    hub = make_hub()
    holder, asker, stranger = opened(hub), opened(hub), opened(hub)
    hub.receive(holder, have([0]), 0.0)
    hub.receive(asker, Want(T, R, (0,)), 0.0)
    # The parser drops any "from" the sender wrote; the hub writes the real one.
    message = parse(f'{{"type":"signal","to":"{holder}","from":"{stranger}","data":{{"kind":"offer"}}}}')
    assert hub.receive(asker, message, 1.0) == [Send(holder, SignalFrom(asker, '{"kind":"offer"}'))]
    assert hub.receive(holder, Signal(asker, "{}"), 1.0) == [Send(asker, SignalFrom(holder, "{}"))]
    # A stranger is refused, whether the target exists or not.
    out = hub.receive(stranger, Signal(holder, "{}"), 1.0)
    assert out == [Send(stranger, Error("not_introduced", "signal only peers the tracker gave you", "signal"))]
    assert errors(hub.receive(stranger, Signal("nobody", "{}"), 1.0)) == ["not_introduced"]


def test_relay_to_a_closing_peer_is_unknown_peer() -> None:
    hub = make_hub()
    holder, asker = opened(hub), opened(hub)
    hub.receive(holder, have([0]), 0.0)
    hub.receive(asker, Want(T, R, (0,)), 0.0)
    bad = ProtocolError("bad_json", "x")
    for _ in range(STRIKES + 1):
        out = hub.receive(holder, bad, 0.0)
    assert out[-1] == Close(holder, 1008, "too many refused messages")
    # Still introduced (its socket is not gone yet), but closing: not relayed to.
    assert hub.tracker.introduced(asker, holder)
    assert hub.receive(asker, Signal(holder, "{}"), 1.0) == [
        Send(asker, Error("unknown_peer", "that peer has left", "signal"))]
    # Gone from the tracker (idle): no longer introduced, and that is checked first.
    hub.tracker.touch(asker, IDLE_TIMEOUT)
    hub.tick(IDLE_TIMEOUT + 0.5)
    assert errors(hub.receive(asker, Signal(holder, "{}"), IDLE_TIMEOUT + 1)) == ["not_introduced"]


def test_unknown_peer_is_ignored() -> None:
    hub = make_hub()
    assert hub.receive("ghost", Ping(), 0.0) == []
    assert hub.refuse("ghost", ProtocolError("bad_json", "x"), 0.0) == []
    assert hub.close("ghost", 0.0) == []


def test_protocol_errors_answered_with_for() -> None:
    hub = make_hub()
    p = opened(hub)
    out = hub.receive(p, ProtocolError("bad_field", "track: nope", "have"), 0.0)
    assert out == [Send(p, Error("bad_field", "track: nope", "have"))]
    out = hub.refuse(p, ProtocolError("bad_json", "binary frames are not part of the protocol"), 0.0)
    assert out == [Send(p, Error("bad_json", "binary frames are not part of the protocol", None))]


def test_rate_limit_then_refill() -> None:
    hub = make_hub()
    p = opened(hub)
    answers = [hub.receive(p, Ping(), 0.0) for _ in range(BURST)]
    assert all(a == [Send(p, Pong())] for a in answers)
    out = hub.receive(p, Ping(), 0.0)
    assert out == [Send(p, Error("rate_limited", "more than 50 messages a second", None))]
    # A refused frame is refused whatever it says: a parse error is not reported.
    assert errors(hub.receive(p, ProtocolError("bad_json", "x"), 0.0)) == ["rate_limited"]
    assert hub.receive(p, Ping(), 0.1) == [Send(p, Pong())]  # 0.1 s at 50/s: 5 more


def test_a_budget_first_used_late_is_as_full_as_one_made_at_the_open() -> None:
    # Budgets are made at their first use (an idle peer holds none): the
    # same burst as a bucket made at the open and filled up to it since.
    hub = make_hub()
    p = opened(hub, 0.0)
    assert all(hub.receive(p, Ping(), 1000.0) == [Send(p, Pong())] for _ in range(BURST))
    assert errors(hub.receive(p, Ping(), 1000.0)) == ["rate_limited"]
    q = opened(hub, 0.0)
    bad = ProtocolError("bad_field", "x", "have")
    for _ in range(STRIKES):
        assert not any(isinstance(o, Close) for o in hub.receive(q, bad, 1000.0))
    assert Close(q, 1008, "too many refused messages") in hub.receive(q, bad, 1000.0)


def test_strikes_close_with_1008_after_the_error() -> None:
    hub = make_hub()
    p = opened(hub)
    bad = ProtocolError("unknown_type", "unknown message type 'x'")
    for _ in range(STRIKES):
        assert errors(hub.receive(p, bad, 0.0)) == ["unknown_type"]
    out = hub.receive(p, bad, 0.0)
    assert out == [Send(p, Error("unknown_type", "unknown message type 'x'", None)),
                   Close(p, 1008, "too many refused messages")]
    # Closing: nothing more is read or answered, but it stays counted until close.
    assert hub.receive(p, Ping(), 1.0) == []
    assert p in hub
    assert hub.close(p, 1.0) == [Count(PEERS_CONNECTED, (), -1)]
    assert p not in hub and p not in hub.tracker
    assert hub.close(p, 1.0) == []


def test_occasional_errors_never_close() -> None:
    hub = make_hub()
    p = opened(hub)
    bad = ProtocolError("bad_field", "x", "have")
    for second in range(200):
        out = hub.receive(p, bad, float(second))
        assert not any(isinstance(o, Close) for o in out)


def test_stats_counts_and_observes() -> None:
    hub = make_hub()
    p = opened(hub)
    out = hub.receive(p, Stats(p2p_down_bytes=1000, p2p_up_bytes=5, http_down_bytes=7, stalls=2,
                               verify_failures=1, startup_seconds=0.25), 0.0)
    assert out == [Count(PEER_BYTES, UNKNOWN, 1000), Count(STALLS, (), 2), Count(VERIFY_FAILURES, (), 1),
                   Observe(STARTUP_SECONDS, (), 0.25)]
    # Zeros count nothing; no startup, no observation.
    assert hub.receive(p, Stats(p2p_down_bytes=44), 0.0) == [Count(PEER_BYTES, UNKNOWN, 44)]
    assert hub.receive(p, Stats(), 0.0) == []


def test_bad_or_too_frequent_stats_count_nothing() -> None:
    hub = make_hub()
    p = opened(hub)
    with_bad = '{"type":"stats","p2p_down_bytes":7,"stalls":-1}'
    try:
        parse(with_bad)
    except ProtocolError as exc:
        out = hub.receive(p, exc, 0.0)
    assert out == [Send(p, Error("bad_stats", "stalls: expected 0..1000", "stats"))]
    for _ in range(STATS_BURST):
        assert hub.receive(p, Stats(p2p_down_bytes=1), 0.0) == [Count(PEER_BYTES, UNKNOWN, 1)]
    out = hub.receive(p, Stats(p2p_down_bytes=1), 0.0)
    assert out == [Send(p, Error("rate_limited", "stats about every 5 s, not faster", "stats"))]
    assert hub.receive(p, Stats(p2p_down_bytes=1), 2.0) == [Count(PEER_BYTES, UNKNOWN, 1)]  # 0.5/s refilled


def test_tracker_errors_are_refused_with_the_type() -> None:
    hub = make_hub()
    p = opened(hub)
    for i in range(hub.tracker.max_tracks):
        assert hub.receive(p, Have(f"t{i}", R, ChunkSet.of([0])), float(i)) == []
    out = hub.receive(p, Have("one-too-many", R, ChunkSet.of([0])), 100.0)
    assert errors(out) == ["too_many_tracks"]
    send = out[0]
    assert isinstance(send, Send) and isinstance(send.message, Error) and send.message.for_type == "have"


def test_idle_tick_closes_with_4000() -> None:
    hub = make_hub()
    quiet, busy = opened(hub, 0.0), opened(hub, 0.0)
    assert hub.tick(IDLE_TIMEOUT) == []  # not more than idle_timeout yet
    hub.receive(busy, Ping(), IDLE_TIMEOUT)
    assert hub.tick(IDLE_TIMEOUT + 1) == [Close(quiet, 4000, "idle")]
    assert quiet not in hub.tracker and quiet in hub  # counted until its socket is gone
    assert hub.tick(IDLE_TIMEOUT + 2) == []  # closed once
    assert hub.receive(quiet, Ping(), IDLE_TIMEOUT + 2) == []
    assert hub.close(quiet, IDLE_TIMEOUT + 3) == [Count(PEERS_CONNECTED, (), -1)]


def test_shutdown_closes_everyone_once() -> None:
    hub = make_hub()
    a, b = opened(hub), opened(hub)
    assert hub.shutdown() == [Close(a, 1001, "server shutdown"), Close(b, 1001, "server shutdown")]
    assert hub.shutdown() == []
