"""SoundCloud's own errors, beside the project's tree in ``gateway/errors.py``."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from ...errors import Overloaded, ZtreamError

__all__ = ["RateLimited", "Unavailable"]


class Unavailable(ZtreamError):
    """451: SoundCloud does not stream the track here (geo-blocked, ``policy: BLOCK``)."""

    status = 451
    code = "unavailable_for_legal_reasons"


class RateLimited(Overloaded):
    """503 with ``retry_after``: SoundCloud answered 429 and we are backing off.

    ``retry_after`` is computed when read, so an error remembered for a
    while (the transcoder keeps failures briefly) still tells the truth.
    """

    code = "soundcloud_rate_limited"

    def __init__(self, detail: str, *, retry_at: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(detail)
        self._retry_at = retry_at
        self._clock = clock

    @property
    def retry_after(self) -> int:
        """Whole seconds until SoundCloud may be asked again (at least 1)."""
        return max(1, math.ceil(self._retry_at - self._clock()))

    @retry_after.setter
    def retry_after(self, value: int | None) -> None:
        # A wait told later counts from now (the base class may set it).
        if value is not None:
            self._retry_at = self._clock() + value
