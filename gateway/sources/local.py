"""Local library: audio files under the configured directories.

A track's path is checked again when it is opened (it must still resolve,
symlinks followed, to a file inside one of the configured directories), so a
path stored earlier can never escape a library that changed since.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from ..errors import Forbidden, NotFound, TooLarge
from ..media.catalog import Track, track_id_for
from ..media.upstream import BoundedSource, CoverSource, PathSource
from .base import CountBytes

__all__ = ["LocalSource", "AUDIO_SUFFIXES"]

AUDIO_SUFFIXES = frozenset(
    {".mp3", ".flac", ".ogg", ".oga", ".opus", ".wav", ".m4a", ".aac", ".webm", ".mka", ".aif", ".aiff"}
)
READ_SIZE = 256 * 1024
# A library folder's own picture, used when the file has none (first match wins).
COVER_NAMES = ("cover.jpg", "folder.jpg", "cover.jpeg", "folder.jpeg", "cover.png", "folder.png")
MAX_FILES = 10_000


class LocalSource(PathSource, CoverSource, BoundedSource):
    name = "local"

    def __init__(self, dirs: Sequence[str | Path], *, max_bytes: int, count: CountBytes | None = None) -> None:
        self.dirs = [Path(d).expanduser().resolve() for d in dirs]
        self.max_bytes = max_bytes
        self._count = count

    def _inside(self, path: Path) -> bool:
        return any(path.is_relative_to(d) for d in self.dirs)

    def scan(self) -> list[Track]:
        """The library's tracks, sorted by path; at most ``MAX_FILES``."""
        tracks: list[Track] = []
        for root in self.dirs:
            if not root.is_dir():
                continue
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames.sort()
                for name in sorted(filenames):
                    path = Path(dirpath, name)
                    if path.suffix.lower() not in AUDIO_SUFFIXES:
                        continue
                    real = path.resolve()
                    if not self._inside(real) or not real.is_file():
                        continue
                    tracks.append(
                        Track(
                            id=track_id_for("local", str(real)),
                            source="local",
                            locator=str(real),
                            title=path.stem.replace("_", " "),
                        )
                    )
                    if len(tracks) >= MAX_FILES:
                        return tracks
        return tracks

    def has(self, track: Track) -> bool:
        """Whether this library holds ``track``'s file (another node's library track may not be here)."""
        if track.source != "local":
            return False
        try:
            real = Path(track.locator).resolve()
        except (OSError, RuntimeError):
            return False
        return self._inside(real) and real.is_file()

    def _check(self, locator: str) -> Path:
        real = Path(locator).resolve()
        if not self._inside(real):
            raise Forbidden("the file is outside the configured library", code="path_forbidden")
        if not real.is_file():
            raise NotFound("the library file is gone", code="upstream_not_found")
        if real.stat().st_size > self.max_bytes:
            raise TooLarge(f"the file is over {self.max_bytes} bytes", setting="sources.url.max_bytes")
        return real

    def path_of(self, track: Track) -> Path:
        """The library file of ``track``, checked again (inside the library, still there, not too large)."""
        return self._check(track.locator)

    def cover_beside(self, track: Track) -> Path | None:
        """A ``cover.jpg``/``folder.jpg`` (any case, or .png) in the file's folder, inside the library."""
        folder = Path(track.locator).parent
        try:
            names = {p.name.lower(): p for p in folder.iterdir() if p.is_file()}
        except OSError:
            return None
        for name in COVER_NAMES:
            found = names.get(name)
            if found is not None and self._inside(found.resolve()):
                return found.resolve()
        return None

    async def open(self, track: Track) -> AsyncIterator[bytes]:
        path = self._check(track.locator)
        loop = asyncio.get_running_loop()
        handle = await loop.run_in_executor(None, path.open, "rb")
        try:
            while True:
                piece = await loop.run_in_executor(None, handle.read, READ_SIZE)
                if not piece:
                    return
                if self._count is not None:
                    self._count(len(piece))
                yield piece
        finally:
            handle.close()
