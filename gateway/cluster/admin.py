"""Administration across the cluster: changes told to every node, stats summed.

An admin change on one node (a reload, new ``[sources.*]``, a purged track)
is published on ``ztream:broadcast``; every other node applies it to itself:
a reload re-reads its own config file and overlay (nodes of one machine share
the overlay file beside the config; nodes on other machines need the same
file deployed), a purge drops the track from its store and catalog.
``GET /v1/admin/stats`` adds ``cluster``: the stats every live node publishes
with its heartbeat, summed.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from ..config import ConfigError
from ..media import CATALOG, MEDIA
from . import CLUSTER, keys

__all__ = ["tell_cluster", "cluster_stats", "apply_broadcast", "listen"]

log = logging.getLogger("ztream.cluster")


async def tell_cluster(app: web.Application, payload: dict[str, Any]) -> None:
    """Publish an admin change to the other nodes (nothing without a cluster, or with Redis down)."""
    cluster = app.get(CLUSTER)
    if cluster is not None:
        await cluster.broadcast(payload)


def cluster_stats(app: web.Application) -> dict[str, Any] | None:
    cluster = app.get(CLUSTER)
    if cluster is None:
        return None
    live = cluster.directory.live()
    totals: dict[str, Any] = {"nodes": len(live), "redis": "up" if cluster.link.up else "down"}
    for name in ("peers_connected", "server_bytes", "peer_bytes", "transcodes_running"):
        totals[name] = sum(int(n.stats.get(name, 0)) for n in live)
    moved = totals["peer_bytes"] + totals["server_bytes"]
    totals["offload"] = round(totals["peer_bytes"] / moved, 4) if moved else None
    return totals


async def apply_broadcast(app: web.Application, raw: bytes | str) -> None:
    from ..admin import LIVE_CONFIG  # the admin package imports this module

    cluster = app[CLUSTER]
    try:
        msg = json.loads(raw)
        kind, node = str(msg["t"]), str(msg["node"])
    except (ValueError, KeyError, TypeError):
        return
    if node == cluster.node_id:
        return
    if kind == "reload":
        try:
            await app[LIVE_CONFIG].reload(f"cluster: a change on node {node}")
        except ConfigError:
            pass  # logged by LiveConfig.reload; the running configuration stays
    elif kind == "purge":
        track_id = str(msg.get("id", ""))
        track = app[CATALOG].get(track_id)
        media = app[MEDIA]
        if track is not None and media.flight(track) is None:
            media.purge(track_id)
            app[CATALOG].remove(track_id)
            log.info("track %s purged on node %s's word", track_id, node)


async def listen(app: web.Application) -> None:
    """Apply what other nodes broadcast, for as long as the app runs."""
    import asyncio

    cluster = app[CLUSTER]
    while True:
        if cluster.link.up:
            async for raw in cluster.link.subscribe(keys.BROADCAST):
                try:
                    await apply_broadcast(app, raw)
                except Exception:  # noqa: BLE001 - one bad change must not end the listener
                    log.exception("applying a cluster broadcast failed")
        await asyncio.sleep(0.2)
