"""Administration across the cluster: changes told to every node, stats summed.

An admin change on one node (a reload, new ``[sources.*]``, a purged track)
reaches ``tell`` through the live configuration's ``on_admin_change`` signal
(gateway/admin/changes.py), which the cluster subscribes to, and is published
on ``ztream:broadcast``; every other node applies it to itself: a reload
re-reads its own config file and overlay (nodes of one machine share the
overlay file beside the config; nodes on other machines need the same file
deployed), a purge drops the track from its store and catalog.
``GET /v1/admin/stats`` adds ``cluster`` (``stats``, given to the admin API
by ``create_app``): the stats every live node publishes with its heartbeat,
summed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from ..admin import AdminChange, LiveConfig, Purged, Reloaded
from ..config import ConfigError
from ..live.service import LiveService
from ..media.catalog import TrackCatalog, is_track_id
from ..media.service import MediaService
from . import keys
from .link import RedisLink
from .node import Directory

__all__ = ["payload_of", "stats", "apply_broadcast", "listen"]

log = logging.getLogger("ztream.cluster")


def payload_of(change: AdminChange) -> dict[str, Any]:
    """What ``ztream:broadcast`` carries for ``change`` (the sending node's id is added to it)."""
    if isinstance(change, Purged):
        return {"t": "purge", "id": change.track_id}
    assert isinstance(change, Reloaded)
    return {"t": "reload"}


def stats(link: RedisLink, directory: Directory) -> dict[str, Any]:
    """The live nodes' stats, summed (the ``cluster`` section of ``GET /v1/admin/stats``)."""
    live = directory.live()
    totals: dict[str, Any] = {"nodes": len(live), "redis": "up" if link.up else "down"}
    for name in ("peers_connected", "server_bytes", "peer_bytes", "transcodes_running"):
        totals[name] = sum(int(n.stats.get(name, 0)) for n in live)
    moved = totals["peer_bytes"] + totals["server_bytes"]
    totals["offload"] = round(totals["peer_bytes"] / moved, 4) if moved else None
    return totals


async def apply_broadcast(node_id: str, raw: bytes | str, *, live: LiveConfig, catalog: TrackCatalog,
                          media: MediaService, stations: LiveService | None = None) -> None:
    """Apply another node's admin change here (one of this node's own is ignored); a purge also stops
    the track's live ingest or copy here (``stations``)."""
    try:
        msg = json.loads(raw)
        kind, node = str(msg["t"]), str(msg["node"])
    except (ValueError, KeyError, TypeError):
        return
    if node == node_id:
        return
    if kind == "reload":
        try:
            await live.reload(f"cluster: a change on node {node}")
        except ConfigError:
            pass  # logged by LiveConfig.reload; the running configuration stays
    elif kind == "purge":
        track_id = str(msg.get("id", ""))
        if not is_track_id(track_id):
            return
        if stations is not None:
            await stations.stop(track_id)
        track = catalog.get(track_id)
        # The shared catalog may have dropped the record already: the chunks go all the same.
        if track is None or media.flight(track) is None:
            media.purge(track_id)
            catalog.drop(track_id)
            log.info("track %s purged on node %s's word", track_id, node)


async def listen(link: RedisLink, node_id: str, *, live: LiveConfig, catalog: TrackCatalog,
                 media: MediaService, stations: LiveService | None = None) -> None:
    """Apply what other nodes broadcast, for as long as the app runs."""
    while True:
        if link.up:
            async for raw in link.subscribe(keys.BROADCAST):
                try:
                    await apply_broadcast(node_id, raw, live=live, catalog=catalog, media=media, stations=stations)
                except Exception:  # noqa: BLE001 - one bad change must not end the listener
                    log.exception("applying a cluster broadcast failed")
        await asyncio.sleep(0.2)
