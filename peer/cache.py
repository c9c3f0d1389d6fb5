"""The headless peer's persistent chunk cache (the browser's IndexedDB cache).

Layout: ``DIR/<track>/<rendition>/init`` and ``DIR/<track>/<rendition>/<n>.chunk``,
written atomically (a temporary file renamed into place). Nothing read back
is trusted: ``load`` keeps only the files whose SHA-256 matches the manifest
and deletes the others, so a cache shared between runs or tampered with can
never feed a bad chunk to the player or to other peers.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from .manifest import Manifest

__all__ = ["ChunkCache"]

_NAME = re.compile(r"[A-Za-z0-9._~:-]{1,128}")


class ChunkCache:
    def __init__(self, root: Path, track: str, rendition: str) -> None:
        if not _NAME.fullmatch(track) or not _NAME.fullmatch(rendition) or track in (".", "..") or rendition in (".", ".."):
            raise ValueError("track and rendition must be plain names")
        self.dir = Path(root).expanduser() / track / rendition

    def _path(self, index: int) -> Path:
        return self.dir / f"{index}.chunk"

    def load(self, manifest: Manifest) -> dict[int, bytes]:
        """Every cached chunk of ``manifest`` whose hash matches; drops the rest."""
        out: dict[int, bytes] = {}
        if not self.dir.is_dir():
            return out
        hashes = {int(c["index"]): c["sha256"] for c in manifest["chunks"]}
        for path in self.dir.glob("*.chunk"):
            stem = path.stem
            index = int(stem) if stem.isdigit() else -1
            data = path.read_bytes()
            if hashes.get(index) == hashlib.sha256(data).hexdigest():
                out[index] = data
            elif index not in hashes and not manifest.get("complete"):
                continue  # a chunk past a live manifest's end: keep it for later
            else:
                path.unlink(missing_ok=True)
        return out

    def read(self, index: int) -> bytes | None:
        try:
            return self._path(index).read_bytes()
        except OSError:
            return None

    def write(self, index: int, data: bytes) -> None:
        self._write(self._path(index), data)

    def read_init(self) -> bytes | None:
        try:
            return (self.dir / "init").read_bytes()
        except OSError:
            return None

    def write_init(self, data: bytes) -> None:
        self._write(self.dir / "init", data)

    def _write(self, path: Path, data: bytes) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
