"""The node's link to Redis: one server or a Redis Cluster, up or down.

Theory of operation
-------------------

``RedisLink`` owns the client and knows whether Redis answers. Every use goes
through ``call``: an error (refused, reset, timeout, a cluster moving slots)
marks the link *down*, counts one outage in ``ztream_redis_outages_total``,
names ``redis`` in ``/healthz``'s reasons, and makes ``call`` return ``None``;
callers then do what one node alone would (per-node introductions, local
transcodes). A watcher pings every ``PROBE_SECONDS`` while down; the first
answer marks it *up* again and runs the ``on_heal`` callbacks (``on_down``
ones run when it goes down: the swarm forgets the other nodes' peers) (the swarm
re-writes its holdings, the subscriber re-subscribes). Nothing here raises
into a request.

A Redis Cluster is detected by itself (``INFO cluster``), so ``redis_url``
is the same kind of URL either way. In a cluster each key is routed by its
slot; commands that touch several keys at once (the transcode lock's scripts)
only use keys sharing one ``{hash tag}``, see ``keys.py`` and docs/cluster.md.
Pub/sub is per node: a node's channel is published to, and subscribed on, the
cluster node that owns the channel's slot, so messages on one channel keep
their order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from ..health import Health
from ..metrics import Metrics

__all__ = ["RedisLink", "REDIS_ERRORS"]

log = logging.getLogger("ztream.cluster")

T = TypeVar("T")

PROBE_SECONDS = 1.0
TIMEOUT_SECONDS = 2.0
REASON = "redis"
# What a Redis that went away raises (redis-py wraps most, not all, socket errors).
REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, asyncio.TimeoutError, IndexError)


class RedisLink:
    def __init__(self, url: str, *, health: Health, metrics: Metrics) -> None:
        self.url = url
        self.health = health
        self.metrics = metrics
        self.client: Any = None  # aioredis.Redis | RedisCluster once connected
        self.is_cluster = False
        self.up = False
        self.on_heal: list[Callable[[], Awaitable[None]]] = []
        self.on_down: list[Callable[[], None]] = []
        self._watcher: asyncio.Task[None] | None = None
        self._closed = False
        # One more for every heal: a subscription made before it ends, so that
        # it is made afresh (redis-py may re-subscribe by itself, but not tell).
        self.epoch = 0

    # -- connection ----------------------------------------------------------

    async def start(self) -> None:
        """Connect if Redis answers; if not, start degraded (no error)."""
        if not await self._connect():
            self._mark_down("unreachable at start")
        self._watcher = asyncio.create_task(self._watch(), name="ztream-redis-watch")

    async def _connect(self) -> bool:
        kwargs: dict[str, Any] = {"socket_timeout": TIMEOUT_SECONDS, "socket_connect_timeout": TIMEOUT_SECONDS}
        plain = aioredis.Redis.from_url(self.url, **kwargs)
        try:
            info = await plain.info("cluster")
            if info.get("cluster_enabled"):
                await plain.aclose()
                cluster = RedisCluster.from_url(self.url, **kwargs)
                await cluster.initialize()
                await self._close_client()
                self.client, self.is_cluster = cluster, True
            else:
                await self._close_client()
                self.client, self.is_cluster = plain, False
        except REDIS_ERRORS as exc:
            log.debug("redis connect failed: %s", exc)
            with contextlib.suppress(*REDIS_ERRORS):
                await plain.aclose()
            return False
        self.up = True
        return True

    async def _close_client(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            with contextlib.suppress(*REDIS_ERRORS):
                await client.aclose()

    async def close(self) -> None:
        self._closed = True
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await self._close_client()

    def _mark_down(self, why: object) -> None:
        was_up = self.up or REASON not in self.health.reasons
        self.up = False
        self.health.degrade(REASON)
        if was_up:
            log.warning("redis is unreachable (%s): this node carries on alone until it is back", why)
            self.metrics.redis_outages.inc()
            for callback in list(self.on_down):
                callback()

    async def _watch(self) -> None:
        while not self._closed:
            await asyncio.sleep(PROBE_SECONDS)
            if self.up:
                continue
            healed = False
            if self.client is not None and not self.is_cluster:
                try:
                    healed = bool(await asyncio.wait_for(self.client.ping(), TIMEOUT_SECONDS))
                except REDIS_ERRORS:
                    healed = False
            if not healed:
                # A cluster client (or none) is rebuilt: its slot map may be stale.
                healed = await self._connect()
            if healed:
                self.epoch += 1
                self.up = True
                self.health.heal(REASON)
                log.info("redis is back: rejoining the cluster")
                for callback in list(self.on_heal):
                    try:
                        await callback()
                    except REDIS_ERRORS as exc:
                        self._mark_down(exc)
                        break

    # -- use -----------------------------------------------------------------

    async def call(self, use: Callable[[Any], Awaitable[T]]) -> T | None:
        """``await use(client)``, or ``None`` (and the link marked down) if Redis fails."""
        if not self.up or self.client is None:
            return None
        try:
            return await asyncio.wait_for(use(self.client), TIMEOUT_SECONDS * 2)
        except REDIS_ERRORS as exc:
            self._mark_down(exc)
            return None

    async def publish(self, channel: str, data: str) -> bool:
        """PUBLISH to ``channel``, on the cluster node that owns its slot."""

        async def go(client: Any) -> bool:
            if self.is_cluster:
                node = client.get_node_from_key(channel)
                await client.execute_command("PUBLISH", channel, data, target_nodes=node)
            else:
                await client.publish(channel, data)
            return True

        return bool(await self.call(go))

    async def subscribe(self, channel: str, on_subscribed: Callable[[], None] | None = None) -> AsyncIterator[bytes]:
        """The messages on ``channel`` until the connection fails (then it ends, marking the link down).

        ``on_subscribed`` runs once Redis has confirmed the subscription: from
        then on nothing published on ``channel`` is missed. The iteration also
        ends when the link went down and healed since (a new epoch).
        """
        if not self.up or self.client is None:
            return
        epoch = self.epoch
        if self.is_cluster:
            node = self.client.get_node_from_key(channel)
            conn: Any = aioredis.Redis(host=node.host, port=node.port, socket_connect_timeout=TIMEOUT_SECONDS)
        else:
            conn = self.client
        pubsub = conn.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(channel)
            if on_subscribed is not None:
                on_subscribed()
            while not self._closed:
                message = await pubsub.get_message(timeout=PROBE_SECONDS)
                if message is not None and message.get("type") == "message":
                    yield message["data"]
                elif not self.up or self.epoch != epoch:
                    return
        except REDIS_ERRORS as exc:
            self._mark_down(exc)
        finally:
            with contextlib.suppress(*REDIS_ERRORS):
                await pubsub.aclose()
            if conn is not self.client:
                with contextlib.suppress(*REDIS_ERRORS):
                    await conn.aclose()
