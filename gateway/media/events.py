"""What a transcode yields: the events a flight is made from.

A transcode, whether this node runs ffmpeg (``transcoding.LocalTranscoder``)
or pulls the track from the cluster node that owns it
(``gateway/cluster/media.py``), writes nothing: it yields events, and
``MediaService`` alone stores them (chunks, extras, catalog, manifest).

In order, a stream of events is:

1. ``InitSegment``, then each ``Cluster`` (``transcode.ebml``): the media;
2. with extras, what the run found besides: ``TagsFound``, ``ArtworkFound``,
   ``WaveformFound`` (each at most once, any of them may be missing);
3. ``Finished`` (the run ended well; its loudness, if measured), or
   ``Failed`` (the error the client is told) at any point; nothing follows
   either.

The media part must hold an init segment and at least one cluster; the
service checks that when the first event after it arrives, before it
stores any extras. The manifest is written once the stream has ended after
``Finished``, so every extra is stored before it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

from transcode.analysis import Loudness, Tags
from transcode.ebml import Cluster, InitSegment

from ..errors import ZtreamError
from .catalog import Track
from .extras import StoredArtwork

__all__ = [
    "ArtworkFound",
    "Cluster",
    "Event",
    "Events",
    "EventsHook",
    "Failed",
    "Finished",
    "InitSegment",
    "TagsFound",
    "WaveformFound",
]


@dataclass(frozen=True, slots=True)
class TagsFound:
    """The file's own tags (title, artist, ...), for the catalog."""

    tags: Tags


@dataclass(frozen=True, slots=True)
class ArtworkFound:
    """The artwork to serve: ``artwork.jpeg`` None means the file has none (the placeholder)."""

    artwork: StoredArtwork


@dataclass(frozen=True, slots=True)
class WaveformFound:
    """The complete waveform, as ``/waveform`` serves it (``"complete": true``)."""

    waveform: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Finished:
    """The transcode ended well; ``loudness`` goes into the manifest (None: not measured)."""

    loudness: Loudness | None = None


@dataclass(frozen=True, slots=True)
class Failed:
    """The transcode failed: ``error`` is what every follower of the flight is told."""

    error: ZtreamError


Event = InitSegment | Cluster | TagsFound | ArtworkFound | WaveformFound | Finished | Failed
Events = AsyncGenerator[Event, None]
# In a cluster a track's events may come from another node (gateway/cluster/media.py):
# hook(track, local) -> events, where local() is this node's own transcode of it.
EventsHook = Callable[[Track, Callable[[], Events]], Events]
