"""The catalog's listing rule: a track is listed from its first complete transcode on."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from gateway.media.catalog import Track, TrackCatalog, track_id_for


def _track(name: str, created: float) -> Track:
    url = f"https://media.example.org/{name}.mp3"
    return Track(id=track_id_for("url", url), source="url", locator=url, title=name, created=created)


def test_listed_after_a_transcode_and_failures_are_kept_until_a_success(tmp_path: Path) -> None:
    catalog = TrackCatalog(tmp_path)
    a, b = _track("a", 1.0), _track("b", 2.0)
    catalog.add(a)
    catalog.add(b)
    assert [t.id for t in catalog.recent()] == [b.id, a.id]
    assert catalog.recent(listed=True) == []

    catalog.mark_failed(a.id, "upstream_not_found", "upstream host 'x' answered HTTP 404")
    failed = catalog.get(a.id)
    assert failed is not None and not failed.listed
    assert failed.error_json() == {"error": "upstream_not_found", "detail": "upstream host 'x' answered HTTP 404"}

    catalog.mark_transcoded(a.id)
    done = catalog.get(a.id)
    assert done is not None and done.listed and done.error_json() is None
    assert [t.id for t in catalog.recent(listed=True)] == [a.id]

    # A later failure is shown (with its setting) but does not unlist the track.
    catalog.mark_failed(a.id, "upstream_too_large", "too long (setting: x.y)", "x.y")
    again = catalog.get(a.id)
    assert again is not None and again.listed
    assert again.error_json() == {"error": "upstream_too_large", "detail": "too long (setting: x.y)", "setting": "x.y"}
    catalog.close()

    # Persisted: a new catalog over the same directory reads the same state.
    reopened = TrackCatalog(tmp_path)
    assert [t.id for t in reopened.recent(listed=True)] == [a.id]
    assert reopened.get(a.id) == again
    reopened.close()


def test_records_from_before_the_rule_are_listed_when_a_transcode_set_their_duration(tmp_path: Path) -> None:
    catalog = TrackCatalog(tmp_path)
    played, unplayed = _track("played", 1.0), _track("unplayed", 2.0)
    for track, duration in ((played, 12.5), (unplayed, None)):
        raw = asdict(track)
        raw["duration"] = duration
        for key in ("listed", "error_code", "error_detail", "error_setting"):
            del raw[key]
        catalog._db.set(("track", track.id), raw)
    catalog.close()
    # An older gateway wrote them; this one reads them at start.
    reopened = TrackCatalog(tmp_path)
    assert [t.id for t in reopened.recent(listed=True)] == [played.id]
    reopened.close()
