"""The track registry: what each track id stands for.

A track id is a hash of the source's identity (the normalized URL, the
library file's path), so the same upstream always gets the same id, across
restarts and across gateways. Registered tracks persist beside the chunk
store but are never evicted with it: a tiny record per track.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import diskcache

__all__ = ["Track", "TrackRegistry", "track_id_for"]


def track_id_for(source: str, identity: str) -> str:
    return hashlib.sha256(f"{source}\n{identity}".encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Track:
    id: str
    source: str  # "url" | "local" | "soundcloud"
    locator: str  # URL or file path: never shown to clients for local files
    title: str
    duration: float | None = None
    artist: str | None = None
    created: float = 0.0
    # Optional, set by sources that know them (SoundCloud); old records lack them.
    artwork: str | None = None
    permalink: str | None = None
    preview: bool = False  # a short preview (e.g. SoundCloud's 30 s snippet), not the full track

    def public(self) -> dict[str, Any]:
        """The ``{track}`` object of the HTTP contract."""
        out: dict[str, Any] = {
            "id": self.id,
            "title": self.title,
            "source": self.source,
            "duration": self.duration,
        }
        if self.artist:
            out["artist"] = self.artist
        if self.artwork:
            out["artwork"] = self.artwork
        if self.permalink:
            out["permalink"] = self.permalink
        if self.preview:
            out["preview"] = True
        if self.source != "local":
            out["url"] = self.locator
        return out


class TrackRegistry:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._db = diskcache.Cache(str(directory), eviction_policy="none", size_limit=2**40)
        # Every request looks its track up; records are tiny, keep them all.
        self._memory: dict[str, Track] = {}

    def get(self, track_id: str) -> Track | None:
        track = self._memory.get(track_id)
        if track is not None:
            return track
        raw = self._db.get(("track", track_id))
        if not isinstance(raw, dict):
            return None
        track = self._memory[track_id] = Track(**raw)
        return track

    def add(self, track: Track) -> tuple[Track, bool]:
        """Register ``track`` unless its id is known; returns (track, created)."""
        existing = self.get(track.id)
        if existing is not None:
            return existing, False
        if not track.created:
            track = replace(track, created=time.time())
        self.put(track)
        return track, True

    def put(self, track: Track) -> None:
        self._db.set(("track", track.id), asdict(track))
        self._memory[track.id] = track

    def set_duration(self, track_id: str, duration: float) -> None:
        track = self.get(track_id)
        if track is not None and track.duration != duration:
            self.put(replace(track, duration=round(duration, 3)))

    def recent(self, source: str | None = None, limit: int = 100) -> list[Track]:
        tracks = []
        for key in self._db.iterkeys():
            if isinstance(key, tuple) and key[0] == "track":
                track = self.get(key[1])
                if track is not None and (source is None or track.source == source):
                    tracks.append(track)
        tracks.sort(key=lambda t: t.created, reverse=True)
        return tracks[:limit]

    def remove(self, track_id: str) -> bool:
        self._memory.pop(track_id, None)
        return bool(self._db.delete(("track", track_id)))

    def close(self) -> None:
        self._db.close()
