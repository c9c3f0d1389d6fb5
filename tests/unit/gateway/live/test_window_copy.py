"""A cluster follower's window: chunks copied from the owner's, then the follower's own session past them."""

from __future__ import annotations

import pytest

from gateway.live.window import ORIGIN, LiveWindow, WindowError

NOW = ORIGIN + 1000.0


def owner_window(chunks: int) -> LiveWindow:
    window = LiveWindow(10.0)
    window.begin(NOW)
    window.add_init(b"init-a")
    for i in range(chunks):
        window.add_chunk(start=float(i), duration=1.0, data=b"chunk-%d" % i, wall=NOW + i)
    return window


def copy_all(owner: LiveWindow, follower: LiveWindow) -> list[bool]:
    taken = []
    for chunk in owner.chunks:
        init = owner.init(chunk.epoch)
        assert init is not None
        taken.append(follower.add_copy(chunk, init))
    return taken


def test_a_copied_window_lists_the_same_entries_and_ignores_what_it_has() -> None:
    owner, follower = owner_window(4), LiveWindow(10.0)
    assert copy_all(owner, follower) == [True] * 4
    assert follower.entries() == owner.entries()
    assert follower.edge == owner.edge and follower.epoch == owner.epoch
    assert follower.init() == owner.init()
    assert copy_all(owner, follower) == [False] * 4  # the next manifest lists them again
    owner.add_chunk(start=4.0, duration=1.0, data=b"chunk-4", wall=NOW + 4)
    assert copy_all(owner, follower) == [False] * 4 + [True]
    assert follower.entries() == owner.entries()
    assert owner.edge is not None and follower.place(owner.edge + 1) == "soon"


def test_a_gap_in_the_copy_is_gone_and_the_window_still_slides() -> None:
    owner, follower = owner_window(30), LiveWindow(10.0)
    for chunk in list(owner.chunks)[::3]:
        init = owner.init(chunk.epoch)
        assert init is not None
        follower.add_copy(chunk, init)
    first, second = list(owner.chunks)[0].index, list(owner.chunks)[3].index
    assert follower.place(first + 1) == "gone" and follower.place(second) == "in"
    assert sum(c.duration for c in follower.chunks) <= 10.0


def test_a_takeover_continues_past_the_copied_edge_in_the_same_epoch() -> None:
    owner, follower = owner_window(5), LiveWindow(10.0)
    copy_all(owner, follower)
    copied_edge = follower.edge
    assert copied_edge is not None
    # The owner died; the follower ingests the upstream itself, moments later.
    first = follower.begin(NOW + 5)
    assert first > copied_edge
    follower.add_init(b"init-a")  # the same bytes: the same epoch
    chunk = follower.add_chunk(start=0.0, duration=1.0, data=b"new", wall=NOW + 6)
    assert chunk.index == first and chunk.epoch == owner.epoch
    assert [c.index for c in follower.chunks][-2:] == [copied_edge, first]


def test_copies_are_checked() -> None:
    owner, follower = owner_window(2), LiveWindow(10.0)
    other = LiveWindow(10.0)
    other.begin(NOW + 500)
    wrong_init = other.add_init(b"init-b")
    with pytest.raises(WindowError):
        follower.add_copy(owner.chunks[0], wrong_init)
    # A copy ends a local session: its chunks need a new begin.
    follower.begin(NOW)
    follower.add_init(b"init-a")
    init = owner.init()
    assert init is not None
    follower.add_copy(owner.chunks[1], init)
    with pytest.raises(WindowError):
        follower.add_chunk(start=0.0, duration=1.0, data=b"x", wall=NOW)
