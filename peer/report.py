"""What one headless peer did: the report ``ztream peer --json`` prints and the benchmarks sum.

Byte counts are audio bytes (init and chunks); times are real seconds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

__all__ = ["PeerReport"]


@dataclass
class PeerReport:
    """What one peer did; byte counts are audio bytes (init and chunks)."""

    name: str = ""
    peer_id: str = ""
    track: str = ""
    rendition: str = ""
    http_down_bytes: int = 0
    p2p_down_bytes: int = 0
    p2p_live_down_bytes: int = 0  # the part of p2p_down_bytes that was live chunks
    p2p_up_bytes: int = 0
    # Verified bytes by the neighbour (peer id) they came from, over the whole run.
    p2p_sources: dict[str, int] = field(default_factory=dict)
    stalls: int = 0
    stalled_seconds: float = 0.0
    startup_seconds: float | None = None  # real seconds from play to sound
    verify_failures: int = 0
    discarded: int = 0  # bad chunks that arrived after their sender was banned (or we left): dropped unread
    bad_sent: int = 0  # corrupt chunks this peer sent (a --bad-peers peer)
    chunks_server: int = 0
    chunks_peer: int = 0
    chunks_cache: int = 0
    expired: int = 0
    chokes_sent: int = 0
    chokes_received: int = 0
    links_opened: int = 0
    connect_failures: int = 0
    protocol_errors: int = 0
    banned: int = 0
    held: int = 0
    total_chunks: int = 0
    hash_mismatches: int = 0  # chunks held at the end whose hash is wrong: must be 0
    played_to_end: bool = False
    left_early: bool = False
    stats_refused: int = 0
    tracks_played: int = 0  # tracks played to their end
    track_startups: list[float] = field(default_factory=list)  # real seconds from a track's start to sound
    track_p2p_bytes: list[int] = field(default_factory=list)  # peer bytes of each track played to its end
    wants: int = 0  # `want` frames sent to the tracker
    wants_at_start: int = 0  # of those, sent in the first second of a track
    wants_dropped: int = 0  # `want` frames dropped (drop_wants_from)
    introduces: int = 0  # `introduce` frames sent
    introduced: int = 0  # introductions the server answered with the peer
    lookups: int = 0  # LOOKUPs sent to neighbours
    lookup_ahead_failures: int = 0  # next-track manifests that could not be read ahead
    live: bool = False  # the track was live
    # While a live track played, twice a second: (UNIX time, seconds from the upstream to
    # the playhead, "server" or "peer": where the chunk playing came from).
    live_samples: list[tuple[float, float, str]] = field(default_factory=list)
    live_jumps: int = 0  # jumps back to the edge (too far behind)
    manifest_reads: int = 0  # re-reads of the playing track's manifest (live: deltas after the first)
    manifest_bytes: int = 0  # their JSON bytes (decompressed)
    live_skipped: int = 0  # chunks that left the window before they arrived

    def as_dict(self) -> dict[str, object]:
        return asdict(self)
