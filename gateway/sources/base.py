"""What every source shares. The interface they implement, ``Source`` and its
optional capabilities, is defined by the media path that uses it
(``gateway/media/upstream.py``)."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["CountBytes"]

# Called with the size of every piece read from an upstream (for metrics).
CountBytes = Callable[[int], None]
