"""What a finished transcode learned besides its chunks: the waveform and the artwork.

Kept beside the chunk store (``<cache dir>/extras``), keyed by track and
rendition, so a restart keeps them and an output of another rendition never
mixes in. A record is written only once the transcode that made it has
ended well, before its manifest (which is written last): so whenever a
manifest is complete its waveform and artwork are there, and a half-done
transcode leaves nothing that looks complete. Records are small (a waveform
is ~12 KB of JSON, an artwork a 500x500 JPEG of ~50 KB); the store is bounded
on its own (``extras_bound``: a twentieth of ``cache.max_bytes``, at least
32 MiB, least recently used first), since a record evicted is only work
again: the next request for it starts a transcode that makes it anew (the
chunks may well still be cached; the output is bit-exact). ``purge``
removes a track's.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diskcache

__all__ = ["ExtrasStore", "StoredArtwork", "extras_bound"]

MIN_EXTRAS_BYTES = 32 * 2**20


def extras_bound(cache_max_bytes: int) -> int:
    """The extras store's size bound for a chunk cache of ``cache_max_bytes``."""
    return max(MIN_EXTRAS_BYTES, cache_max_bytes // 20)


@dataclass(frozen=True, slots=True)
class StoredArtwork:
    """The track's artwork as stored: ``jpeg`` None means the file has none (the placeholder applies)."""

    jpeg: bytes | None
    width: int
    height: int

    @property
    def etag(self) -> str:
        return hashlib.sha256(self.jpeg).hexdigest()[:32] if self.jpeg is not None else "placeholder"


class ExtrasStore:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._db = diskcache.Cache(
            str(directory), eviction_policy="least-recently-used", size_limit=max_bytes, tag_index=True
        )

    def volume(self) -> int:
        """Bytes on disk (diskcache's estimate: the records and the database)."""
        return int(self._db.volume())

    def get_waveform(self, track: str, rendition: str) -> dict[str, Any] | None:
        raw = self._db.get(("waveform", track, rendition))
        if not isinstance(raw, str):
            return None
        try:
            value = json.loads(raw)
        except ValueError:
            return None
        return value if isinstance(value, dict) and value.get("complete") is True else None

    def put_waveform(self, track: str, rendition: str, waveform: dict[str, Any]) -> None:
        if waveform.get("complete") is not True:
            raise ValueError("only a complete waveform is stored")
        self._db.set(("waveform", track, rendition), json.dumps(waveform, separators=(",", ":")), tag=track)

    def get_artwork(self, track: str, rendition: str) -> StoredArtwork | None:
        raw = self._db.get(("artwork", track, rendition))
        if not isinstance(raw, tuple) or len(raw) != 3:
            return None
        jpeg, width, height = raw
        if not (jpeg is None or isinstance(jpeg, bytes)) or not isinstance(width, int) or not isinstance(height, int):
            return None
        return StoredArtwork(jpeg=jpeg, width=width, height=height)

    def put_artwork(self, track: str, rendition: str, artwork: StoredArtwork) -> None:
        self._db.set(("artwork", track, rendition), (artwork.jpeg, artwork.width, artwork.height), tag=track)

    def purge(self, track: str) -> int:
        return int(self._db.evict(track))

    def close(self) -> None:
        self._db.close()
