"""A virtual player: the playhead over buffered chunks, stalls and start-up.

Theory of operation
-------------------
The headless peer has no audio device; what matters is whether a real
player would have played smoothly. ``Playback`` is that player as a state
machine driven by a clock passed in (``now``, seconds of audio time: the
virtual clock, which runs ``speed`` times faster than real time):

    STARTING --(init and the first chunk buffered)--> PLAYING
    PLAYING  --(the playhead reaches unbuffered audio)--> STALLED (stalls += 1)
    STALLED  --(audio buffered at the playhead again)--> PLAYING
    PLAYING  --(the playhead reaches the end of a complete track)--> ENDED

``advance(now, ahead, end, ready)`` moves the playhead by the time elapsed
since the last call, but never past the ``ahead`` seconds buffered
contiguously from it (``Scheduler.buffered_ahead``). Reaching the buffer's
edge before ``end`` is a stall, as a browser's ``waiting`` event is;
playback resumes as soon as audio is there again. The time spent starting
is not a stall: it is the start-up time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

__all__ = ["State", "Playback"]

EPSILON = 1e-6


class State(Enum):
    STARTING = "starting"
    PLAYING = "playing"
    STALLED = "stalled"
    ENDED = "ended"


@dataclass(slots=True)
class Playback:
    position: float = 0.0
    state: State = State.STARTING
    stalls: int = 0
    stalled_seconds: float = 0.0
    started_at: float | None = None  # clock time when sound began
    _last: float | None = field(default=None, repr=False)

    def advance(self, now: float, ahead: float, end: float | None, ready: bool = True) -> State:
        """Move to ``now``: ``ahead`` seconds are buffered from the playhead,
        ``end`` is the track's length once known for sure (``None`` while a
        live transcode runs), ``ready`` is false until the init segment is in.
        Returns the new state."""
        last = now if self._last is None else self._last
        self._last = now
        dt = max(0.0, now - last)
        if self.state is State.ENDED:
            return self.state
        if end is not None and self.position >= end - EPSILON:
            self.state = State.ENDED
            return self.state
        if self.state is State.STARTING:
            if ready and ahead > EPSILON:
                self.state = State.PLAYING
                self.started_at = now
            return self.state  # the first tick of sound moves nothing yet
        if self.state is State.STALLED:
            self.stalled_seconds += dt
            if ahead > EPSILON:
                self.state = State.PLAYING
            return self.state
        move = min(dt, ahead)
        self.position += move
        if end is not None and self.position >= end - EPSILON:
            self.position = end
            self.state = State.ENDED
        elif move < dt - EPSILON:
            self.state = State.STALLED
            self.stalls += 1
            self.stalled_seconds += dt - move
        return self.state
