"""The tracker, a pure class: synchronous, exact, time passed in."""

from __future__ import annotations

import pytest

from gateway.swarm.tracker import TooManyTracks, Tracker, UnknownPeer
from protocol.limits import MAX_INDEX
from protocol.values import BadChunks, Candidate, ChunkSet

T, R = "track1", "rend1"


def tracker(*peers: str, **kwargs: int) -> Tracker:
    t = Tracker(**kwargs)
    for i, p in enumerate(peers):
        t.join(p, float(i))
    return t


def ids(candidates: list[Candidate]) -> list[str]:
    return [c.peer_id for c in candidates]


# -- ChunkSet --------------------------------------------------------------------


def test_chunkset_merges_runs() -> None:
    s = ChunkSet.of([7, 3, 1, 2, 2, 0, 8, 12])
    assert s.runs == ((0, 3), (7, 8), (12, 12))
    assert s.ranges() == [[0, 3], [7, 8], [12, 12]]
    assert len(s) == 7 and bool(s) and not ChunkSet()
    assert [i for i in range(14) if i in s] == [0, 1, 2, 3, 7, 8, 12]
    assert "3" not in s and -1 not in s
    assert s.among([12, 5, 0, 8]) == (12, 0, 8)  # in the order asked
    # Adjacent and overlapping runs merge into one canonical form.
    assert ChunkSet.from_ranges([(5, 9), (0, 4), (2, 3)]).runs == ((0, 9),)
    assert s.union(ChunkSet.of([4, 5, 6])).runs == ((0, 8), (12, 12))
    assert s.union(ChunkSet()) is s and ChunkSet().union(s) is s


def test_chunkset_bounds() -> None:
    # A live track's indices are far past any count of chunks: up to a u32.
    assert ChunkSet.of([0, 100_000, MAX_INDEX]).runs == ((0, 0), (100_000, 100_000), (MAX_INDEX, MAX_INDEX))
    with pytest.raises(BadChunks):
        ChunkSet.of([MAX_INDEX + 1])
    with pytest.raises(BadChunks):
        ChunkSet.of([-1])
    with pytest.raises(BadChunks):
        ChunkSet.from_ranges([(5, 4)])
    with pytest.raises(BadChunks):
        ChunkSet.of(range(0, 20, 2), max_ranges=9)
    assert len(ChunkSet.of(range(0, 18, 2), max_ranges=9).runs) == 9
    with pytest.raises(BadChunks):
        ChunkSet.of([0, 2]).union(ChunkSet.of([4]), max_ranges=2)


# -- peers and holdings ------------------------------------------------------------


def test_unknown_and_duplicate_peers() -> None:
    t = tracker("a")
    with pytest.raises(ValueError):
        t.join("a", 1.0)
    for call in (
        lambda: t.announce("x", T, R, [0], 1.0),
        lambda: t.want("x", T, R, [0], 1.0),
        lambda: t.set_slots("x", 1),
        lambda: t.leave("x", T),
        lambda: t.touch("x", 1.0),
    ):
        with pytest.raises(UnknownPeer):
            call()
    t.remove("x")  # removing an unknown peer is not an error
    assert "a" in t and "x" not in t and len(t) == 1


def test_partial_holdings_count() -> None:
    t = tracker("asker", "early", "late", "elsewhere")
    t.announce("early", T, R, [0, 1, 2, 3], 10.0)  # still downloading: holds 0..3
    t.announce("late", T, R, ChunkSet.from_ranges([(3, 6)]), 11.0)
    t.announce("elsewhere", T, R, [50], 12.0)
    found = t.want("asker", T, R, [2, 3, 4], 13.0)
    assert found == [Candidate("late", (3, 4)), Candidate("early", (2, 3))]
    # Only a holder of one of the needed chunks is offered.
    assert ids(t.want("asker", T, R, [5], 14.0)) == ["late"]
    assert t.want("asker", T, R, [40], 14.0) == []
    # An empty want: any holder of the track.
    assert ids(t.want("asker", T, R, [], 15.0)) == ["elsewhere", "late", "early"]


def test_have_adds_replace_replaces_complete_holds_all() -> None:
    t = tracker("a", "b")
    t.announce("a", T, R, [0, 1], 1.0)
    t.announce("a", T, R, [2, 5], 2.0)
    assert t.holding("a", T, R) == ChunkSet.of([0, 1, 2, 5])
    t.announce("a", T, R, [9], 3.0, replace=True)
    assert t.holding("a", T, R) == ChunkSet.of([9])
    assert t.want("b", T, R, [0], 4.0) == []
    t.announce("a", T, R, [], 5.0, complete=True)
    assert t.want("b", T, R, [0, 70], 6.0) == [Candidate("a", (0, 70), complete=True)]
    # A replace with nothing and not complete drops the holding (and frees the track).
    t.announce("a", T, R, [], 7.0, replace=True)
    assert t.holding("a", T, R) is None and t.tracks("a") == [] and t.holders(T, R) == []


def test_renditions_are_separate_swarms() -> None:
    t = tracker("a", "b")
    t.announce("a", T, "r96", [0], 1.0)
    assert t.want("b", T, "r64", [0], 2.0) == []
    assert t.want("b", "other", "r96", [0], 2.0) == []
    assert ids(t.want("b", T, "r96", [0], 2.0)) == ["a"]


def test_never_the_asker() -> None:
    t = tracker("a", "b")
    t.announce("a", T, R, [0, 1], 5.0)
    assert t.want("a", T, R, [0], 6.0) == []
    t.announce("b", T, R, [0], 1.0)
    assert ids(t.want("a", T, R, [0], 7.0)) == ["b"]


def test_slots() -> None:
    t = tracker("asker", "busy", "idle", upload_slots=2)
    t.announce("busy", T, R, [0], 2.0)
    t.announce("idle", T, R, [0], 1.0)
    t.set_slots("busy", 1)
    assert t.free_slots("busy") == 1
    assert ids(t.want("asker", T, R, [0], 3.0)) == ["busy", "idle"]
    t.set_slots("busy", 2)  # all slots in use: never offered
    assert t.free_slots("busy") == 0
    assert ids(t.want("asker", T, R, [0], 4.0)) == ["idle"]
    t.set_slots("busy", 7)  # over-reporting is clamped in free_slots
    assert t.free_slots("busy") == 0
    t.set_slots("busy", 0)
    assert ids(t.want("asker", T, R, [0], 5.0)) == ["busy", "idle"]
    with pytest.raises(ValueError):
        t.set_slots("busy", -1)
    with pytest.raises(ValueError):
        Tracker(upload_slots=0)


def test_most_recent_first_then_most_held_then_id() -> None:
    t = tracker("asker", "p1", "p2", "p3", "p4")
    t.announce("p1", T, R, [0], 1.0)
    t.announce("p2", T, R, [0], 2.0)
    t.announce("p3", T, R, [0], 3.0)
    assert ids(t.want("asker", T, R, [0], 4.0)) == ["p3", "p2", "p1"]
    t.touch("p1", 5.0)  # any message makes a peer recent again
    assert t.last_seen("p1") == 5.0
    assert ids(t.want("asker", T, R, [0], 6.0)) == ["p1", "p3", "p2"]
    # Same recency: whoever holds more of what is needed, then the smaller id.
    t.announce("p4", T, R, [0, 1], 7.0)
    t.announce("p2", T, R, [0], 7.0)
    t.announce("p3", T, R, [0], 7.0)
    assert ids(t.want("asker", T, R, [0, 1], 8.0)) == ["p4", "p2", "p3", "p1"]


def test_at_most_five_candidates() -> None:
    t = tracker("asker", *(f"p{i}" for i in range(8)))
    for i in range(8):
        t.announce(f"p{i}", T, R, [0], 10.0 + i)
    assert ids(t.want("asker", T, R, [0], 20.0)) == ["p7", "p6", "p5", "p4", "p3"]
    assert ids(t.want("asker", T, R, [0], 20.0, limit=2)) == ["p7", "p6"]


def test_introductions_only_for_candidates_and_symmetric() -> None:
    t = tracker("asker", "holder", "stranger", "busy", upload_slots=1)
    t.announce("holder", T, R, [0], 1.0)
    t.announce("busy", T, R, [0], 1.0)
    t.set_slots("busy", 1)
    assert not t.introduced("asker", "holder")
    t.want("asker", T, R, [0], 2.0)
    assert t.introduced("asker", "holder") and t.introduced("holder", "asker")
    assert not t.introduced("asker", "stranger") and not t.introduced("asker", "busy")
    assert not t.introduced("asker", "asker")
    assert t.introductions("holder") == ["asker"]
    t.remove("holder")
    assert not t.introduced("asker", "holder") and t.introductions("asker") == []


def test_introductions_are_capped_oldest_first() -> None:
    t = tracker("asker", "a", "b", "c", max_introductions=2)
    for i, p in enumerate("abc"):
        t.announce(p, T, R, [i], 1.0)
        t.want("asker", T, R, [i], 2.0 + i)
    assert t.introductions("asker") == ["b", "c"]
    assert not t.introduced("a", "asker") and t.introduced("c", "asker")


def test_expire() -> None:
    t = tracker("old", "fresh", "asker")
    t.announce("old", T, R, [0], 100.0)
    t.announce("fresh", T, R, [0], 150.0)
    t.want("asker", T, R, [0], 150.0)
    assert t.introduced("asker", "old")
    assert t.expire(160.0, ttl=60.0) == []  # exactly ttl old: kept
    assert t.expire(160.5, ttl=60.0) == ["old"]
    assert "old" not in t and t.holders(T, R) == ["fresh"]
    assert not t.introduced("asker", "old")
    assert t.expire(1000.0, ttl=60.0) == ["fresh", "asker"]
    assert len(t) == 0 and t.holders(T, R) == []


def test_leave_one_rendition_or_all() -> None:
    t = tracker("a", "b")
    t.announce("a", T, "r1", [0], 1.0)
    t.announce("a", T, "r2", [0], 1.0)
    t.announce("a", "other", "r1", [0], 1.0)
    t.leave("a", T, "r1")
    assert t.tracks("a") == [(T, "r2"), ("other", "r1")]
    t.leave("a", T)
    assert t.tracks("a") == [("other", "r1")]
    assert t.want("b", T, "r2", [0], 2.0) == []
    t.leave("a", "never-announced")  # nothing to drop: no error


def test_track_cap() -> None:
    t = tracker("a", max_tracks=3)
    for i in range(3):
        t.announce("a", f"t{i}", R, [0], 1.0)
    with pytest.raises(TooManyTracks):
        t.announce("a", "t3", R, [0], 2.0)
    assert len(t.tracks("a")) == 3 and t.holders("t3", R) == []
    t.announce("a", "t0", R, [1], 2.0)  # more chunks of a track held: fine
    t.announce("a", "t3", R, [], 2.0)  # announcing nothing is no new track
    t.leave("a", "t1")
    t.announce("a", "t3", R, [0], 3.0)
    assert [k[0] for k in t.tracks("a")] == ["t0", "t2", "t3"]


def test_chunk_bounds_and_fragmentation_change_nothing() -> None:
    t = tracker("a", "b", max_index=99, max_ranges=3)
    t.announce("a", T, R, [0, 2, 4], 1.0)
    with pytest.raises(BadChunks):
        t.announce("a", T, R, [100], 2.0)
    with pytest.raises(BadChunks):
        t.announce("a", T, R, ChunkSet.of([150]), 2.0)
    with pytest.raises(BadChunks):
        t.announce("a", T, R, [6], 2.0)  # a fourth run
    assert t.holding("a", T, R) == ChunkSet.of([0, 2, 4]) and t.last_seen("a") == 1.0
    t.announce("a", T, R, [1, 3], 3.0)  # fills the holes: one run
    assert t.holding("a", T, R) == ChunkSet.of(range(5))
    with pytest.raises(BadChunks):
        t.want("b", T, R, [100], 4.0)
    with pytest.raises(BadChunks):
        t.want("b", T, R, list(range(257)), 4.0)
    with pytest.raises(BadChunks):
        t.want("b", T, R, [-1], 4.0)


def test_holder_cap_evicts_the_stalest_holding() -> None:
    t = tracker("asker", "p0", "p1", "p2", "p3", max_holders=3)
    for i in range(3):
        t.announce(f"p{i}", T, R, [0], 10.0 + i)
    t.touch("p0", 20.0)  # p1 is now the stalest
    t.announce("p3", T, R, [0], 21.0)
    assert sorted(t.holders(T, R)) == ["p0", "p2", "p3"]
    assert t.holding("p1", T, R) is None and "p1" in t  # the peer stays
    assert ids(t.want("asker", T, R, [0], 22.0)) == ["p3", "p0", "p2"]
