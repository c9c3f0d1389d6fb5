"""Many gateway processes and machines, one swarm and one transcode per track (docs/cluster.md).

Theory of operation
-------------------

With ``[cluster] redis_url`` empty nothing here runs and the gateway is one
node alone, exactly as without this package. With it, ``setup_cluster``
wraps the same cores in one more shell:

- ``link``: the Redis client (one server or a Redis Cluster), up or down;
  down means degraded (``/healthz``), never an error in a request.
- ``node``: heartbeats: which nodes are alive, and their URLs and stats.
- ``tracker`` + ``swarm``: the swarm hub unchanged, its tracker knowing of
  holders on other nodes, signals relayed through a pub/sub channel per node.
- ``media``: the media service's flights made by the node holding the
  track's lock, pulled by the others.

``ZTREAM_NODE_URL`` in the environment overrides ``node_url``: ``ztream
serve --workers N`` gives each worker its own private port that way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from ..config import Config
from ..health import HEALTH
from ..media import MEDIA
from ..metrics import METRICS
from ..swarm import HUB, SOCKETS, TRACKER
from . import keys
from .link import RedisLink
from .media import TrackOwnership
from .node import Directory
from .swarm import SwarmFederation
from .tracker import ClusterTracker

__all__ = ["CLUSTER", "Cluster", "setup_cluster", "node_url"]

log = logging.getLogger("ztream.cluster")


class Cluster:
    """This node's part of the cluster: what ``setup_cluster`` built."""

    def __init__(self, node_id: str, url: str, link: RedisLink, directory: Directory,
                 federation: SwarmFederation, ownership: TrackOwnership) -> None:
        self.node_id = node_id
        self.url = url
        self.link = link
        self.directory = directory
        self.federation = federation
        self.ownership = ownership

    async def broadcast(self, payload: dict[str, Any]) -> bool:
        """Tell every node (admin changes, reloads); False when Redis is down."""
        return await self.link.publish(keys.BROADCAST, json.dumps({**payload, "node": self.node_id}))


CLUSTER = web.AppKey("cluster", Cluster)


def node_url(config: Config) -> str:
    override = os.environ.get("ZTREAM_NODE_URL", "")
    if override:
        return override.rstrip("/")
    if config.cluster.node_url:
        return config.cluster.node_url.rstrip("/")
    host = config.server.host
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"  # reachable from this machine at least; set node_url for others
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.server.port}"


def _node_stats(app: web.Application) -> dict[str, Any]:
    registry = app[METRICS].registry

    def sample(name: str, labels: dict[str, str] | None = None) -> float:
        return float(registry.get_sample_value(name, labels or {}) or 0.0)

    return {
        "peers_connected": len(app[HUB]),
        "server_bytes": int(sum(sample("ztream_server_bytes_total", {"kind": k}) for k in ("init", "chunk", "stream"))),
        "peer_bytes": int(sample("ztream_peer_bytes_total")),
        "transcodes_running": int(sample("ztream_transcodes_running")),
    }


def setup_cluster(app: web.Application, config: Config) -> None:
    """Make this app a cluster node if ``[cluster] redis_url`` is set; else do nothing."""
    url = config.cluster.redis_url
    if not url:
        return
    node_id = config.cluster.node_id or secrets.token_hex(8)
    worker = os.environ.get("ZTREAM_WORKER", "")
    if worker and config.cluster.node_id:
        node_id = f"{node_id}-{worker.split('/')[0]}"  # one name per worker of `--workers N`
    old = app[TRACKER]
    tracker = ClusterTracker(
        node_id, upload_slots=old.upload_slots, max_tracks=old.max_tracks, max_chunks=old.max_chunks,
        max_ranges=old.max_ranges, max_holders=old.max_holders, max_introductions=old.max_introductions,
        max_want=old.max_want,
    )
    # Swapped before any peer joined: the hub's rules stay, its tracker knows more.
    app[HUB].tracker = tracker
    app[TRACKER] = tracker

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        link = RedisLink(url, health=app[HEALTH], metrics=app[METRICS])
        await link.start()
        me = node_url(config)
        directory = Directory(link, node_id, me, lambda: _node_stats(app))
        await directory.beat()
        directory.start()
        federation = SwarmFederation(link, directory, tracker, app[SOCKETS])
        app[SOCKETS].federation = federation
        federation.start()
        media = app[MEDIA]
        ownership = TrackOwnership(link, directory, media.rendition.id, wait_seconds=config.server.chunk_wait_seconds,
                                   extras=media.rendition.extras)
        media.events_hook = ownership.events
        app[CLUSTER] = Cluster(node_id, me, link, directory, federation, ownership)
        from .admin import listen

        listener = asyncio.create_task(listen(app), name="ztream-cluster-broadcast")
        log.info("cluster node %s at %s (redis %s)", node_id, me, "up" if link.up else "down")
        try:
            yield
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            media.events_hook = None
            app[SOCKETS].federation = None
            with contextlib.suppress(Exception):
                await federation.stop()
            await directory.stop()
            await ownership.close()
            await link.close()

    app.cleanup_ctx.append(lifetime)
