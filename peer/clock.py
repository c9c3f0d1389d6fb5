"""The virtual clock: audio time that runs ``speed`` times faster than real time.

Every rule about playback (the scheduler's deadlines, the emergency zone,
the playhead, upload slot hold times) is in audio seconds and reads
``now()``; network timeouts stay in real seconds (``real()``). At speed 1 the
two advance together. One clock can be shared by every peer of a swarm.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["VirtualClock"]


class VirtualClock:
    def __init__(self, speed: float = 1.0, *, real: Callable[[], float] = time.monotonic) -> None:
        if not speed > 0:
            raise ValueError("speed must be positive")
        self.speed = float(speed)
        self._real = real
        self._origin = real()

    def now(self) -> float:
        """Audio seconds since the clock was made."""
        return (self._real() - self._origin) * self.speed

    def real(self) -> float:
        """Real (monotonic) seconds, for network timeouts."""
        return self._real()

    def to_real(self, audio_seconds: float) -> float:
        """How long ``audio_seconds`` of audio take in real time."""
        return audio_seconds / self.speed
