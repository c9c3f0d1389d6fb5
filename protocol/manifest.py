"""The entries of a track's manifest (``GET /v1/tracks/{id}/manifest``, docs/http.md).

What the gateway writes and every peer checks a chunk against: its place in
the track, its size and its SHA-256. The manifest around them is the
gateway's (``gateway/media/types.py``); the peer reads the part it needs
(``peer/manifest.py``).
"""

from __future__ import annotations

from typing import TypedDict

__all__ = ["ChunkEntry", "InitEntry"]


class InitEntry(TypedDict):
    size: int
    sha256: str


class ChunkEntry(TypedDict):
    index: int
    start: float
    duration: float
    size: int
    sha256: str
