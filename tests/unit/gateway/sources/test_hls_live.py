"""The live playlist cursor (gateway.sources.hls_live): pure, with the time given."""

from __future__ import annotations

import pytest

from gateway.sources import hls_live
from gateway.sources.hls import MediaPlaylist, parse_playlist
from gateway.sources.hls_live import (
    MAX_TARGET,
    MIN_STALL_SECONDS,
    MIN_TARGET,
    Ended,
    Fetch,
    LiveCursor,
    Skipped,
    Title,
    now_playing_of,
)

BASE = "http://radio.example/live/index.m3u8"


def live(first: int, count: int, *, target: int = 2, init: str | None = None, endlist: bool = False,
         titles: dict[int, str] | None = None, prefix: str = "seg") -> MediaPlaylist:
    """A live playlist listing segments ``first .. first + count - 1`` (named by their sequence number)."""
    lines = ["#EXTM3U", f"#EXT-X-TARGETDURATION:{target}", f"#EXT-X-MEDIA-SEQUENCE:{first}"]
    if init:
        lines.append(f'#EXT-X-MAP:URI="{init}"')
    for n in range(first, first + count):
        title = (titles or {}).get(n, "")
        lines += [f"#EXTINF:{target}.0,{title}", f"{prefix}{n}.ts"]
    if endlist:
        lines.append("#EXT-X-ENDLIST")
    parsed = parse_playlist("\n".join(lines) + "\n", BASE)
    assert isinstance(parsed, MediaPlaylist)
    return parsed


def fetched(events: list[hls_live.Event]) -> list[str]:
    return [e.request.uri.rsplit("/", 1)[1] for e in events if isinstance(e, Fetch)]


def test_first_playlist_starts_at_the_edge_then_only_new_segments() -> None:
    cursor = LiveCursor()
    assert fetched(cursor.update(live(10, 5), now=0.0)) == ["seg14.ts"]
    assert cursor.next_load_at() == 2.0  # something new: one target duration
    assert fetched(cursor.update(live(11, 5), now=2.0)) == ["seg15.ts"]
    assert cursor.update(live(11, 5), now=4.0) == []  # nothing new
    assert cursor.next_load_at() == 5.0  # half a target duration (RFC 8216 section 6.3.4)
    assert fetched(cursor.update(live(13, 5), now=5.0)) == ["seg16.ts", "seg17.ts"]
    assert [e.sequence for e in cursor.update(live(14, 5), now=7.0) if isinstance(e, Fetch)] == [18]


def test_start_seconds_takes_more_of_the_window() -> None:
    cursor = LiveCursor(start_seconds=5.0)
    assert fetched(cursor.update(live(0, 5), now=0.0)) == ["seg2.ts", "seg3.ts", "seg4.ts"]
    assert fetched(LiveCursor(start_seconds=1000).update(live(0, 5), now=0.0)) == [f"seg{i}.ts" for i in range(5)]


def test_a_reader_that_fell_behind_skips_what_left_the_window() -> None:
    cursor = LiveCursor()
    cursor.update(live(0, 3), now=0.0)  # had seg2
    events = cursor.update(live(10, 3), now=20.0)
    assert events[0] == Skipped(7)  # seg3..seg9 are gone
    assert fetched(events) == ["seg10.ts", "seg11.ts", "seg12.ts"]


def test_init_section_once_and_a_change_ends_the_connection() -> None:
    cursor = LiveCursor()
    events = cursor.update(live(0, 3, init="init.mp4"), now=0.0)
    assert fetched(events) == ["init.mp4", "seg2.ts"] and events[0].request.kind == "init"  # type: ignore[union-attr]
    assert fetched(cursor.update(live(1, 3, init="init.mp4"), now=2.0)) == ["seg3.ts"]
    assert cursor.update(live(2, 3, init="init2.mp4"), now=4.0) == [Ended("init_changed")]


def test_restart_is_the_end_of_a_connection() -> None:
    cursor = LiveCursor()
    cursor.update(live(100, 5), now=0.0)
    assert cursor.update(live(0, 2), now=2.0) == [Ended("restarted")]  # the sequence went back
    cursor = LiveCursor()
    cursor.update(live(100, 5), now=0.0)
    # Same numbers, other segments: an encoder that started again where the last one was.
    assert cursor.update(live(101, 5, prefix="new"), now=2.0) == [Ended("restarted")]


def test_endlist_ends_after_the_last_segments() -> None:
    cursor = LiveCursor()
    cursor.update(live(0, 3), now=0.0)
    events = cursor.update(live(1, 4, endlist=True), now=2.0)
    assert fetched(events) == ["seg3.ts", "seg4.ts"] and events[-1] == Ended("endlist")
    # A connection that finds it ended already fetches nothing (no last segment replayed at each retry).
    assert LiveCursor().update(live(1, 4, endlist=True), now=9.0) == [Ended("endlist")]


def test_titles_change_before_their_segment() -> None:
    cursor = LiveCursor(start_seconds=100)
    titles = {0: "Band - First", 1: "Band - First", 2: 'title="Second",artist="Other",url="x"', 3: ""}
    events = cursor.update(live(0, 4, titles=titles), now=0.0)
    assert events == [
        Title("Band - First"), events[1], events[2], Title("Other - Second"), events[4], events[5]]
    assert fetched(events) == ["seg0.ts", "seg1.ts", "seg2.ts", "seg3.ts"]


@pytest.mark.parametrize(
    ("text", "shown"),
    [(None, None), ("", None), ("  Artist - Song ", "Artist - Song"), ('title="Song"', "Song"),
     ('artist="A",title="S"', "A - S"), ('artist="A"', "A"), ('title="",artist=""', None)],
)
def test_now_playing_of(text: str | None, shown: str | None) -> None:
    assert now_playing_of(text) == shown


def test_stall_and_clamped_targets() -> None:
    cursor = LiveCursor()
    cursor.update(live(0, 3, target=2), now=0.0)
    assert not cursor.stalled(MIN_STALL_SECONDS - 0.1)
    cursor.update(live(0, 3, target=2), now=5.0)  # nothing new since 0
    assert cursor.stalled(MIN_STALL_SECONDS + 0.1)
    fast = LiveCursor()
    fast.update(live(0, 1, target=0), now=0.0)  # #EXT-X-TARGETDURATION:0 and #EXTINF:0
    assert fast.target == MIN_TARGET and fast.next_load_at() == MIN_TARGET
    slow = LiveCursor()
    slow.update(live(0, 1, target=86_400), now=0.0)
    assert slow.target == MAX_TARGET and slow.stall_seconds == 3 * MAX_TARGET


def test_all_is_exported() -> None:
    assert sorted(hls_live.__all__) == sorted(n for n in hls_live.__all__ if hasattr(hls_live, n))
