"""The control protocol's limits, in one place.

Theory of operation
-------------------

Every number a peer is told in ``welcome``'s ``limits`` (and the few it is
not told, such as the strikes a misbehaving peer has) is a constant here, so
that the codec (what a frame may hold), the tracker and the hub (how often,
how much) and the ``welcome`` itself read the same value. docs/websocket.md
is the contract these constants implement. The gateway's token bucket, which
enforces the rates, is ``gateway/swarm/bucket.py``. The DataChannel format's
own bounds (piece size, ranges in one HAVE) are in ``wire.py`` beside the
format they bound (docs/wire.md).
"""

from __future__ import annotations

__all__ = [
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
    "MAX_INDEX",
    "MAX_LIVE_LATENCY_SECONDS",
    "MAX_HOLDERS",
    "MAX_INTRODUCTIONS",
    "MAX_RANGES",
    "MAX_TRACKS",
    "MAX_WANT",
    "MAX_SOURCES",
    "TURN_PER_SECOND",
    "TURN_BURST",
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

# Neighbours named in one report's ``sources``: more than anyone keeps open.
MAX_SOURCES = 32
# TURN credentials asked (``turn``), per client address: a burst for a household,
# then one every 10 s (a socket renews every few minutes).
TURN_PER_SECOND = 0.1
TURN_BURST = 10

MAX_REPORT_BYTES = 1 << 30  # 1 GiB in one ~5 s report is ~1.7 Gbit/s of audio: a lie
MAX_REPORT_STALLS = 1000
MAX_STARTUP_SECONDS = 600.0
# A live listener's distance from the upstream (stats.live_latency_seconds):
# ten minutes is far behind any live window (live.window_seconds).
MAX_LIVE_LATENCY_SECONDS = 600.0

# RFC 6455 7.4.1: 1008 policy violation (out of strikes). Beyond RFC 6455's
# codes: 4000 for a peer silent past idle_timeout.
CLOSE_POLICY = 1008
CLOSE_IDLE = 4000

# -- the tracker's bounds --------------------------------------------------------

# 100 000 chunks of 2 s is 55 hours of audio: far past the longest upstream
# allowed (sources.url.max_duration_seconds). A COUNT bound: the most chunk
# indices or runs one message may list (welcome's ``max_chunks``).
MAX_CHUNKS = 100_000
# The largest chunk index: a u32, as the DataChannel wire format carries it.
# A live track's indices grow for as long as it is on the air and never repeat
# (a session starts at twice the seconds since 2026-01-01, docs/live.md), so
# they are far past MAX_CHUNKS: only the count of indices is bounded by that.
MAX_INDEX = 2**32 - 1
# Runs ("ranges") in one holding. An LRU cache with holes fragments a holding;
# 256 runs still cover any realistic pattern and bound memory per holding.
MAX_RANGES = 256
MAX_TRACKS = 16
MAX_HOLDERS = 1000
MAX_INTRODUCTIONS = 256
MAX_WANT = 256
MAX_CANDIDATES = 5
