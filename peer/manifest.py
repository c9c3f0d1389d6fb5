"""The track manifest as the peer reads it (``GET /v1/tracks/{id}/manifest``, docs/http.md).

A ``TypedDict``, not a class: it is the JSON itself, as the gateway sends it;
its entries are the protocol's (``protocol/manifest.py``).
Only the keys the peer reads are listed; a live manifest may lack ``init``
(None) and is not ``complete`` yet.
"""

from __future__ import annotations

from typing import TypedDict

from protocol.manifest import ChunkEntry, InitEntry

__all__ = ["ChunkEntry", "InitEntry", "Manifest"]


class Manifest(TypedDict, total=False):
    id: str
    rendition: str
    complete: bool
    init: InitEntry | None
    chunks: list[ChunkEntry]
