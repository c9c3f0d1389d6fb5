"""Following a live HLS playlist: which segments are new, and when to look again. No I/O.

Theory of operation
-------------------
A live media playlist (no ``#EXT-X-ENDLIST``) is a window that slides: the
server appends segments and drops old ones, and ``#EXT-X-MEDIA-SEQUENCE``
numbers its first segment, so every segment has a sequence number that
never changes (RFC 8216 section 6.2.2). A client reloads the playlist and
fetches the segments it has not had yet (section 6.3.4).

:class:`LiveCursor` is that client's memory. Fed each parsed playlist with the
time it was loaded (:meth:`LiveCursor.update`), it answers what to do, in
order, as a list of events:

* :class:`Fetch`: an init section or a segment to fetch and hand on whole;
* :class:`Title`: the ``#EXTINF`` title changed (what a radio is playing),
  placed before the first segment that carries the new one;
* :class:`Skipped`: segments left the window before they were fetched (the
  reader fell behind): the stream goes on with a gap;
* :class:`Ended`: this connection is over; the caller returns and the live
  ingest opens the upstream again (a fresh ffmpeg, a new session).

The first playlist starts near its live edge: its last segments covering
``start_seconds`` (default: the last segment alone), since a gateway that
ingests a radio wants what is on air, not the oldest segment the window
still holds. Each later playlist yields only segments past the last one
handed on. A playlist that has ended already when a connection starts
gives nothing (the ingest retries, with back-off, until the stream is back).
A connection ends when the playlist ends (``#EXT-X-ENDLIST``),
when it restarts (the sequence goes back, or the segment last handed on now
has another URI: the encoder started again), and before an init section
that changes (fMP4: a second ``moov`` cannot follow the first into one
ffmpeg input).

When to reload (section 6.3.4): one target duration after a load that
brought something new, half of one after a load that did not. A playlist
that brings nothing new for ``STALL_TARGETS`` target durations (at least
``MIN_STALL_SECONDS``) is stalled (:meth:`LiveCursor.stalled`): an encoder
that died without ``#EXT-X-ENDLIST``. Target durations from the upstream are
clamped to ``[MIN_TARGET, MAX_TARGET]`` seconds, so a hostile playlist can
make the reader neither spin nor sleep for a day.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from .hls import InitSection, MediaPlaylist, MediaRequest

__all__ = [
    "Ended",
    "Event",
    "Fetch",
    "LiveCursor",
    "MAX_TARGET",
    "MIN_STALL_SECONDS",
    "MIN_TARGET",
    "STALL_TARGETS",
    "Skipped",
    "Title",
    "now_playing_of",
]

MIN_TARGET = 0.5  # seconds: the fastest reload
MAX_TARGET = 30.0  # seconds: the slowest reload
STALL_TARGETS = 3.0  # target durations without a new segment: stalled
MIN_STALL_SECONDS = 6.0

EndReason = Literal["endlist", "restarted", "init_changed"]


@dataclass(frozen=True, slots=True)
class Fetch:
    request: MediaRequest
    sequence: int  # the segment's media sequence number


@dataclass(frozen=True, slots=True)
class Title:
    text: str


@dataclass(frozen=True, slots=True)
class Skipped:
    count: int  # segments that left the window unfetched


@dataclass(frozen=True, slots=True)
class Ended:
    reason: EndReason


Event = Fetch | Title | Skipped | Ended

# Radio HLS often writes `#EXTINF:10,title="Song",artist="Band",url="..."`.
_PAIR = re.compile(r'([A-Za-z][A-Za-z0-9_-]*)="([^"]*)"')


def now_playing_of(title: str | None) -> str | None:
    """What an ``#EXTINF`` title says is playing: ``artist - title`` from key="value" pairs, else the text."""
    if not title:
        return None
    pairs = {key.lower(): value.strip() for key, value in _PAIR.findall(title)}
    if pairs:
        song, artist = pairs.get("title", ""), pairs.get("artist", "")
        text = f"{artist} - {song}" if artist and song else song or artist
        return text or None
    return title.strip() or None


class LiveCursor:
    """Where a reader of one live playlist stands; see the module's theory of operation."""

    def __init__(self, *, start_seconds: float = 0.0) -> None:
        """``start_seconds``: how much of the first playlist's end to start with (0: its last segment)."""
        self.start_seconds = start_seconds
        self.next_sequence: int | None = None  # the first sequence number not handed on yet
        self._last_uri: str | None = None  # the URI of segment next_sequence - 1
        self._init: InitSection | None = None
        self._title: str | None = None
        self._target = 2.0
        self._loaded_at = 0.0
        self._changed = True
        self._last_new: float | None = None

    @property
    def target(self) -> float:
        """The playlist's target duration, clamped (seconds)."""
        return self._target

    def update(self, playlist: MediaPlaylist, now: float) -> list[Event]:
        """What to do with ``playlist``, loaded at ``now`` (seconds, any monotonic clock)."""
        declared = playlist.target_duration or max((s.duration for s in playlist.segments), default=2.0)
        self._target = min(MAX_TARGET, max(MIN_TARGET, declared))
        self._loaded_at = now
        if self._last_new is None:
            self._last_new = now
        first = playlist.media_sequence
        segments = playlist.segments
        events: list[Event] = []
        if self.next_sequence is None:
            if playlist.complete:
                # Over before this connection joined: replaying its last segment
                # at every reconnect would loop it; wait for the stream to return.
                return [Ended("endlist")]
            start = self._edge_start(playlist)
        else:
            if self._restarted(playlist):
                return [Ended("restarted")]
            start = max(0, self.next_sequence - first)
            if first > self.next_sequence:
                events.append(Skipped(first - self.next_sequence))
        self._changed = start < len(segments)
        for index in range(start, len(segments)):
            segment = segments[index]
            if segment.init != self._init:
                if self.next_sequence is not None:  # not the first segment this connection hands on
                    events.append(Ended("init_changed"))
                    return events
                if segment.init is not None:
                    events.append(Fetch(MediaRequest(segment.init.uri, segment.init.byterange, "init", index),
                                        first + index))
                self._init = segment.init
            text = now_playing_of(segment.title)
            if text is not None and text != self._title:
                self._title = text
                events.append(Title(text))
            events.append(Fetch(MediaRequest(segment.uri, segment.byterange, "segment", index), first + index))
            self.next_sequence = first + index + 1
            self._last_uri = segment.uri
        if self.next_sequence is None:
            self.next_sequence = first + len(segments)
        if self._changed:
            self._last_new = now
        if playlist.complete:
            events.append(Ended("endlist"))
        return events

    def _edge_start(self, playlist: MediaPlaylist) -> int:
        """The index to start a first playlist at: its last segments covering ``start_seconds``."""
        index = len(playlist.segments)
        covered = 0.0
        while index > 0:
            index -= 1
            covered += playlist.segments[index].duration
            if covered >= self.start_seconds:
                break
        return index

    def _restarted(self, playlist: MediaPlaylist) -> bool:
        """The sequence went back, or the segment last handed on has another URI now."""
        assert self.next_sequence is not None
        last = self.next_sequence - 1
        newest = playlist.media_sequence + len(playlist.segments) - 1
        if playlist.segments and newest < last:
            return True
        position = last - playlist.media_sequence
        if 0 <= position < len(playlist.segments) and self._last_uri is not None:
            return playlist.segments[position].uri != self._last_uri
        return False

    def next_load_at(self) -> float:
        """When to reload: a target duration after a load that brought something, half of one otherwise."""
        return self._loaded_at + (self._target if self._changed else self._target / 2)

    @property
    def stall_seconds(self) -> float:
        """How long a playlist may bring nothing new before it is stalled."""
        return max(MIN_STALL_SECONDS, STALL_TARGETS * self._target)

    def stalled(self, now: float) -> bool:
        """Whether the playlist has brought nothing new for too long (an encoder gone without ENDLIST)."""
        return self._last_new is not None and now - self._last_new > self.stall_seconds
