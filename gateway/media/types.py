"""The JSON shapes of the media path, as the HTTP contract (docs/http.md) shows them.

``Manifest`` is what ``GET /v1/tracks/{id}/manifest`` answers and what the
chunk store keeps for a finished transcode; ``TrackJSON`` is the ``{track}``
object. They are ``TypedDict``s, not classes, because they are the JSON itself:
built once, stored, and sent as they are.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

from protocol.manifest import ChunkEntry, InitEntry

__all__ = [
    "SourceKind", "PieceKind", "ServedKind", "InitEntry", "ChunkEntry", "Manifest", "RenditionJSON", "TrackJSON",
    "WaveformJSON", "LiveState", "LiveInitEntry", "LiveChunkEntry", "LiveManifest",
]

# Where a track comes from: the ``source`` of a ``Track`` and of ``{track}``,
# the key of the media service's source mapping, the ``source`` label of
# ``ztream_upstream_bytes_total``.
SourceKind = Literal["url", "local", "soundcloud"]
# What a stream yields: the init segment, then chunks.
PieceKind = Literal["init", "chunk"]
# The ``kind`` label of ``ztream_server_bytes_total``: how audio left the gateway.
ServedKind = Literal["init", "chunk", "stream"]


class RenditionJSON(TypedDict):
    name: str  # the value of ``?rendition=``: "webm" (the default), "fmp4-opus", "fmp4-aac"
    mime: str  # what a player gives ``MediaSource.isTypeSupported``


class Manifest(TypedDict):
    id: str
    rendition: str
    mime: str
    bitrate: int
    complete: bool
    duration: float | None  # known once complete
    # The duration expected from the input's header (or its size and bit rate)
    # while the transcode runs, the decoded one once complete; None if unknown.
    expected_duration: float | None
    duration_estimated: bool  # expected_duration is an estimate (complete is false)
    init: InitEntry | None  # None only before the init segment exists
    chunks: list[ChunkEntry]
    # EBU R128 integrated loudness (LUFS) and true peak (dBTP), measured by the
    # same transcode; None until complete (and for digital silence).
    loudness_lufs: float | None
    true_peak_db: float | None
    # The renditions the track can be served in; added when served, never stored.
    renditions: NotRequired[list[RenditionJSON]]


class TrackJSON(TypedDict):
    id: str
    title: str
    source: SourceKind
    duration: float | None
    artwork_url: str  # GET /v1/tracks/{id}/artwork: the file's picture or a placeholder
    waveform_url: str  # GET /v1/tracks/{id}/waveform
    artist: NotRequired[str]
    album: NotRequired[str]
    track_number: NotRequired[int]
    year: NotRequired[int]
    artwork_width: NotRequired[int]
    artwork_height: NotRequired[int]
    artwork: NotRequired[str]
    permalink: NotRequired[str]
    preview: NotRequired[bool]
    url: NotRequired[str]  # the upstream URL; never sent for local files
    live: NotRequired[bool]  # only present (true) for a live track (docs/live.md)


class WaveformJSON(TypedDict):
    """``GET /v1/tracks/{id}/waveform``: peaks 0..1 of the mono downmix, evenly spread over ``duration``."""

    version: int
    length: int
    peaks: list[float]
    duration: float  # seconds the peaks cover (grows while the transcode runs)
    complete: bool


# What a live ingest is doing: "starting" until its first chunk, "live" while
# chunks come, "reconnecting" while it waits to open the upstream again.
LiveState = Literal["starting", "live", "reconnecting"]


class LiveInitEntry(TypedDict):
    size: int
    sha256: str
    epoch: int  # the ingest session whose init segment this is (GET .../init?epoch=N)


class LiveChunkEntry(TypedDict):
    index: int  # never repeats for a track id (docs/live.md#indices)
    start: float  # seconds on the session's timeline
    duration: float
    size: int
    sha256: str
    wall: float  # the gateway's UNIX time when the chunk's first sample arrived from the upstream
    epoch: int  # the init segment the chunk decodes with


class LiveManifest(TypedDict):
    """``GET /v1/tracks/{id}/manifest`` of a live track (docs/live.md): the window, oldest first."""

    id: str
    rendition: str
    mime: str
    bitrate: int
    live: Literal[True]
    complete: Literal[False]
    duration: None
    expected_duration: None
    duration_estimated: Literal[False]
    loudness_lufs: None
    true_peak_db: None
    epoch: int  # the current init segment's epoch
    init: LiveInitEntry | None  # None only before the first session's init segment
    chunks: list[LiveChunkEntry]  # with ?after=N, only those whose index is past N
    first: int | None  # the oldest chunk's index in the window (what a player may forget before)
    edge: int | None  # the newest chunk's index; None before the first chunk
    state: LiveState
    title: str | None  # now playing (ICY StreamTitle, HLS metadata)
    station: str | None  # the declared name or the upstream's icy-name
    window_seconds: float
    chunk_seconds: float
    start_behind_seconds: float
    peer_wait_seconds: float  # how long a listener that is not the elected fetcher waits for a peer
    renditions: NotRequired[list[RenditionJSON]]
