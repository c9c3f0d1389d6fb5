"""The virtual player's state of one track: what is known of it, held, and played.

A ``Track`` is what the headless peer holds for the track it plays: the
manifest (re-read while a live transcode grows it), the chunk hashes, the
verified chunks and init segment, the on-disk cache, the download
scheduler (``peer.scheduler``) and the playhead (``peer.playback``). It does
no I/O of its own but the cache's file reads, and knows no clock: ``now``
is passed in (audio seconds, the ``VirtualClock``'s). Starting the next
track of a playlist is a new ``Track``, so nothing of the old one meets the
new one's hashes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from protocol.wire import channel_label

from .cache import ChunkCache
from .manifest import Manifest
from .playback import Playback, State
from .scheduler import Scheduler, Settings

__all__ = ["Track", "sha256"]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Track:
    def __init__(self, track: str, settings: Settings) -> None:
        self.id = track
        self.manifest: Manifest = {}
        self.rendition = ""
        self.label = ""  # the DataChannel label of its swarm
        self.hashes: dict[int, str] = {}
        self.chunks: dict[int, bytes] = {}  # verified
        self.init: bytes | None = None  # verified
        self.cache: ChunkCache | None = None
        self.sched = Scheduler(settings)
        self.playback = Playback()

    @property
    def complete(self) -> bool:
        """The manifest lists every chunk (the transcode has ended)."""
        return bool(self.manifest.get("complete"))

    def set_manifest(self, manifest: Manifest) -> bool:
        """A (newer) manifest; False, and nothing changes, when its rendition is not ours."""
        if self.rendition and manifest.get("rendition") != self.rendition:
            return False
        self.manifest = manifest
        self.rendition = manifest["rendition"]
        self.label = channel_label(self.id, self.rendition)
        for c in manifest["chunks"]:
            self.hashes[int(c["index"])] = c["sha256"]
        self.sched.set_manifest(manifest)
        return True

    def open_cache(self, root: Path) -> None:
        """Use the cache under ``root``: what it holds that matches the manifest is held."""
        self.cache = ChunkCache(root, self.id, self.rendition)
        for index, data in self.cache.load(self.manifest).items():
            self.chunks[index] = data
        self.sched.set_cached(self.chunks)
        self.init = self.verified_init(self.cache.read_init())

    def verified_init(self, data: bytes | None) -> bytes | None:
        """``data`` when it is the manifest's init segment, else None."""
        init = self.manifest.get("init")
        if data is not None and init is not None and sha256(data) == init["sha256"]:
            return data
        return None

    def matches(self, index: int, data: bytes) -> bool:
        """Whether ``data`` is chunk ``index`` as the manifest says."""
        return sha256(data) == self.hashes.get(index)

    def mismatches(self) -> int:
        """Chunks held whose hash is wrong (must be none)."""
        return sum(1 for i, d in self.chunks.items() if not self.matches(i, d))

    def known_end(self) -> float | None:
        """The end of the track in audio seconds, once the manifest is complete."""
        return self.sched.known_end() if self.sched.complete else None

    def advance(self, now: float) -> State:
        """The playhead at ``now`` (audio seconds): playing, stalled, or ended."""
        return self.playback.advance(
            now, self.sched.buffered_ahead(self.playback.position), self.known_end(), ready=self.init is not None
        )
