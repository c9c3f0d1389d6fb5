"""The chunk store: init segments, chunks and complete manifests on disk.

diskcache gives a size-capped, least-recently-used store that survives
restarts. A manifest is written last, and only for a finished transcode, so
its presence is what "complete" means: after a crash the chunks of a partial
transcode may be on disk, but without a manifest they are never served as a
finished track. A small in-memory LRU in front keeps hot chunks off SQLite.

Verify on read: SQLite keeps no checksums and a value file is just a file, so
a flipped bit on disk would otherwise be served with an immutable ETag. Every
init segment and chunk read from disk is hashed and compared with the SHA-256
the caller expects (the manifest's, or the running transcode's); a mismatch is
counted (``ztream_store_corruptions_total``), deleted and reported as a miss,
so the media service transcodes the track again (bit-exact, so the hashes
peers hold stay valid). Only verified bytes enter the in-memory LRU, so the hot
path, an LRU hit, hashes nothing: the check costs one SHA-256 per disk read. A
manifest that does not decode or parse is treated the same way.

Storage faults: disk full and I/O errors become ``StorageFull`` (507) and
``StorageError`` (503) naming the cause, and are remembered for ``/healthz``
until the store next writes successfully. Purge works on a full disk: when
SQLite cannot even log the delete, the value files go first (that frees the
space), then the rows. The size bound counts SQLite's write-ahead log, which is
kept small (``journal_size_limit``, a checkpoint after each finished track), so
``cache.max_bytes`` is what the directory really holds.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import diskcache

from ..errors import StorageError, StorageFull
from .types import Manifest

__all__ = ["ChunkStore"]

log = logging.getLogger("ztream.store")

MANIFESTS_IN_MEMORY = 256
_WAL_MIN, _WAL_MAX = 256 * 1024, 8 * 1024 * 1024
_PAGE = 4096  # diskcache's SQLite page size


def _is_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(exc, sqlite3.Error) and "full" in str(exc).lower()


def _is_undecodable(exc: BaseException) -> bool:
    # sqlite3 reports a TEXT value that is not UTF-8 as an OperationalError.
    return isinstance(exc, UnicodeDecodeError) or (
        isinstance(exc, sqlite3.OperationalError) and "decode" in str(exc).lower()
    )


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
    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        *,
        memory_bytes: int = 32 * 1024 * 1024,
        on_corruption: Callable[[str], None] | None = None,
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._directory = directory
        # The WAL is part of the bound: diskcache culls its own volume to
        # max_bytes minus what the WAL may hold between checkpoints.
        self._wal_limit = min(max(max_bytes // 16, _WAL_MIN), _WAL_MAX)
        self._cache = diskcache.Cache(
            str(directory),
            size_limit=max(max_bytes - self._wal_limit, 1),
            eviction_policy="least-recently-used",
            cull_limit=10,
            tag_index=True,
            sqlite_journal_size_limit=self._wal_limit,
            sqlite_wal_autocheckpoint=max(self._wal_limit // 2 // _PAGE, 16),
        )
        self._memory = _MemoryLRU(min(memory_bytes, max(max_bytes // 4, 1)))
        # Complete manifests never change, so a parsed copy saves a SQLite
        # read and a JSON parse on every chunk request.
        self._manifests: OrderedDict[str, Manifest] = OrderedDict()
        self._on_corruption = on_corruption
        self._fault: tuple[float, str] | None = None

    # -- faults ------------------------------------------------------------

    @contextmanager
    def _disk(self, doing: str) -> Iterator[None]:
        """Translate the disk's failures while ``doing`` into the project's errors."""
        try:
            yield
        except (OSError, sqlite3.Error) as exc:
            if _is_full(exc):
                reason = f"the cache disk is full ({doing}: {exc})"
                self._fault = (time.monotonic(), reason)
                raise StorageFull(f"no space left on the cache disk while {doing}") from exc
            reason = f"the cache disk failed ({doing}: {type(exc).__name__}: {exc})"
            self._fault = (time.monotonic(), reason)
            log.error("store: %s", reason)
            raise StorageError(f"the cache storage failed while {doing}") from exc

    def faults(self) -> list[str]:
        """Why the store is degraded (for ``/healthz``): empty once it has written successfully again."""
        if self._fault is None:
            return []
        since, reason = self._fault
        return [f"{reason}, {time.monotonic() - since:.0f} s ago"]

    def _corrupt(self, key: str, why: str) -> None:
        log.warning("store: %s %s; evicted, it will be made again", key, why)
        if self._on_corruption is not None:
            self._on_corruption(key)
        try:
            self._cache.delete(key)
        except (OSError, sqlite3.Error) as exc:  # it stays unservable: it fails the check again
            log.warning("store: cannot delete corrupt %s: %r", key, exc)

    @staticmethod
    def _key(kind: str, track: str, rendition: str, index: int | None = None) -> str:
        key = f"{kind}/{track}/{rendition}"
        return key if index is None else f"{key}/{index}"

    def _get_bytes(self, key: str, sha256: str) -> bytes | None:
        """The value of ``key`` if it hashes to ``sha256``; None if absent or corrupt (then evicted)."""
        value = self._memory.get(key)
        if value is not None:  # verified when it entered memory
            return value
        with self._disk("reading"):
            value = self._cache.get(key)
        if not isinstance(value, bytes):
            return None
        if hashlib.sha256(value).hexdigest() != sha256:
            self._corrupt(key, "does not match its SHA-256")
            return None
        self._memory.put(key, value)
        return value

    def _put_bytes(self, key: str, track: str, value: bytes) -> None:
        with self._disk("storing a chunk"):
            self._cache.set(key, value, tag=track)
        self._memory.put(key, value)  # hashed by the caller from these very bytes

    def get_init(self, track: str, rendition: str, sha256: str) -> bytes | None:
        return self._get_bytes(self._key("init", track, rendition), sha256)

    def put_init(self, track: str, rendition: str, data: bytes) -> None:
        self._put_bytes(self._key("init", track, rendition), track, data)

    def get_chunk(self, track: str, rendition: str, index: int, sha256: str) -> bytes | None:
        return self._get_bytes(self._key("chunk", track, rendition, index), sha256)

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
        try:
            raw = self._cache.get(key)
        except (UnicodeDecodeError, sqlite3.OperationalError) as exc:
            if not _is_undecodable(exc):
                with self._disk("reading a manifest"):
                    raise
            self._corrupt(key, "is not UTF-8")
            return None
        if raw is None:
            return None
        manifest: Any = None
        if isinstance(raw, str):
            try:
                manifest = json.loads(raw)
            except ValueError:
                pass
        if not _manifest_shape(manifest):
            self._corrupt(key, "is not a manifest")
            return None
        return cast(Manifest, manifest)

    def put_manifest(self, track: str, rendition: str, manifest: Manifest) -> None:
        key = self._key("manifest", track, rendition)
        with self._disk("storing a manifest"):
            self._cache.set(key, json.dumps(manifest), tag=track)
        self._remember_manifest(key, manifest)
        self._fault = None  # a whole track was written: the disk works again
        self.checkpoint()

    def purge(self, track: str) -> int:
        """Remove everything stored for ``track``; returns how many items went.

        Works on a full disk: if SQLite cannot log the delete, the track's
        value files are removed first (which frees their space) and the delete
        is tried again.
        """
        self._memory.drop_prefix(f"init/{track}/")
        self._memory.drop_prefix(f"chunk/{track}/")
        for key in [k for k in self._manifests if k.startswith(f"manifest/{track}/")]:
            del self._manifests[key]
        try:
            count = int(self._cache.evict(track))
        except (OSError, sqlite3.Error) as exc:
            log.warning("store: purging %s failed (%r); removing its files first", track, exc)
            self._remove_files(track)
            self.checkpoint()
            with self._disk("purging"):
                count = int(self._cache.evict(track))
        self.checkpoint()
        return count

    def _remove_files(self, track: str) -> None:
        """Delete the value files of ``track``'s entries (a read of the index, then unlinks)."""
        with sqlite3.connect(self._directory / "cache.db", timeout=5) as db:
            rows = db.execute(
                "SELECT filename FROM Cache WHERE tag = ? AND filename IS NOT NULL", (track,)
            ).fetchall()
        db.close()
        for (filename,) in rows:
            try:
                os.remove(self._directory / filename)
            except OSError:
                pass

    def checkpoint(self) -> None:
        """Fold the WAL into the database and truncate it (best effort: a busy reader just delays it)."""
        try:
            with sqlite3.connect(self._directory / "cache.db", timeout=1) as db:
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            db.close()
        except sqlite3.Error as exc:
            log.debug("store: WAL checkpoint failed: %r", exc)

    def volume(self) -> int:
        """Bytes the store holds on disk: SQLite's file and value files (diskcache) and the WAL."""
        try:
            wal = os.stat(self._directory / "cache.db-wal").st_size
        except OSError:
            wal = 0
        return int(self._cache.volume()) + wal

    def close(self) -> None:
        self._cache.close()


def _manifest_shape(value: Any) -> bool:
    """Whether ``value`` is a complete manifest as ``put_manifest`` writes it (a flipped
    byte can leave valid JSON of the wrong shape)."""
    if not isinstance(value, dict) or value.get("complete") is not True:
        return False
    init, chunks = value.get("init"), value.get("chunks")
    if not isinstance(init, dict) or not isinstance(init.get("sha256"), str) or not isinstance(chunks, list):
        return False
    return all(
        isinstance(c, dict) and c.get("index") == i and isinstance(c.get("sha256"), str) and isinstance(c.get("size"), int)
        for i, c in enumerate(chunks)
    )
