"""The shared catalog's merge rule (pure): a last-writer-wins map of fields with a removal time."""

from __future__ import annotations

from functools import reduce

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.cluster.records import AT, Record, decode, delta, encode, merge, removal

TRACK = {"id": "abc", "source": "url", "locator": "https://x.example/a.mp3", "title": "a", "listed": False,
         "played": False}

_values = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from(["a", "b", "c"]))
_changes = st.one_of(
    st.builds(delta, st.dictionaries(st.sampled_from(["id", "title", "listed", "duration", AT + "n1"]), _values,
                                     min_size=1), st.sampled_from([0.0, 1.0, 2.0, 3.0])),
    st.builds(removal, st.sampled_from([1.0, 2.0, 3.0])),
)


@settings(max_examples=300)
@given(st.lists(_changes, min_size=1, max_size=6), st.randoms())
def test_the_order_in_which_changes_arrive_does_not_matter(changes: list[Record], rng: object) -> None:
    one = reduce(merge, changes[1:], changes[0])
    shuffled = list(changes)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    other = reduce(merge, shuffled[1:], shuffled[0])
    assert one == other
    # ... nor one arriving twice.
    assert merge(one, changes[0]) == one
    assert decode(encode(one)) == one


def test_a_registration_then_changes_from_two_nodes() -> None:
    registered = delta(TRACK, 10.0)
    tags = delta({"title": "Tagged", "duration": 12.0}, 20.0)  # node 2's transcode
    listed = delta({"listed": True, "played": True}, 21.0)
    stale = delta({"title": "a"}, 15.0)  # node 1 wrote it later, but made it earlier
    record = merge(merge(merge(registered, listed), stale), tags)
    assert record.alive
    assert record.fields() == {**TRACK, "title": "Tagged", "duration": 12.0, "listed": True, "played": True}


def test_a_removal_outdates_what_came_before_and_a_registration_brings_the_track_back() -> None:
    record = merge(merge(delta(TRACK, 10.0), delta({AT + "n1": True}, 10.0)), removal(30.0))
    assert not record.alive and record.fields() == {} and record.holders() == []
    # A change made before the purge (a node that was away) does not bring it back.
    late = merge(record, delta({"title": "late", "listed": True}, 25.0))
    assert not late.alive and late.values == {}
    back = merge(late, delta(TRACK, 40.0))
    assert back.alive and back.fields() == TRACK


def test_seeds_at_time_zero_fill_but_never_win() -> None:
    known = merge(delta(TRACK, 10.0), delta({"title": "Tagged"}, 20.0))
    seeded = merge(known, delta({**TRACK, "duration": 7.0}, 0.0))
    assert seeded.fields()["title"] == "Tagged" and seeded.fields()["duration"] == 7.0
    # A seed never brings back a removed track.
    assert not merge(removal(5.0), delta(TRACK, 0.0)).alive


def test_holders_of_a_library_file() -> None:
    record = reduce(merge, [delta(TRACK, 1.0), delta({AT + "n2": True}, 2.0), delta({AT + "n1": True}, 0.0)])
    assert record.holders() == ["n1", "n2"] and AT + "n1" not in record.fields()


def test_what_cannot_be_read_is_no_record() -> None:
    for raw in (None, b"", b"[]", b'{"v": [], "c": {}, "x": 0}', b'{"v": {}}', b"\xff"):
        assert decode(raw) is None
    # Clocks of fields that are not there are dropped.
    assert decode(b'{"v": {"id": "a"}, "c": {"id": 1, "ghost": 2}, "x": 0}') == Record({"id": "a"}, {"id": 1.0})
