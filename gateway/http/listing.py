"""``GET /v1/tracks``: the library, then the recently registered tracks, without stalling the loop.

Theory of operation: the library is walked in a worker thread, at most once
per ``LIBRARY_TTL`` seconds however many requests ask (one walk at a time;
the others wait for it), and at once when a live change replaced the
library source; only files not seen by the previous walk are registered.
The library part of the answer (up to 10,000 tracks) is encoded once, in a
worker thread, and kept while the catalog hands out the very same ``Track``
objects (records are immutable: a changed record, tags applied, is a new
object). The registered part is at most 100 records read from the catalog's
index, encoded on each request.
So a request costs the loop a few hundred microseconds whatever the size of
the library or of the catalog, and ``/healthz`` stays fast beside any number
of listings.
"""

from __future__ import annotations

import asyncio
import json
import time

from aiohttp import web

from ..media.catalog import Track, TrackCatalog
from ..sources.local import LocalSource

__all__ = ["LIBRARY_TTL", "LISTING", "Listing"]

# How long one walk of the library answers for.
LIBRARY_TTL = 10.0


def _encode(tracks: list[Track], base: str) -> str:
    return ",".join(json.dumps(t.public(base), separators=(",", ":")) for t in tracks)


class Listing:
    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._walked_at = -LIBRARY_TTL
        self._walked: LocalSource | None = None  # the source of the last walk
        self._library_ids: list[str] = []
        self._known: set[str] = set()
        self._local_key: tuple[str, list[Track]] | None = None
        self._local_json = ""

    async def _library(self, local: LocalSource | None, catalog: TrackCatalog) -> list[str]:
        """The library's track ids, walked again once ``LIBRARY_TTL`` has passed."""
        if local is None:
            return []
        async with self._lock:
            # A live change replaces the source (other directories): walk the new one at once.
            if local is self._walked and time.monotonic() - self._walked_at < LIBRARY_TTL:
                return self._library_ids
            found = await asyncio.to_thread(local.scan)
            for track in found:
                if track.id not in self._known or catalog.get(track.id) is None:
                    catalog.add(track)
            self._library_ids = [t.id for t in found]
            self._known = set(self._library_ids)
            self._walked_at = time.monotonic()
            self._walked = local
            return self._library_ids

    async def library(self, local: LocalSource | None, catalog: TrackCatalog) -> list[Track]:
        """The library's tracks, as the last walk found them, then (in a cluster) those only
        other nodes hold: every node lists the same library."""
        ids = await self._library(local, catalog)
        own = [t for t in (catalog.get(i) for i in ids) if t is not None]
        mine = set(ids)
        return [*own, *(t for t in catalog.library_elsewhere() if t.id not in mine)]

    async def listed(self, local: LocalSource | None, catalog: TrackCatalog) -> list[Track]:
        """What ``GET /v1/tracks`` lists: the library, then the newest listed URL and SoundCloud tracks."""
        return [*await self.library(local, catalog), *self._listed_remote(catalog)]

    @staticmethod
    def _listed_remote(catalog: TrackCatalog) -> list[Track]:
        # A registered URL is listed once a transcode of it completed: registering
        # checks only the URL, and a 404, an HTML page or a file that is not audio
        # must not reach every visitor's list.
        return [t for t in catalog.recent(listed=True) if t.source != "local"]

    async def body(self, local: LocalSource | None, catalog: TrackCatalog, base: str) -> bytes:
        tracks = await self.library(local, catalog)
        # Track records are immutable: the same objects mean the same library part.
        cached = self._local_key
        if cached is None or cached[0] != base or len(cached[1]) != len(tracks) or any(
                a is not b for a, b in zip(cached[1], tracks, strict=True)):
            key = (base, tracks)
            self._local_json = await asyncio.to_thread(_encode, tracks, base)
            self._local_key = key
        recent = _encode(self._listed_remote(catalog), base)
        parts = [p for p in (self._local_json, recent) if p]
        return ('{"tracks":[' + ",".join(parts) + "]}").encode()


LISTING = web.AppKey("listing", Listing)
