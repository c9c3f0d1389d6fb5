"""One catalog for the cluster: every node's track catalog a replica of the records in Redis.

Theory of operation
-------------------

Redis holds the truth: one record per track (``ztream:{<track>}:track``,
gateway/cluster/records.py says what is in it and how two versions merge),
and an index (``ztream:{catalog}:index``, a sorted set of track ids scored by
the revision of their last change, from one counter). Each node keeps its
own ``TrackCatalog`` on disk as a replica; this shell keeps the two in step:

- **Out**: the catalog tells every change made here (``Stored`` fields,
  ``Removed``, ``HeldHere``); each becomes a delta stamped with this node's
  clock, merged into ``pending`` (per track). A writer merges each pending
  delta into the track's record (GET, merge, a compare-and-set script,
  retried on a race), then bumps the track in the index (one script:
  ``INCR`` the counter, ``ZADD``). A removal's record is a tombstone kept
  ``TOMBSTONE_TTL`` seconds, so a node that was away learns of it.
- **In**: every ``POLL_SECONDS`` the node reads the index past the last
  revision it saw and stores those records in its catalog (``apply``, or
  ``drop`` for a removed track), its own pending changes merged over them.
  A track the node has not seen yet is also read at once when asked for
  (``lookup``, the catalog's ``find``).
- **Joining**: at start and whenever Redis comes back, the node compares the
  catalog's epoch (a random name set by the first node to find none) with
  the one it last saw. The same: only the pending changes (those made while
  Redis was away) are written and the index read from where it stopped.
  Another (Redis lost its data), or the node's first join: the whole index
  is read, and every record of this node that Redis lacks is written back
  with time 0 (it fills, never overrides).
- **Library files**: ``HeldHere`` sets the record's ``at:<node>`` field; a
  node without the file pulls the track from one of those (``holders``).

Redis down: nothing waits; the catalog keeps serving what it knows, changes
pile up in ``pending`` (one merged delta per track, so bounded by the
catalog) and are written when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from ..media.catalog import CatalogChange, HeldHere, Removed, Stored, Track, TrackCatalog, track_of
from . import keys
from .link import RedisLink
from .records import AT, Record, decode, delta, encode, merge, removal

__all__ = ["CatalogSync", "POLL_SECONDS", "TOMBSTONE_TTL"]

log = logging.getLogger("ztream.cluster")

POLL_SECONDS = 0.25
TOMBSTONE_TTL = 24 * 3600
# Records read per round trip (index pages, GET pipelines).
BATCH = 500
CAS_ROUNDS = 8

# KEYS: record; ARGV: expected value ("" for none), new value, EX seconds ("0": none).
_CAS = """
local cur = redis.call('GET', KEYS[1])
if (cur or '') ~= ARGV[1] then return 0 end
if ARGV[3] == '0' then redis.call('SET', KEYS[1], ARGV[2]) else redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) end
return 1
"""
# KEYS: index, revision counter; ARGV: track id.
_BUMP = """
local r = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[1], r, ARGV[1])
return r
"""


def _nothing(_track_id: str) -> None:
    return None


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


class CatalogSync:
    def __init__(self, link: RedisLink, node_id: str, *, alive: Callable[[str], bool] = lambda _node: True) -> None:
        self.link = link
        self.node_id = node_id
        self.alive = alive  # whether a node is alive (the directory's heartbeats)
        # Library tracks of other nodes: track id -> the nodes holding the file, from the records read.
        self._elsewhere: dict[str, tuple[str, ...]] = {}
        self.pending: dict[str, Record] = {}
        self.revision = 0  # the index read up to here
        self.epoch: str | None = None  # the catalog's, when this node last joined it
        self._joined_link_epoch = -1
        self._announced: set[str] = set()  # library files told for the current epoch
        self._held: set[str] = set()  # every library file found here
        self._wake = asyncio.Event()
        self._writing: set[str] = set()  # being written by ``written`` (the writer leaves them)
        self._task: asyncio.Task[None] | None = None
        self.catalog: TrackCatalog | None = None
        # What a removal seen in Redis also drops here besides the record: the track's chunks.
        self._purge: Callable[[str], None] = _nothing
        self.writes = 0
        self.reads = 0

    # -- out -----------------------------------------------------------------------

    def told(self, change: CatalogChange) -> None:
        """The catalog's subscriber: a change made here, for the cluster."""
        now = time.time()
        if isinstance(change, Stored):
            record = delta(change.fields, now)
        elif isinstance(change, Removed):
            record = removal(now)
            self._announced.discard(change.track_id)
        else:
            assert isinstance(change, HeldHere)
            self._held.add(change.track_id)
            if change.track_id in self._announced:
                return
            self._announced.add(change.track_id)
            record = delta({AT + self.node_id: True}, now)
        self._queue(change.track_id, record)

    def _queue(self, track_id: str, record: Record) -> None:
        self.pending[track_id] = merge(self.pending.get(track_id), record)
        self._wake.set()

    async def _write(self, track_id: str, record: Record) -> bool | None:
        """Merge ``record`` into Redis's; True once done, False on a lost race, None with Redis down."""
        key = keys.track(track_id)
        for _ in range(CAS_ROUNDS):
            raw = await self.link.call(lambda c: c.get(key))
            if raw is None and not self.link.up:
                return None
            stored = decode(raw)
            merged = merge(stored, record)
            if stored is not None and merged == stored:
                # Nothing new, but the index is bumped all the same: an earlier write of this change
                # may have set the record and been cut off before its bump.
                return await self._bump(track_id)
            expire = "0" if merged.alive else str(TOMBSTONE_TTL)
            done = await self._cas(key, _text(raw) if raw is not None else "", encode(merged), expire)
            if done is None:
                return None
            if int(done) == 1:
                self.writes += 1
                return await self._bump(track_id)
        return False

    async def _bump(self, track_id: str) -> bool | None:
        bumped = await self.link.call(lambda c: c.eval(_BUMP, 2, keys.CATALOG_INDEX, keys.CATALOG_REVISION, track_id))
        return None if bumped is None else True

    async def _cas(self, key: str, old: str, new: str, expire: str) -> Any:
        return await self.link.call(lambda c: c.eval(_CAS, 1, key, old, new, expire))

    async def _flush(self) -> bool:
        """Write every pending change; False when Redis went away meanwhile."""
        for track_id, record in list(self.pending.items()):
            if track_id in self._writing:
                continue  # a registration writes it itself now (``written``)
            written = await self._write(track_id, record)
            if written is None:
                return False
            if written and self.pending.get(track_id) is record:
                del self.pending[track_id]
        return True

    # -- in ------------------------------------------------------------------------

    async def _records(self, track_ids: list[str]) -> list[Record | None]:
        async def go(client: Any) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            for track_id in track_ids:
                pipe.get(keys.track(track_id))
            return list(await pipe.execute())

        raws = await self.link.call(go)
        if raws is None:
            raise ConnectionError("redis went away")
        self.reads += len(track_ids)
        return [decode(raw) for raw in raws]

    def _store(self, catalog: TrackCatalog, track_id: str, record: Record | None) -> None:
        """Keep the cluster's version of a track here, this node's own pending changes over it."""
        mine = self.pending.get(track_id)
        if mine is not None:
            record = merge(record, mine)
        self._note_holders(track_id, record)
        if record is None or not record.alive:
            self._announced.discard(track_id)  # a library file found again is told again
            if catalog.get(track_id) is not None:
                self._purge(track_id)  # first: it asks the catalog whether the track is being made
                catalog.drop(track_id)
            return
        track = track_of(record.fields())
        if track is None or track.id != track_id:
            log.warning("ignoring an unreadable catalog record for %s", track_id)
            return
        catalog.apply(track, bool(record.values.get("played")))

    async def _page(self, revision: int) -> Any:
        return await self.link.call(lambda c: c.zrangebyscore(
            keys.CATALOG_INDEX, f"({revision}", "+inf", start=0, num=BATCH, withscores=True))

    async def _forget(self, gone: list[str]) -> None:
        await self.link.call(lambda c: c.zrem(keys.CATALOG_INDEX, *gone))

    def _note_holders(self, track_id: str, record: Record | None) -> None:
        holders = tuple(n for n in record.holders() if n != self.node_id) if record is not None and record.alive else ()
        if holders:
            self._elsewhere[track_id] = holders
        else:
            self._elsewhere.pop(track_id, None)

    def library_elsewhere(self) -> list[str]:
        """The library tracks held by another live node (``GET /v1/tracks`` lists them too)."""
        return [t for t, nodes in self._elsewhere.items() if any(self.alive(n) for n in nodes)]

    async def _poll(self, catalog: TrackCatalog) -> None:
        """Store every record changed since the last revision read."""
        while True:
            page = await self._page(self.revision)
            if page is None:
                raise ConnectionError("redis went away")
            if not page:
                return
            ids = [_text(member) for member, _score in page]
            records = await self._records(ids)
            gone = []
            for track_id, record in zip(ids, records, strict=True):
                self._store(catalog, track_id, record)
                if record is None:
                    gone.append(track_id)  # a tombstone that expired: nothing left to tell
            if gone:
                await self._forget(gone)
            self.revision = max(self.revision, int(max(score for _m, score in page)))
            if len(page) < BATCH:
                return

    async def _join(self, catalog: TrackCatalog) -> None:
        """Meet the catalog in Redis (at start, and each time Redis comes back)."""
        fresh = secrets.token_hex(8)
        epoch = await self.link.call(lambda c: c.set(keys.CATALOG_EPOCH, fresh, nx=True, get=True))
        if epoch is None and not self.link.up:
            raise ConnectionError("redis went away")
        current = fresh if epoch is None else _text(epoch)
        if current == self.epoch:
            return  # the same catalog: pending changes and the index from where it stopped
        if self.epoch is not None:
            log.warning("the cluster's catalog in Redis is new (Redis lost its data): writing this node's back")
        members = await self.link.call(lambda c: c.zrange(keys.CATALOG_INDEX, 0, -1))
        if members is None:
            raise ConnectionError("redis went away")
        known = {_text(m) for m in members}
        # What Redis lacks, with time 0: it fills the catalog and overrides nothing.
        for track_id in catalog:
            if track_id not in known:
                fields = catalog.fields(track_id)
                if fields is not None:
                    self._queue(track_id, delta(fields, 0.0))
        self._announced = set()
        for track_id in self._held:
            self._announced.add(track_id)
            self._queue(track_id, delta({AT + self.node_id: True}, 0.0))
        self.revision = 0
        self.epoch = current

    # -- lookups ---------------------------------------------------------------------

    async def _record(self, track_id: str) -> Record | None:
        raw = await self.link.call(lambda c: c.get(keys.track(track_id)))
        return decode(raw)

    async def lookup(self, track_id: str) -> tuple[Track, bool] | None:
        """What the cluster knows of ``track_id`` (the catalog's ``find`` asks on a miss)."""
        record = await self._record(track_id)
        if record is None or not record.alive:
            return None
        self._note_holders(track_id, record)
        track = track_of(record.fields())
        return (track, bool(record.values.get("played"))) if track is not None else None

    async def written(self, track_id: str) -> None:
        """Write ``track_id``'s pending change now (a registration is answered once every node can
        find it); the writer's next round would do the same, merging twice is harmless."""
        record = self.pending.get(track_id)
        if record is None or not self.link.up or track_id in self._writing:
            return
        self._writing.add(track_id)
        try:
            with contextlib.suppress(TimeoutError):
                if await asyncio.wait_for(self._write(track_id, record), 2.0) and self.pending.get(track_id) is record:
                    del self.pending[track_id]
        finally:
            self._writing.discard(track_id)

    async def holders(self, track_id: str) -> list[str]:
        """The nodes whose library holds the track's file (sorted; dead ones included)."""
        record = await self._record(track_id)
        mine = self.pending.get(track_id)
        if mine is not None:
            record = merge(record, mine)
        return record.holders() if record is not None else []

    # -- lifetime --------------------------------------------------------------------

    async def _round(self, catalog: TrackCatalog) -> None:
        if self._joined_link_epoch != self.link.epoch:
            await self._join(catalog)
            self._joined_link_epoch = self.link.epoch
        if await self._flush():
            await self._poll(catalog)

    async def _run(self, catalog: TrackCatalog) -> None:
        while True:
            if self.link.up:
                try:
                    await self._round(catalog)
                except ConnectionError:
                    pass  # the link is down; the next round after it heals joins again
                except Exception:  # noqa: BLE001 - the sync must outlive any one bad answer
                    log.exception("catalog sync failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)

    def start(self, catalog: TrackCatalog, *, purge: Callable[[str], None] = _nothing) -> None:
        """Keep ``catalog`` (built with this as its ``shared``) in step with the cluster's;
        ``purge(track_id)`` drops the chunks of a track removed on another node."""
        self.catalog = catalog
        self._purge = purge
        self._task = asyncio.create_task(self._run(catalog), name="ztream-cluster-catalog")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.link.up and self.pending:
            # What is left unwritten is written back at the next start (Redis lacks it), at time 0.
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(self._flush(), 2.0)
