"""The catalog's bound: never-played URL tracks make room, library and played tracks stay."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import Overloaded
from gateway.media.catalog import Track, TrackCatalog


def url_track(n: int, pad: int = 0) -> Track:
    return Track(id=f"u{n:015d}", source="url", locator=f"https://music.example/{n}.mp3?{'x' * pad}",
                 title=f"t{n}", created=1000.0 + n)


def test_the_oldest_never_played_tracks_make_room(tmp_path: Path) -> None:
    catalog = TrackCatalog(tmp_path / "tracks", max_tracks=5)
    library = Track(id="l" * 16, source="local", locator="/music/a.flac", title="a", created=1.0)
    catalog.add(library)
    for n in range(4):
        catalog.add(url_track(n))
    catalog.mark_played(url_track(0).id)
    for n in range(4, 10):
        catalog.add(url_track(n))
    assert len(catalog) == 5
    kept = {t.id for t in catalog.recent()}
    # The library track and the played one stay; the newest never-played fill the rest.
    assert catalog.get(library.id) is not None and url_track(0).id in kept
    assert kept == {url_track(n).id for n in (0, 7, 8, 9)}
    assert [t.id for t in catalog.recent(limit=2)] == [url_track(9).id, url_track(8).id]


def test_the_byte_bound_and_a_full_catalog(tmp_path: Path) -> None:
    catalog = TrackCatalog(tmp_path / "tracks", max_tracks=1000, max_bytes=20_000)
    for n in range(50):
        catalog.add(url_track(n, pad=4000))
    assert catalog.bytes <= 20_000 and len(catalog) == 4
    for track in catalog.recent():
        catalog.mark_played(track.id)
    with pytest.raises(Overloaded) as refused:
        catalog.add(url_track(99, pad=4000))
    assert refused.value.code == "catalog_full"
    # A library track is never refused: the library has its own bound.
    catalog.add(Track(id="l" * 16, source="local", locator="/music/a.flac", title="a"))
    assert catalog.get("l" * 16) is not None


def test_the_index_and_played_marks_survive_a_restart(tmp_path: Path) -> None:
    catalog = TrackCatalog(tmp_path / "tracks", max_tracks=3)
    for n in range(3):
        catalog.add(url_track(n))
    catalog.mark_played(url_track(0).id)
    catalog.close()
    catalog = TrackCatalog(tmp_path / "tracks", max_tracks=3)
    assert [t.id for t in catalog.recent()] == [url_track(n).id for n in (2, 1, 0)]
    catalog.add(url_track(3))  # evicts 1, the oldest never played (0 has played)
    assert catalog.get(url_track(1).id) is None and catalog.get(url_track(0).id) is not None
