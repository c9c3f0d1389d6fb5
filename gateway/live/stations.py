"""Stations the operator declares (``[[live.stations]]``): live tracks registered at start-up."""

from __future__ import annotations

import time
from dataclasses import replace

from ..config import LiveConfig
from ..media.catalog import Track, TrackCatalog, track_id_for
from ..netpolicy import parse_url

__all__ = ["declared_stations", "register_stations"]


def declared_stations(config: LiveConfig) -> list[Track]:
    """One live track per declared station, with the id a POST of its URL would give it."""
    tracks = []
    for station in config.stations:
        url = parse_url(station.url).url
        tracks.append(Track(id=track_id_for("url", url), source="url", locator=url, title=station.name, live=True))
    return tracks


def register_stations(catalog: TrackCatalog, config: LiveConfig) -> list[Track]:
    """Put the declared stations in the catalog (a record of the same URL becomes live, with the declared name),
    listed: the operator's own, like the library's files."""
    registered = []
    for track in declared_stations(config):
        known = catalog.get(track.id)
        track = (replace(known, live=True, title=track.title, listed=True) if known is not None
                 else replace(track, created=time.time(), listed=True))
        catalog.put(track)
        registered.append(track)
    return registered
