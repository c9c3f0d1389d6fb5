"""The live window (gateway/live/window.py): indices, epochs, the sliding bound, where an index stands."""

from __future__ import annotations

import hashlib

import pytest

from gateway.live.window import LOOKAHEAD, MAX_INDEX, ORIGIN, LiveWindow, WindowError, first_index

NOW = ORIGIN + 1_000.7


def test_first_index_is_twice_the_seconds_since_origin_or_past_the_previous_edge() -> None:
    assert first_index(None, NOW) == 2_000
    assert first_index(1_500, NOW) == 2_000
    assert first_index(5_000, NOW) == 5_001  # a burst outran the clock: still never repeats
    assert first_index(None, ORIGIN - 10) == 0
    # The u32 bound holds until 2094.
    assert first_index(None, ORIGIN + 68 * 365 * 86400) < MAX_INDEX


def fill(window: LiveWindow, count: int, *, duration: float = 1.0, start: float = 0.0, wall: float = NOW) -> None:
    for i in range(count):
        window.add_chunk(start=start + i * duration, duration=duration, data=b"c%d" % i, wall=wall + i * duration)


def test_indices_grow_within_a_session_and_the_window_slides() -> None:
    window = LiveWindow(5.0)
    assert window.begin(NOW) == 2_000
    init = window.add_init(b"init")
    assert init.epoch == 2_000 and window.epoch == 2_000
    assert window.edge is None and window.place(2_000) == "soon"
    fill(window, 8)
    assert [c.index for c in window.chunks] == [2_003, 2_004, 2_005, 2_006, 2_007]
    assert window.edge == 2_007
    entry = window.entries()[0]
    assert entry == {"index": 2_003, "start": 3.0, "duration": 1.0, "size": 2, "sha256": hashlib.sha256(b"c3").hexdigest(),
                     "wall": round(NOW + 3, 3), "epoch": 2_000}
    assert window.get(2_003) is not None and window.get(2_002) is None


def test_place_of_an_index() -> None:
    window = LiveWindow(5.0)
    window.begin(NOW)
    window.add_init(b"init")
    fill(window, 8)  # window 2003..2007
    assert window.place(2_005) == "in"
    assert window.place(2_002) == "gone"
    assert window.place(0) == "gone"
    assert [window.place(2_007 + k) for k in range(1, LOOKAHEAD + 1)] == ["soon"] * LOOKAHEAD
    assert window.place(2_008 + LOOKAHEAD) == "ahead"


def test_a_reconnect_continues_the_indices_and_keeps_the_epoch_when_the_init_is_the_same() -> None:
    window = LiveWindow(10.0)
    window.begin(NOW)
    window.add_init(b"init")
    fill(window, 3)  # 2000..2002
    first = window.begin(NOW + 0.5)  # same second: after the edge
    assert first == 2_003
    assert window.add_init(b"init").epoch == 2_000
    fill(window, 2)
    assert [c.index for c in window.chunks] == [2_000, 2_001, 2_002, 2_003, 2_004]
    assert {c.epoch for c in window.chunks} == {2_000}


def test_a_reconnect_with_another_format_opens_an_epoch_and_old_inits_leave_with_their_chunks() -> None:
    window = LiveWindow(3.0)
    window.begin(NOW)
    window.add_init(b"mp3 init")
    fill(window, 2)  # 2000, 2001
    later = NOW + 60
    assert window.begin(later) == 2 * int(later - ORIGIN)
    init = window.add_init(b"opus init")
    assert init.epoch == 2_120 and window.epoch == 2_120
    assert window.init(2_000) is not None  # chunks of that epoch are still in the window
    window.add_chunk(start=0.0, duration=1.0, data=b"x", wall=later)
    # A gap between sessions is gone for good, not soon.
    assert window.place(2_050) == "gone"
    assert [c.epoch for c in window.chunks] == [2_000, 2_000, 2_120]
    fill(window, 3, start=1.0, wall=later + 1)
    assert all(c.epoch == 2_120 for c in window.chunks)
    assert window.init(2_000) is None and window.init() is init


def test_the_edge_survives_the_window_for_the_next_ingest() -> None:
    window = LiveWindow(3.0)
    window.begin(NOW)
    window.add_init(b"i")
    fill(window, 4)
    again = LiveWindow(3.0, previous_edge=window.last_edge)
    assert again.begin(NOW) == 2_004


def test_max_chunks_bounds_memory_whatever_the_durations() -> None:
    window = LiveWindow(60.0, max_chunks=10)
    window.begin(NOW)
    window.add_init(b"i")
    fill(window, 50, duration=0.001)
    assert len(window.chunks) == 10


def test_calls_out_of_order_are_refused() -> None:
    window = LiveWindow(3.0)
    with pytest.raises(WindowError):
        window.add_init(b"i")
    window.begin(NOW)
    with pytest.raises(WindowError):
        window.add_chunk(start=0, duration=1, data=b"x", wall=NOW)
    with pytest.raises(WindowError):
        LiveWindow(3.0, previous_edge=MAX_INDEX).begin(NOW)
