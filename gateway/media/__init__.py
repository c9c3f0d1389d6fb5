"""What a track is, how its bytes are made and how they are kept.

- ``catalog``: ``Track`` and ``TrackCatalog``, what each track id stands for;
- ``service``: ``MediaService``, one transcode per track that any number of
  requests follow, answered from the store once complete;
- ``flight``: ``Flight``, one transcode as its followers see it;
- ``events``: what a transcode yields (the service alone stores it);
- ``transcoding``: ``LocalTranscoder``, this node's own transcode of a flight
  as events (input, ffmpeg, extras found);
- ``upstream``: ``Source`` and its optional capabilities, as protocols;
- ``store``: ``ChunkStore``, init segments, chunks and manifests on disk;
- ``types``: the manifest and ``{track}`` JSON shapes.

The services hang on the app under the keys below (see ``gateway.app``).
"""

from __future__ import annotations

from aiohttp import web

from .catalog import TrackCatalog
from .service import MediaService
from .store import ChunkStore

__all__ = ["CATALOG", "MEDIA", "STORE"]

CATALOG = web.AppKey("catalog", TrackCatalog)
MEDIA = web.AppKey("media", MediaService)
STORE = web.AppKey("store", ChunkStore)
