"""The track catalog: what each track id stands for.

A track id is a hash of the source's identity (the normalized URL, the
library file's path), so the same upstream always gets the same id, across
restarts and across gateways. Registered tracks persist beside the chunk
store, not evicted with it.

The catalog is bounded (``cache.max_tracks`` records, ``cache.max_track_bytes``
of their text): a new record that would pass either bound first evicts the
oldest URL/SoundCloud tracks that never played (no transcode of theirs ever
completed: ``mark_played``); library tracks and played tracks are never
evicted, and when only they are left a new registration is refused (503
``catalog_full``). What stays in memory is bounded too: an index of every
record (id, size; the never-played and the non-library ones in the order
they were registered, so ``recent`` reads only what it returns) and the
``MEMORY_TRACKS`` most recently used records.

Every change is told to whoever subscribed (``subscribe``, and a cluster
node's ``SharedCatalog`` from the start): ``Stored`` with the fields it set,
``Removed``, and ``HeldHere`` for a library file this node found. A cluster
node shares them through Redis (gateway/cluster/catalog.py) and stores what
other nodes changed with ``apply`` and ``drop``, which tell nobody; ``find``
asks the cluster for an id this node does not know yet, ``shared`` waits for
a registration to be known to the other nodes.

Registering a URL proves nothing about it (a 404, an HTML page, a file that
is not audio all register), so a track is *listed* (``GET /v1/tracks``) only
once a transcode of it has completed (``mark_transcoded``, which also marks
it played); the last failed transcode's error is kept on the record for the
admin's track list until a transcode succeeds.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import diskcache

from transcode.analysis import Tags

from ..errors import Overloaded
from .types import SourceKind, TrackJSON

__all__ = [
    "Track", "TrackCatalog", "track_id_for", "is_track_id", "track_of",
    "CatalogChange", "Stored", "Removed", "HeldHere", "SharedCatalog",
]

# What a track id may look like in a URL. Ours are 16 hex digits; the wider
# pattern is what every route checks before a look-up, so nothing odd (paths,
# huge strings) reaches the store or ends up in a page.
_TRACK_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


_T = TypeVar("_T")

# Records kept decoded in memory, most recently used first out last.
MEMORY_TRACKS = 20_000
# What one record costs beyond its strings (keys, numbers, the index entry).
RECORD_OVERHEAD = 256


def _record_bytes(raw: dict[str, object]) -> int:
    return RECORD_OVERHEAD + sum(len(v) for v in raw.values() if isinstance(v, str))


def track_id_for(source: SourceKind, identity: str) -> str:
    return hashlib.sha256(f"{source}\n{identity}".encode()).hexdigest()[:16]


def is_track_id(text: str) -> bool:
    """Whether ``text`` has the shape of a track id (it may still be unknown)."""
    return _TRACK_ID.match(text) is not None


@dataclass(frozen=True, slots=True)
class Track:
    id: str
    source: SourceKind
    locator: str  # URL or file path: never shown to clients for local files
    title: str
    duration: float | None = None
    artist: str | None = None
    created: float = 0.0
    # Optional, set by sources that know them (SoundCloud); old records lack them.
    artwork: str | None = None
    permalink: str | None = None
    preview: bool = False  # a short preview (e.g. SoundCloud's 30 s snippet), not the full track
    # From the file's own tags, once a transcode has read them (TagsFound);
    # cleaned by ``transcode.analysis.clean_text``, never HTML-escaped here.
    album: str | None = None
    track_number: int | None = None
    year: int | None = None
    # The size of the stored artwork (the placeholder's when the file has none).
    artwork_width: int | None = None
    artwork_height: int | None = None
    # Set by the first complete transcode, never unset: the public list shows only such tracks.
    listed: bool = False
    # The last failed transcode's error (``ZtreamError.to_json()``'s fields); cleared by a success.
    error_code: str | None = None
    error_detail: str | None = None
    error_setting: str | None = None
    # An endless upstream (an Icecast/SHOUTcast mount, a live HLS playlist, a
    # declared station): served from a sliding window of chunks at the live
    # edge (docs/live.md), never transcoded as a file nor kept as a recording.
    live: bool = False

    def error_json(self) -> dict[str, str] | None:
        """The last failed transcode's error in the contract's shape, None when the last one did not fail."""
        if self.error_code is None:
            return None
        body = {"error": self.error_code, "detail": self.error_detail or ""}
        if self.error_setting:
            body["setting"] = self.error_setting
        return body

    def public(self, base_url: str = "") -> TrackJSON:
        """The ``{track}`` object of the HTTP contract; ``base_url`` prefixes its own URLs."""
        out: TrackJSON = {
            "id": self.id,
            "title": self.title,
            "source": self.source,
            "duration": self.duration,
            "artwork_url": f"{base_url}/v1/tracks/{self.id}/artwork",
            "waveform_url": f"{base_url}/v1/tracks/{self.id}/waveform",
        }
        if self.artist:
            out["artist"] = self.artist
        if self.album:
            out["album"] = self.album
        if self.track_number is not None:
            out["track_number"] = self.track_number
        if self.year is not None:
            out["year"] = self.year
        if self.artwork_width and self.artwork_height:
            out["artwork_width"] = self.artwork_width
            out["artwork_height"] = self.artwork_height
        if self.artwork:
            out["artwork"] = self.artwork
        if self.permalink:
            out["permalink"] = self.permalink
        if self.preview:
            out["preview"] = True
        if self.source != "local":
            out["url"] = self.locator
        if self.live:
            out["live"] = True
        return out


_TRACK_FIELDS = frozenset(f.name for f in fields(Track))


def track_of(values: dict[str, Any]) -> Track | None:
    """A ``Track`` from a record's fields (unknown ones ignored: another node may run a newer
    version); None when the required ones are missing or of the wrong kind."""
    known = {k: v for k, v in values.items() if k in _TRACK_FIELDS}
    try:
        track = Track(**known)
    except TypeError:
        return None
    if not (isinstance(track.id, str) and is_track_id(track.id) and isinstance(track.locator, str)
            and isinstance(track.title, str)):
        return None
    return track


@dataclass(frozen=True, slots=True)
class Stored:
    """A track was registered or changed here: ``fields`` are what was set (``played`` among them)."""

    track_id: str
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Removed:
    """A track was dropped here (purged, or evicted to make room)."""

    track_id: str


@dataclass(frozen=True, slots=True)
class HeldHere:
    """This node's library holds the file of a (local) track."""

    track_id: str


CatalogChange = Stored | Removed | HeldHere


@runtime_checkable
class SharedCatalog(Protocol):
    """The cluster's catalog, as this node's sees it (gateway/cluster/catalog.py implements it)."""

    def told(self, change: CatalogChange) -> None:
        """A change made here (called in order, synchronously)."""

    async def lookup(self, track_id: str) -> tuple[Track, bool] | None:
        """What the cluster knows of an id this node does not: the track and whether it was played."""

    async def written(self, track_id: str) -> None:
        """Returns once the changes made here to ``track_id`` are shared (or cannot be now)."""

    def library_elsewhere(self) -> list[str]:
        """The ids of library tracks whose file another live node holds."""


class TrackCatalog:
    def __init__(self, directory: Path, *, max_tracks: int = 100_000, max_bytes: int = 64 * 1024 * 1024,
                 shared: SharedCatalog | None = None) -> None:
        # A cluster node's sync hears every change, those made while the node starts included.
        self._subscribers: list[Callable[[CatalogChange], None]] = [shared.told] if shared is not None else []
        self._shared = shared
        directory.mkdir(parents=True, exist_ok=True)
        self._db = diskcache.Cache(str(directory), eviction_policy="none", size_limit=2**40)
        self.max_tracks = max_tracks
        self.max_bytes = max_bytes
        self._memory: OrderedDict[str, Track] = OrderedDict()
        # Every record's size; the non-library ones and the never-played ones, oldest first.
        self._sizes: dict[str, int] = {}
        self._bytes = 0
        self._remote: dict[str, None] = {}
        self._unplayed: dict[str, None] = {}
        self._load()

    def _load(self) -> None:
        """The index, read once at start (one pass over the records)."""
        found: list[tuple[float, str, str, int]] = []
        played = {key[1] for key in self._db.iterkeys() if isinstance(key, tuple) and key[0] == "played"}
        for key in self._db.iterkeys():
            if not (isinstance(key, tuple) and key[0] == "track"):
                continue
            raw = self._db.get(key)
            if isinstance(raw, dict):
                found.append((float(raw.get("created") or 0.0), key[1], str(raw.get("source")), _record_bytes(raw)))
        for _created, track_id, source, size in sorted(found):
            self._index(track_id, source, size, played=track_id in played)

    def _index(self, track_id: str, source: str, size: int, *, played: bool) -> None:
        self._bytes += size - self._sizes.get(track_id, 0)
        self._sizes[track_id] = size
        if source != "local":
            self._remote.setdefault(track_id, None)
            if not played:
                self._unplayed.setdefault(track_id, None)

    def __len__(self) -> int:
        return len(self._sizes)

    def __iter__(self) -> Iterator[str]:
        """Every track id (a copy: the catalog may change while the caller goes through them)."""
        return iter(list(self._sizes))

    def subscribe(self, subscriber: Callable[[CatalogChange], None]) -> None:
        """Call ``subscriber`` with every change made here from now on (not those ``apply``/``drop`` make)."""
        self._subscribers.append(subscriber)

    def _tell(self, change: CatalogChange) -> None:
        for subscriber in self._subscribers:
            subscriber(change)

    def fields(self, track_id: str) -> dict[str, Any] | None:
        """Everything known of a track: its fields and ``played``."""
        track = self.get(track_id)
        return {**asdict(track), "played": self.played(track_id)} if track is not None else None

    @property
    def bytes(self) -> int:
        """The records' size as the bound counts it."""
        return self._bytes

    def _remember(self, track: Track) -> None:
        self._memory[track.id] = track
        self._memory.move_to_end(track.id)
        while len(self._memory) > MEMORY_TRACKS:
            self._memory.popitem(last=False)

    def get(self, track_id: str) -> Track | None:
        track = self._memory.get(track_id)
        if track is not None:
            self._memory.move_to_end(track_id)
            return track
        if track_id not in self._sizes:
            return None  # the index knows every record: no disk read for an unknown id
        raw = self._db.get(("track", track_id))
        if not isinstance(raw, dict):
            return None
        if "listed" not in raw:  # a record from before listing waited for a transcode: its duration says one ended
            raw = {**raw, "listed": raw.get("duration") is not None}
        track = Track(**raw)
        self._remember(track)
        return track

    def add(self, track: Track) -> tuple[Track, bool]:
        """Register ``track`` unless its id is known; returns (track, created).

        A new record first makes room (``make_room``): 503 ``catalog_full``
        when nothing can be evicted for it.
        """
        existing = self.get(track.id)
        if existing is not None:
            if track.source == "local":
                self._tell(HeldHere(track.id))
            return existing, False
        if not track.created:
            track = replace(track, created=time.time())
        self.make_room(_record_bytes(asdict(track)), required=track.source != "local")
        self._store(track)
        self._tell(Stored(track.id, {**asdict(track), "played": False}))
        if track.source == "local":
            self._tell(HeldHere(track.id))
        return track, True

    async def find(self, track_id: str) -> Track | None:
        """``get``, or else what the cluster knows of the id (kept here from then on)."""
        track = self.get(track_id)
        if track is not None or self._shared is None or not is_track_id(track_id):
            return track
        found = await self._shared.lookup(track_id)
        if found is None or found[0].id != track_id:
            return None
        if self.get(track_id) is None:  # not applied meanwhile by the catalog's own sync
            self.apply(*found)
        return self.get(track_id)

    async def shared(self, track_id: str) -> None:
        """Returns once this node's changes to ``track_id`` are known to the cluster's other nodes
        (at once alone, or with Redis down): a registration is answered once any node can serve it."""
        if self._shared is not None:
            await self._shared.written(track_id)

    def library_elsewhere(self) -> list[Track]:
        """Library tracks of the cluster's other live nodes (none alone), sorted by their path."""
        if self._shared is None:
            return []
        found = [t for t in map(self.get, self._shared.library_elsewhere()) if t is not None and t.source == "local"]
        return sorted(found, key=lambda t: t.locator)

    def apply(self, track: Track, played: bool) -> None:
        """Keep another node's version of ``track`` (told to no subscriber). Room is made as for a
        registration, but a record the cluster holds is never refused."""
        current = self.get(track.id)
        if current is None:
            self.make_room(_record_bytes(asdict(track)), required=False, tell=False)
        if current != track:
            self._store(track)
        if played and not self.played(track.id):
            self._unplayed.pop(track.id, None)
            self._db.set(("played", track.id), True)

    def drop(self, track_id: str) -> bool:
        """Forget a track another node removed (told to no subscriber)."""
        return self._remove(track_id)

    def make_room(self, size: int, *, required: bool = True, tell: bool = True) -> None:
        """Evict the oldest never-played tracks until one more record of ``size`` bytes fits.

        A library track (``required=False``) is added even when nothing is
        left to evict: the library is bounded by its own scan limit. With
        ``tell=False`` (room for another node's record) the evictions are this
        node's alone: the cluster's catalog keeps them.
        """
        while len(self._sizes) + 1 > self.max_tracks or self._bytes + size > self.max_bytes:
            if not self._unplayed:
                if not required:
                    return
                raise Overloaded(
                    f"the track catalog is full ({len(self._sizes)} tracks, every one played or in the library)",
                    code="catalog_full", retry_after=60)
            victim = next(iter(self._unplayed))
            if tell:
                self.remove(victim)
            else:
                self._remove(victim)

    def put(self, track: Track) -> None:
        """Store ``track`` (a changed version of a known one, or a new one), telling the fields that changed."""
        before = self.get(track.id)
        self._store(track)
        old = asdict(before) if before is not None else {}
        changed = {k: v for k, v in asdict(track).items() if k not in old or old[k] != v}
        if changed:
            self._tell(Stored(track.id, changed))

    def _store(self, track: Track) -> None:
        raw = asdict(track)
        self._db.set(("track", track.id), raw)
        self._index(track.id, track.source, _record_bytes(raw), played=track.id not in self._unplayed
                    and track.id in self._sizes)
        self._remember(track)

    def mark_played(self, track_id: str) -> None:
        """A transcode of ``track_id`` completed: it is never evicted to make room."""
        if self._unplayed.pop(track_id, False) is None:
            self._db.set(("played", track_id), True)
            self._tell(Stored(track_id, {"played": True}))

    def played(self, track_id: str) -> bool:
        return track_id in self._sizes and track_id not in self._unplayed

    def set_duration(self, track_id: str, duration: float) -> None:
        track = self.get(track_id)
        if track is not None and track.duration != duration:
            self.put(replace(track, duration=round(duration, 3)))

    def mark_transcoded(self, track_id: str) -> None:
        """A transcode of the track completed: list it, forget an earlier failure, and
        never evict it to make room for registrations (``mark_played``)."""
        self.mark_played(track_id)
        track = self.get(track_id)
        if track is not None and (not track.listed or track.error_code is not None):
            self.put(replace(track, listed=True, error_code=None, error_detail=None, error_setting=None))

    def mark_failed(self, track_id: str, code: str, detail: str, setting: str | None = None) -> None:
        """A transcode of the track failed: remember why (a listed track stays listed)."""
        track = self.get(track_id)
        if track is not None and (track.error_code, track.error_detail, track.error_setting) != (code, detail, setting):
            self.put(replace(track, error_code=code, error_detail=detail, error_setting=setting))

    def apply_tags(self, track_id: str, tags: Tags) -> None:
        """Fill the track's fields from the file's own tags.

        For URL and library tracks, whose title is only the file's name, the
        tags win; a source that names its tracks itself (SoundCloud) keeps
        its metadata and only gains what it lacked.
        """
        track = self.get(track_id)
        if track is None:
            return
        own = track.source in ("url", "local")

        def pick(current: _T | None, tagged: _T | None) -> _T | None:
            if tagged is None:
                return current
            return tagged if own or current is None else current

        updated = replace(
            track,
            title=pick(track.title, tags.title) or track.title,
            artist=pick(track.artist, tags.artist),
            album=pick(track.album, tags.album),
            track_number=pick(track.track_number, tags.track),
            year=pick(track.year, tags.year),
        )
        if updated != track:
            self.put(updated)

    def set_artwork_size(self, track_id: str, width: int, height: int) -> None:
        track = self.get(track_id)
        if track is not None and (track.artwork_width, track.artwork_height) != (width, height):
            self.put(replace(track, artwork_width=width, artwork_height=height))

    def recent(self, source: SourceKind | None = None, limit: int = 100, *, listed: bool | None = None) -> list[Track]:
        """The most recently registered URL and SoundCloud tracks (of ``source``), newest first;
        ``listed=True``: only the listed ones."""
        tracks: list[Track] = []
        for track_id in reversed(self._remote):
            track = self.get(track_id)
            if (track is not None and (source is None or track.source == source)
                    and (listed is None or track.listed == listed)):
                tracks.append(track)
                if len(tracks) >= limit:
                    break
        return tracks

    def remove(self, track_id: str) -> bool:
        """Drop a track (a purge, an eviction), telling the subscribers."""
        known = track_id in self._sizes
        removed = self._remove(track_id)
        if known:
            self._tell(Removed(track_id))
        return removed

    def _remove(self, track_id: str) -> bool:
        self._memory.pop(track_id, None)
        self._bytes -= self._sizes.pop(track_id, 0)
        self._remote.pop(track_id, None)
        if self._unplayed.pop(track_id, False) is not None:  # it may have a "played" mark
            self._db.delete(("played", track_id))
        return bool(self._db.delete(("track", track_id)))

    def close(self) -> None:
        self._db.close()
