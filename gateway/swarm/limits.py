"""The control protocol's limits, and the token bucket that enforces the rates.

Theory of operation
-------------------

Every number a peer is told in ``welcome``'s ``limits`` (and the few it is
not told, such as the strikes a misbehaving peer has) is a constant here, so
that ``messages`` (what a frame may hold), ``hub`` (how often, how much) and
the ``welcome`` itself read the same value. docs/websocket.md is the
contract these constants implement.

``TokenBucket`` is pure: ``now`` is passed in, so rate tests are exact.
"""

from __future__ import annotations

from .tracker import MAX_CANDIDATES, MAX_CHUNKS, MAX_RANGES, MAX_WANT

__all__ = [
    "TokenBucket",
    "MAX_MESSAGE_BYTES",
    "MESSAGES_PER_SECOND",
    "BURST",
    "STATS_INTERVAL",
    "STATS_PER_SECOND",
    "STATS_BURST",
    "MAX_SIGNAL_BYTES",
    "SIGNAL_BYTES_PER_SECOND",
    "SIGNAL_BURST_BYTES",
    "STRIKES",
    "STRIKES_PER_SECOND",
    "IDLE_TIMEOUT",
    "MAX_SLOTS_IN_USE",
    "MAX_REPORT_BYTES",
    "MAX_REPORT_STALLS",
    "MAX_STARTUP_SECONDS",
    "CLOSE_IDLE",
    "CLOSE_POLICY",
    "MAX_CANDIDATES",
    "MAX_CHUNKS",
    "MAX_RANGES",
    "MAX_WANT",
]

MAX_MESSAGE_BYTES = 64 * 1024
MESSAGES_PER_SECOND = 50
BURST = 100
STATS_INTERVAL = 5
# Stats have a bucket of their own so a peer cannot inflate the metrics by
# reporting often: a burst of 4, then about one report per 2 s.
STATS_PER_SECOND = 0.5
STATS_BURST = 4
MAX_SIGNAL_BYTES = 32 * 1024
# Signals have a byte budget so a peer cannot flood the one it was introduced to.
SIGNAL_BYTES_PER_SECOND = 64 * 1024
SIGNAL_BURST_BYTES = 256 * 1024
# Every refused message costs a strike; a peer out of strikes is closed.
STRIKES = 50
STRIKES_PER_SECOND = 1.0
IDLE_TIMEOUT = 600
MAX_SLOTS_IN_USE = 1000

MAX_REPORT_BYTES = 1 << 30  # 1 GiB in one ~5 s report is ~1.7 Gbit/s of audio: a lie
MAX_REPORT_STALLS = 1000
MAX_STARTUP_SECONDS = 600.0

# RFC 6455 7.4.1: 1008 policy violation (out of strikes). Beyond RFC 6455's
# codes: 4000 for a peer silent past idle_timeout.
CLOSE_POLICY = 1008
CLOSE_IDLE = 4000


class TokenBucket:
    """``rate`` tokens a second, up to ``burst``; ``take(now, cost)`` spends them.

    Time is passed in (``now``, seconds, monotonic), so tests are exact.
    """

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Spend ``cost`` tokens if there are enough; whether it did."""
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False
