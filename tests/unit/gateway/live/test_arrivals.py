"""gateway.live.arrivals: dating a live chunk's first sample by when its bytes came."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from gateway.live.arrivals import Arrivals

RATE = 16_000  # bytes per media second: 128 kbit/s
PIPE = 3_200  # what ffmpeg holds before it cuts a chunk's end: 0.2 s


def cuts(arrivals: Iterable[tuple[float, int]], a: Arrivals | None = None) -> dict[int, float]:
    """Feed ``arrivals`` (time, bytes) in order, cutting 1 s chunks as ffmpeg would (once a chunk's
    end and ``PIPE`` more bytes are in); each chunk's date by its start."""
    a = a or Arrivals()
    dates: dict[int, float] = {}
    for at, n in arrivals:
        a.arrived(n, at)
        while a.total >= RATE * (len(dates) + 1) + PIPE:
            k = len(dates)
            date = a.dated(float(k), k + 1.0)
            assert date is not None
            dates[k] = date
    return dates


def real_time(start: float, seconds: float, piece: int = 4000) -> list[tuple[float, int]]:
    """``seconds`` of audio arriving in real time from ``start``, in pieces."""
    return [(start + (i + 1) * piece / RATE, piece) for i in range(int(seconds * RATE / piece))]


def test_in_real_time_a_chunk_is_dated_when_its_start_came() -> None:
    dates = cuts(real_time(1000.0, 20.0))
    assert len(dates) == 19
    for k, date in dates.items():
        assert date == pytest.approx(1000.0 + k, abs=0.26)


def test_after_a_stall_the_burst_is_dated_when_it_came_and_the_chunk_across_the_gap_before() -> None:
    before = real_time(1000.0, 4.5)  # 4.5 s of audio, then nothing for 5 s
    resumed = before[-1][0] + 5.0
    burst = [(resumed + i * 0.001, 4000) for i in range(5 * RATE // 4000)]  # the 5 s it held, at once
    dates = cuts([*before, *burst, *real_time(resumed + 0.1, 4.0)])
    for k in range(0, 5):  # cut in time, and chunk 4 (4.0-5.0 s) began before the stall
        assert dates[k] == pytest.approx(1000.0 + k, abs=0.26)
    for k in range(5, 9):  # came in the burst, cut together: dated at the burst
        assert resumed <= dates[k] <= resumed + 0.02, (k, dates[k] - resumed)
    # "The time it came out, less its duration" dates chunk 5 a second before its bytes came.


def test_a_burst_at_connect_is_dated_when_it_came() -> None:
    connect = [(1000.0 + i * 0.001, 4000) for i in range(4 * RATE // 4000)]  # Icecast's 4 s at connect
    dates = cuts([*connect, *real_time(1000.1, 10.0)])
    for k in range(0, 4):
        assert dates[k] == pytest.approx(1000.0, abs=0.02)
    for k in range(5, 13):
        assert dates[k] == pytest.approx(1000.1 + k - 4, abs=0.26)


def test_nothing_to_date_and_memory_spans_about_a_chunk() -> None:
    a = Arrivals()
    assert a.dated(0.0, 1.0) is None
    a.arrived(0, 5.0)
    assert a.dated(0.0, 1.0) is None
    cuts(real_time(1000.0, 600.0), a)
    assert len(a._pieces) <= 2 * RATE // 4000
