"""peer/live_track.py: the headless peer's live track, driven synchronously."""

from __future__ import annotations

from typing import Any

from pytest import approx

from peer import live
from peer.live_track import SERVER, Fetch, LiveSettings, LiveState, LiveTrack

FIRST = 58_000_000
T0 = 1_800_000_000.0


def manifest(first: int, last: int, *, wall0: float = T0, behind: float = 3.0, wait: float = 0.7) -> dict[str, Any]:
    chunks = [{"index": i, "start": float(i - first), "duration": 1.0, "size": 100, "sha256": f"h{i}",
               "wall": wall0 + (i - FIRST), "epoch": 1} for i in range(first, last + 1)]
    return {"live": True, "chunks": chunks, "edge": last, "start_behind_seconds": behind,
            "peer_wait_seconds": wait, "chunk_seconds": 1.0, "state": "live"}


def other_than(me: str, *indices: int) -> str:
    """A neighbour id that wins the elections of ``indices`` against ``me``."""
    return next(p for p in (f"n{k}" for k in range(1000))
                if all(live.elected_fetcher(me, [p], index) == p for index in indices))


def loser_to(me: str, index: int) -> str:
    """A neighbour id that loses the election of ``index`` against ``me``."""
    return next(p for p in (f"n{k}" for k in range(1000)) if live.elected_fetcher(me, [p], index) == me)


def test_joins_behind_the_edge_and_a_lone_listener_fetches_everything_at_once() -> None:
    t = LiveTrack()
    t.manifest(manifest(FIRST, FIRST + 59), T0 + 60)
    assert t.current == FIRST + 57  # 3 s behind the end of the edge chunk
    reqs = t.next(T0 + 60, "me", [])
    assert reqs == [Fetch(FIRST + 57, SERVER), Fetch(FIRST + 58, SERVER), Fetch(FIRST + 59, SERVER)]
    assert t.next(T0 + 60, "me", []) == []  # in flight


def test_a_neighbour_that_holds_a_chunk_is_asked_with_a_deadline_the_server_can_still_meet() -> None:
    t = LiveTrack()
    t.manifest(manifest(FIRST, FIRST + 59), T0)
    t.peer_holds("nb", [FIRST + 58, FIRST + 59])
    reqs = t.next(T0, "me", ["nb"])
    # the chunk playing now is too close for a peer: the server; the others from the neighbour
    assert reqs[0] == Fetch(FIRST + 57, SERVER)
    assert [(r.index, r.source) for r in reqs[1:]] == [(FIRST + 58, "nb"), (FIRST + 59, "nb")]
    # what the server needs (its estimate 0.2 s, plus 0.3 s of margin) is left after the deadline
    assert reqs[1].deadline == approx(T0 + 1.0 - 0.5) and reqs[2].deadline == approx(T0 + 2.0 - 0.5)
    assert t.expired(T0 + 0.4) == []
    assert [r.index for r in t.expired(T0 + 0.51)] == [FIRST + 58]
    # the neighbour failed it: the server, once the peer wait is spent
    assert t.next(T0 + 0.6, "me", ["nb"]) == []
    assert t.next(T0 + 0.71, "me", ["nb"]) == [Fetch(FIRST + 58, SERVER)]


def test_a_new_chunk_the_listener_is_not_elected_for_waits_for_a_peer_then_the_server() -> None:
    t = LiveTrack()
    t.manifest(manifest(FIRST, FIRST + 59), T0)
    for i in (FIRST + 57, FIRST + 58, FIRST + 59):
        t.received(i, SERVER, T0)
    t.ready = True
    t.advance(T0)
    new = FIRST + 60
    winner = other_than("me", new, new + 1)  # the chunk after the edge too: the winner asks for it
    t.manifest(manifest(FIRST + 1, new), T0 + 1)
    assert t.next(T0 + 1, "me", [winner]) == []
    assert t.next(T0 + 1.69, "me", [winner]) == []
    # the winner announced it: asked of the winner at once
    t.peer_holds(winner, [new])
    (req,) = t.next(T0 + 1.5, "me", [winner])
    assert (req.index, req.source) == (new, winner)
    t.failed(new, winner, T0 + 1.6)
    assert t.next(T0 + 1.6, "me", [winner]) == []  # still within the peer wait
    assert t.next(T0 + 1.7, "me", [winner]) == [Fetch(new, SERVER)]


def test_the_elected_fetcher_takes_a_new_chunk_at_once_and_asks_for_the_one_after_the_edge() -> None:
    t = LiveTrack()
    t.manifest(manifest(FIRST, FIRST + 59), T0)
    for i in (FIRST + 57, FIRST + 58, FIRST + 59):
        t.received(i, SERVER, T0)
    t.ready = True
    t.advance(T0)
    new = FIRST + 60
    loser = loser_to("me", new)
    t.manifest(manifest(FIRST + 1, new), T0 + 1)
    reqs = t.next(T0 + 1, "me", [loser])
    assert reqs[0] == Fetch(new, SERVER)
    after = [r for r in reqs if r.ahead]
    assert after == ([Fetch(new + 1, SERVER, ahead=True)] if live.elected_fetcher("me", [loser], new + 1) == "me"
                     else [])


def test_plays_stalls_at_a_missing_chunk_and_resumes() -> None:
    t = LiveTrack()
    t.manifest(manifest(FIRST, FIRST + 59, wall0=T0 - 60), T0)  # chunk 58 reached the gateway at T0 - 2
    t.received(FIRST + 57, SERVER, T0)
    assert t.advance(T0) is LiveState.STARTING  # no init yet
    t.ready = True
    assert t.advance(T0 + 0.1) is LiveState.PLAYING and t.started_at == T0 + 0.1
    assert t.advance(T0 + 0.6) is LiveState.PLAYING and t.offset == approx(0.5, abs=1e-6)
    assert t.advance(T0 + 1.3) is LiveState.STALLED and t.stalls == 1
    assert t.current == FIRST + 57 and t.stalled_seconds == approx(0.2, abs=1e-6)
    t.received(FIRST + 58, SERVER, T0 + 1.5)
    assert t.advance(T0 + 1.5) is LiveState.PLAYING
    assert t.advance(T0 + 2.0) is LiveState.PLAYING and t.current == FIRST + 58 and t.offset == approx(0.5, abs=1e-6)
    assert t.stalls == 1 and t.stalled_seconds == approx(0.4, abs=1e-6)
    # latency: the chunk's wall plus the offset, against now
    assert t.latency is not None and t.latency == approx(3.5, abs=1e-6)


def test_far_behind_it_jumps_and_slightly_behind_it_plays_faster() -> None:
    t = LiveTrack(LiveSettings(pace_interval=0.0))
    t.manifest(manifest(FIRST, FIRST + 59), T0)
    t.held.update(range(FIRST, FIRST + 60))
    t.ready = True
    t.current = FIRST + 40  # 20 s behind
    t.advance(T0 - 10)
    t.advance(T0)
    assert t.jumps == 1 and t.current == FIRST + 57 and t.rate == 1.0
    t.advance(T0 + 6)  # plays on (to the edge: a stall)
    t.state, t.current, t.offset = LiveState.PLAYING, FIRST + 54, 0.0  # 6 s behind, well after the start
    t.advance(T0 + 6)  # no time passes: only the pace decision
    assert t.rate == live.RATE_FAST and t.jumps == 1
    t.current, t.offset = FIRST + 59, 0.5  # half a second: slower
    t.advance(T0 + 6)
    assert t.rate == live.RATE_SLOW


def test_keeps_only_a_few_seconds_behind_the_playhead() -> None:
    t = LiveTrack(LiveSettings(keep_behind_seconds=5))
    t.manifest(manifest(FIRST, FIRST + 59), T0)
    t.held.update(range(FIRST + 30, FIRST + 60))
    t.current = FIRST + 50
    assert t.evictable() == list(range(FIRST + 30, FIRST + 45))


def test_chunks_that_left_the_window_are_skipped() -> None:
    t = LiveTrack()
    t.manifest(manifest(FIRST, FIRST + 59), T0)
    start = t.current
    assert start is not None
    # a long gap: the window moved on past the start before anything arrived
    t.manifest(manifest(FIRST + 100, FIRST + 159), T0 + 100)
    t.ready = True
    t.advance(T0 + 100)
    assert t.current == FIRST + 100 and t.skipped == 3


def test_back_from_a_stall_far_behind_it_jumps_to_the_target() -> None:
    """A source that returns with a burst leaves the listener seconds further behind:
    the first pace decision after the stall jumps back to the target distance."""
    t = LiveTrack()
    t.manifest(manifest(FIRST, FIRST + 59), T0)
    t.received(FIRST + 57, SERVER, T0)
    t.ready = True
    t.advance(T0)
    assert t.advance(T0 + 1.5) is LiveState.STALLED
    # the source came back with 6 s at once
    t.manifest(manifest(FIRST, FIRST + 65), T0 + 2)
    t.held.update(range(FIRST + 58, FIRST + 63))
    assert t.advance(T0 + 2.0) is LiveState.PLAYING
    t.advance(T0 + 2.1)
    # where it would land is not here yet: no jump into a stall, catching up meanwhile
    assert t.jumps == 0 and t.rate == live.RATE_FAST
    t.held.update(range(FIRST + 63, FIRST + 66))
    t.advance(T0 + 3.2)
    assert t.jumps == 1 and t.current == FIRST + 63
    # later, the same distance is only caught up with
    t.manifest(manifest(FIRST, FIRST + 75), T0 + 7)
    t.held.update(range(FIRST + 66, FIRST + 76))
    t.current, t.offset = FIRST + 66, 0.0
    t.advance(T0 + 7.3)
    assert t.jumps == 1 and t.rate == live.RATE_FAST


def test_a_choked_request_is_asked_again_a_moment_later() -> None:
    t = LiveTrack()
    t.manifest(manifest(FIRST, FIRST + 59), T0)
    t.received(FIRST + 57, SERVER, T0)
    t.peer_holds("nb", [FIRST + 58])
    (req,) = [r for r in t.next(T0, "me", ["nb"]) if r.index == FIRST + 58]
    assert req.source == "nb"
    t.choked(FIRST + 58, "nb", T0 + 0.01)  # its upload slots are all busy
    assert [r for r in t.next(T0 + 0.05, "me", ["nb"]) if r.index == FIRST + 58] == []
    (again,) = [r for r in t.next(T0 + 0.12, "me", ["nb"]) if r.index == FIRST + 58]
    assert again.source == "nb"


def waiting_fetcher(index: int) -> tuple[str, list[str]]:
    """A listener id and five neighbours for which it is the elected fetcher of ``index`` with a
    hash above ``AT_ONCE_SHARE``: a local minimum in a large swarm, which waits (``fetch_wait``)."""
    for k in range(1000):
        me = f"me{k}"
        if live.election_hash(me, index) < live.AT_ONCE_SHARE * 2**32:
            continue
        nbrs = [p for p in (f"n{j}" for j in range(2000)) if live.elected_fetcher(me, [p], index) == me][:5]
        if len(nbrs) == 5:
            return me, nbrs
    raise AssertionError("no such listener")


def test_an_elected_fetcher_of_a_large_neighbourhood_asks_for_the_chunk_after_the_edge_after_its_wait() -> None:
    ahead = FIRST + 60
    me, nbrs = waiting_fetcher(ahead)
    assert live.fetch_wait(me, nbrs, ahead, 0.7) == approx(live.SOON_FACTOR * 0.7)

    def track() -> LiveTrack:
        t = LiveTrack()
        t.manifest(manifest(FIRST, FIRST + 59), T0)  # the edge learnt at T0: the next chunk is due at T0 + 1
        for i in (FIRST + 57, FIRST + 58, FIRST + 59):
            t.received(i, SERVER, T0)
        t.ready = True
        t.advance(T0)
        return t

    t = track()
    assert [r for r in t.next(T0 + 1.0, me, nbrs) if r.ahead] == []  # due, but a low-hash fetcher may have it
    assert [r for r in t.next(T0 + 1.0 + 0.27, me, nbrs) if r.ahead] == []
    assert [r for r in t.next(T0 + 1.0 + 0.29, me, nbrs) if r.ahead] == [Fetch(ahead, SERVER, ahead=True)]
    # a neighbour announced it meanwhile: no server request for it, it is asked of that neighbour once listed
    t = track()
    t.peer_holds(nbrs[0], [ahead])
    assert [r for r in t.next(T0 + 1.5, me, nbrs) if r.ahead] == []
    t.manifest(manifest(FIRST + 1, ahead), T0 + 1.5)
    assert [(r.index, r.source) for r in t.next(T0 + 1.5, me, nbrs) if r.index == ahead] == [(ahead, nbrs[0])]
