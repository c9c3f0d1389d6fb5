"""Many gateway processes and machines, one swarm and one transcode per track (docs/cluster.md).

Theory of operation
-------------------

With ``[cluster] redis_url`` empty nothing here runs and the gateway is one
node alone, exactly as without this package. With it, ``create_app`` builds
this node's ``Cluster`` before the services it joins and passes its pieces
in, so the same cores get one more shell:

- ``link``: the Redis client (one server or a Redis Cluster), up or down;
  down means degraded (``/healthz``), never an error in a request.
- ``node``: heartbeats: which nodes are alive, and their URLs and stats.
- ``tracker`` + ``swarm``: the swarm hub unchanged over a ``ClusterTracker``
  that knows of holders on other nodes; the sockets' ``Federation`` relays
  signals through a pub/sub channel per node.
- ``media``: the media service's flights (its ``events_hook``) made by the
  node holding the track's lock, pulled by the others.
- ``catalog`` + ``records``: one catalog: each node's track catalog a
  replica of the records in Redis, its changes merged into them.
- ``live``: one ingest per live station (the live service's ``ingest_hook``) on the node
  holding the station's lock, the owner's window copied by the others.
- ``admin``: admin changes (the live configuration's ``on_admin_change``)
  told to every node, and the cluster's stats.

Building does no I/O; ``setup_cluster`` adds the lifetime (a ``cleanup_ctx``
after the media service's and the swarm's) that connects Redis (or starts
degraded: the link heals by itself), beats, federates and listens, and stops
them in reverse at shutdown.

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
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from transcode.ffmpeg import Rendition

from ..admin import AdminChange, LiveConfig
from ..config import Config
from ..health import Health
from ..live import LIVE
from ..media import CATALOG, MEDIA
from ..media.catalog import Track
from ..metrics import Metrics
from ..swarm import SwarmHub, SwarmSockets
from . import admin, keys
from .catalog import CatalogSync
from .link import RedisLink
from .live import LiveOwnership
from .media import TrackOwnership
from .node import Directory
from .swarm import SwarmFederation
from .tracker import ClusterTracker

__all__ = ["CLUSTER", "Cluster", "ClusterTracker", "setup_cluster", "node_id", "node_url", "node_stats"]

log = logging.getLogger("ztream.cluster")


def node_id(config: Config) -> str:
    """This node's name: ``cluster.node_id`` (with the worker's number under ``--workers N``), or a random one."""
    name = config.cluster.node_id or secrets.token_hex(8)
    worker = os.environ.get("ZTREAM_WORKER", "")
    if worker and config.cluster.node_id:
        name = f"{name}-{worker.split('/')[0]}"  # one name per worker of `--workers N`
    return name


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


def node_stats(metrics: Metrics, hub: SwarmHub) -> dict[str, Any]:
    """What this node publishes with its heartbeat (summed by ``GET /v1/admin/stats``)."""
    registry = metrics.registry

    def sample(name: str, labels: dict[str, str] | None = None) -> float:
        return float(registry.get_sample_value(name, labels or {}) or 0.0)

    return {
        "peers_connected": len(hub),
        "server_bytes": int(sum(sample("ztream_server_bytes_total", {"kind": k}) for k in ("init", "chunk", "stream"))),
        "peer_bytes": int(sample("ztream_peer_bytes_total")),
        "transcodes_running": int(sample("ztream_transcodes_running")),
    }


class Cluster:
    """This node's part of the cluster, built by ``create_app`` before what it joins.

    ``tracker`` is the one the node's hub (``hub``) was built over; the
    ``federation`` is for the node's ``SwarmSockets``, ``track_ownership``
    makes the media service's ``events_hook``. Nothing here does I/O until
    ``setup_cluster``'s lifetime starts it.
    """

    def __init__(self, config: Config, *, tracker: ClusterTracker, hub: SwarmHub, health: Health,
                 metrics: Metrics) -> None:
        self.node_id = tracker.node_id
        self.url = node_url(config)
        self.tracker = tracker
        self.link = RedisLink(config.cluster.redis_url, health=health, metrics=metrics)
        self.directory = Directory(self.link, self.node_id, self.url, lambda: node_stats(metrics, hub))
        self.federation = SwarmFederation(self.link, self.directory, tracker)
        # The node's TrackCatalog is built with catalog.told and catalog.lookup (gateway/app.py).
        self.catalog = CatalogSync(self.link, self.node_id, alive=self.directory.alive)
        self.wait_seconds = config.server.chunk_wait_seconds
        self.metrics = metrics

    def track_ownership(self, rendition: Rendition, *, can_make: Callable[[Track], bool]) -> TrackOwnership:
        """The one-transcode-per-track lock and puller for a media service of ``rendition``
        (its ``events_hook`` is the result's ``events``); ``can_make(track)`` is False for a library
        track whose file is not on this node. The caller closes it."""
        return TrackOwnership(self.link, self.directory, rendition.id, wait_seconds=self.wait_seconds,
                              extras=rendition.extras, can_make=can_make, holders=self.catalog.holders)

    def live_ownership(self, *, chunk_wait: float) -> LiveOwnership:
        """The one-ingest-per-station lock and follower for the live service (its ``ingest_hook`` is the
        result's ``run``); ``chunk_wait`` is how long a node holds a request for the chunk past its edge.
        The caller closes it."""
        return LiveOwnership(self.link, self.directory, metrics=self.metrics, chunk_wait=chunk_wait)

    async def broadcast(self, payload: dict[str, Any]) -> bool:
        """Tell every node (admin changes, reloads); False when Redis is down."""
        return await self.link.publish(keys.BROADCAST, json.dumps({**payload, "node": self.node_id}))

    async def tell(self, change: AdminChange) -> None:
        """An admin change made here, for the other nodes (nothing with Redis down)."""
        await self.broadcast(admin.payload_of(change))

    def stats(self) -> dict[str, Any]:
        """The live nodes' stats, summed: ``GET /v1/admin/stats``'s ``cluster``."""
        return admin.stats(self.link, self.directory)


CLUSTER = web.AppKey("cluster", Cluster)


def setup_cluster(app: web.Application, cluster: Cluster, *, sockets: SwarmSockets, live: LiveConfig) -> None:
    """Hang ``cluster`` on the app, tell it the admin API's changes, and run it while the app runs.

    ``sockets`` are the swarm's (their federation is ``cluster.federation``);
    the media service and catalog are taken from the app when it starts.
    """
    app[CLUSTER] = cluster
    live.on_admin_change.subscribe(cluster.tell)

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        link, directory, federation = cluster.link, cluster.directory, cluster.federation
        await link.start()
        await directory.beat()
        directory.start()
        federation.start(sockets)
        catalog, media = app[CATALOG], app[MEDIA]

        def purge(track_id: str) -> None:
            # A purge made on another node while Redis was away reaches this one as its record's
            # removal only (the broadcast was lost): the chunks go with the record.
            track = catalog.get(track_id)
            if track is None or media.flight(track) is None:
                media.purge(track_id)

        cluster.catalog.start(catalog, purge=purge)
        listener = asyncio.create_task(
            admin.listen(link, cluster.node_id, live=live, catalog=app[CATALOG], media=app[MEDIA],
                         stations=app.get(LIVE)),
            name="ztream-cluster-broadcast",
        )
        log.info("cluster node %s at %s (redis %s)", cluster.node_id, cluster.url, "up" if link.up else "down")
        try:
            yield
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            await cluster.catalog.stop()
            with contextlib.suppress(Exception):
                await federation.stop()
            await directory.stop()
            await link.close()

    app.cleanup_ctx.append(lifetime)
