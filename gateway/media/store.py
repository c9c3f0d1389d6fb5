"""The chunk store: init segments, chunks and complete manifests on disk.

diskcache gives a size-capped, least-recently-used store that survives
restarts. A manifest is written last, and only for a finished transcode, so
its presence is what "complete" means: after a crash the chunks of a partial
transcode may be on disk, but without a manifest they are never served as a
finished track. A small in-memory LRU in front keeps hot chunks off SQLite.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from pathlib import Path
from typing import cast

import diskcache

from .types import Manifest

__all__ = ["ChunkStore"]

MANIFESTS_IN_MEMORY = 256


class _MemoryLRU:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: str, value: bytes) -> None:
        if len(value) > self.max_bytes // 8:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.size -= len(old)
            self._items[key] = value
            self.size += len(value)
            while self.size > self.max_bytes:
                _, dropped = self._items.popitem(last=False)
                self.size -= len(dropped)

    def drop_prefix(self, prefix: str) -> None:
        with self._lock:
            for key in [k for k in self._items if k.startswith(prefix)]:
                self.size -= len(self._items.pop(key))


class ChunkStore:
    def __init__(self, directory: Path, max_bytes: int, *, memory_bytes: int = 32 * 1024 * 1024) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._cache = diskcache.Cache(
            str(directory),
            size_limit=max_bytes,
            eviction_policy="least-recently-used",
            cull_limit=10,
            tag_index=True,
        )
        self._memory = _MemoryLRU(min(memory_bytes, max(max_bytes // 4, 1)))
        # Complete manifests never change, so a parsed copy saves a SQLite
        # read and a JSON parse on every chunk request.
        self._manifests: OrderedDict[str, Manifest] = OrderedDict()

    @staticmethod
    def _key(kind: str, track: str, rendition: str, index: int | None = None) -> str:
        key = f"{kind}/{track}/{rendition}"
        return key if index is None else f"{key}/{index}"

    def _get_bytes(self, key: str) -> bytes | None:
        value = self._memory.get(key)
        if value is not None:
            return value
        value = self._cache.get(key)
        if isinstance(value, bytes):
            self._memory.put(key, value)
            return value
        return None

    def _put_bytes(self, key: str, track: str, value: bytes) -> None:
        self._cache.set(key, value, tag=track)
        self._memory.put(key, value)

    def get_init(self, track: str, rendition: str) -> bytes | None:
        return self._get_bytes(self._key("init", track, rendition))

    def put_init(self, track: str, rendition: str, data: bytes) -> None:
        self._put_bytes(self._key("init", track, rendition), track, data)

    def get_chunk(self, track: str, rendition: str, index: int) -> bytes | None:
        return self._get_bytes(self._key("chunk", track, rendition, index))

    def put_chunk(self, track: str, rendition: str, index: int, data: bytes) -> None:
        self._put_bytes(self._key("chunk", track, rendition, index), track, data)

    def get_manifest(self, track: str, rendition: str) -> Manifest | None:
        key = self._key("manifest", track, rendition)
        manifest = self._manifests.get(key)
        if manifest is not None:
            self._manifests.move_to_end(key)
            return manifest
        manifest = self._load_manifest(key)
        if manifest is not None:
            self._remember_manifest(key, manifest)
        return manifest

    def _remember_manifest(self, key: str, manifest: Manifest) -> None:
        self._manifests[key] = manifest
        while len(self._manifests) > MANIFESTS_IN_MEMORY:
            self._manifests.popitem(last=False)

    def _load_manifest(self, key: str) -> Manifest | None:
        raw = self._cache.get(key)
        if not isinstance(raw, str):
            return None
        try:
            manifest = json.loads(raw)
        except ValueError:
            return None
        # Only this store writes these (put_manifest), so a complete object is one of ours.
        return cast(Manifest, manifest) if isinstance(manifest, dict) and manifest.get("complete") else None

    def put_manifest(self, track: str, rendition: str, manifest: Manifest) -> None:
        key = self._key("manifest", track, rendition)
        self._cache.set(key, json.dumps(manifest), tag=track)
        self._remember_manifest(key, manifest)

    def purge(self, track: str) -> int:
        """Remove everything stored for ``track``; returns how many items went."""
        self._memory.drop_prefix(f"init/{track}/")
        self._memory.drop_prefix(f"chunk/{track}/")
        for key in [k for k in self._manifests if k.startswith(f"manifest/{track}/")]:
            del self._manifests[key]
        return int(self._cache.evict(track))

    def volume(self) -> int:
        return int(self._cache.volume())

    def close(self) -> None:
        self._cache.close()
