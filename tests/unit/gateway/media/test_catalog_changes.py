"""What the catalog tells a cluster's shared catalog, and what it takes from it without telling."""

from __future__ import annotations

from pathlib import Path

from gateway.media.catalog import (
    CatalogChange,
    HeldHere,
    Removed,
    SharedCatalog,
    Stored,
    Track,
    TrackCatalog,
    track_id_for,
    track_of,
)
from transcode.analysis import Tags


def _track(name: str, created: float, source: str = "url") -> Track:
    locator = f"https://media.example.org/{name}.mp3" if source == "url" else f"/music/{name}.flac"
    return Track(id=track_id_for(source, locator), source=source, locator=locator, title=name,  # type: ignore[arg-type]
                 created=created)


class Shared:
    def __init__(self, known: dict[str, tuple[Track, bool]] | None = None) -> None:
        self.changes: list[CatalogChange] = []
        self.known = known or {}
        self.asked: list[str] = []

    def told(self, change: CatalogChange) -> None:
        self.changes.append(change)

    async def lookup(self, track_id: str) -> tuple[Track, bool] | None:
        self.asked.append(track_id)
        return self.known.get(track_id)

    async def written(self, track_id: str) -> None:
        return None

    def library_elsewhere(self) -> list[str]:
        return [t for t, (track, _) in self.known.items() if track.source == "local"]


def test_changes_are_told_with_the_fields_they_set(tmp_path: Path) -> None:
    shared = Shared()
    assert isinstance(shared, SharedCatalog)
    catalog = TrackCatalog(tmp_path, shared=shared)
    a = _track("a", 1.0)
    catalog.add(a)
    catalog.add(a)  # known: nothing to tell
    catalog.apply_tags(a.id, Tags(title="Song", artist="Band"))
    catalog.mark_transcoded(a.id)
    catalog.remove(a.id)
    lib = _track("lib", 2.0, "local")
    catalog.add(lib)
    catalog.add(lib)  # the library found it again: still here
    assert shared.changes == [
        Stored(a.id, {**_fields(a), "played": False}),
        Stored(a.id, {"title": "Song", "artist": "Band"}),
        Stored(a.id, {"played": True}),
        Stored(a.id, {"listed": True}),
        Removed(a.id),
        Stored(lib.id, {**_fields(lib), "played": False}),
        HeldHere(lib.id),
        HeldHere(lib.id),
    ]


def _fields(track: Track) -> dict[str, object]:
    from dataclasses import asdict

    return asdict(track)


async def test_other_nodes_tracks_are_kept_without_telling_and_found_on_a_miss(tmp_path: Path) -> None:
    remote = _track("remote", 3.0)
    shared = Shared({remote.id: (remote, True)})
    catalog = TrackCatalog(tmp_path, shared=shared, max_tracks=2)
    assert catalog.get(remote.id) is None
    assert await catalog.find(remote.id) == remote
    assert catalog.played(remote.id) and shared.asked == [remote.id]
    assert await catalog.find(remote.id) == remote and shared.asked == [remote.id]  # kept: asked once
    assert await catalog.find("0123456789abcdef") is None
    assert await catalog.find("../etc") is None and "../etc" not in shared.asked  # not an id: never asked
    # Room for another node's record is made here alone: the cluster keeps what this node evicts.
    unplayed = [_track("u1", 4.0), _track("u2", 5.0)]
    catalog.apply(unplayed[0], False)
    catalog.apply(unplayed[1], False)
    assert catalog.get(unplayed[0].id) is None and len(catalog) == 2
    assert catalog.drop(remote.id) and catalog.get(remote.id) is None
    # Another node's library tracks, once known here, sorted by path.
    b, a = _track("b", 6.0, "local"), _track("a", 7.0, "local")
    shared.known.update({b.id: (b, True), a.id: (a, True)})
    assert catalog.library_elsewhere() == []  # not known here yet
    catalog.apply(b, True)
    catalog.apply(a, True)
    assert catalog.library_elsewhere() == [a, b]
    assert TrackCatalog(tmp_path / "alone").library_elsewhere() == []
    assert shared.changes == []


def test_records_of_another_version() -> None:
    a = _track("a", 1.0)
    assert track_of({**_fields(a), "played": True, "from_the_future": 1}) == a
    assert track_of({"id": a.id}) is None
    assert track_of({**_fields(a), "id": "../x"}) is None
