"""The track manifest as the peer reads it (``GET /v1/tracks/{id}/manifest``, docs/http.md).

A ``TypedDict``, not a class: it is the JSON itself, as the gateway sends it.
Only the keys the peer reads are listed; a live manifest may lack ``init``
(None) and is not ``complete`` yet.
"""

from __future__ import annotations

from typing import TypedDict

__all__ = ["ChunkEntry", "InitEntry", "Manifest"]


class InitEntry(TypedDict):
    size: int
    sha256: str


class ChunkEntry(TypedDict):
    index: int
    start: float
    duration: float
    size: int
    sha256: str


class Manifest(TypedDict, total=False):
    id: str
    rendition: str
    complete: bool
    init: InitEntry | None
    chunks: list[ChunkEntry]
