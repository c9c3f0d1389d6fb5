"""The live nodes: each node's heartbeat in Redis, and who else is alive.

Every ``HEARTBEAT_SECONDS`` a node writes its field of the ``ztream:nodes``
hash (its URL for other nodes, the time, its stats) and reads the others; a
field older than ``NODE_TTL`` is a node not alive (its holders are not
offered); one older than ``DEAD_AFTER`` is a dead node's, deleted by whoever
sees it, and its holders with it. A hash with per-field times rather than one key per node: listing the
nodes is then one HGETALL on one slot, in a Redis Cluster too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import keys
from .link import RedisLink

__all__ = ["Directory", "NodeInfo", "HEARTBEAT_SECONDS", "NODE_TTL"]

log = logging.getLogger("ztream.cluster")

HEARTBEAT_SECONDS = 1.0
# A node silent this long is dead: its holders are not offered, its lock is not waited for past its TTL.
NODE_TTL = 5.0
DEAD_AFTER = 30.0


@dataclass(frozen=True, slots=True)
class NodeInfo:
    id: str
    url: str
    seen: float
    stats: dict[str, Any]


class Directory:
    def __init__(self, link: RedisLink, node_id: str, url: str, stats: Callable[[], dict[str, Any]]) -> None:
        self.link = link
        self.node_id = node_id
        self.url = url
        self._stats = stats
        self.nodes: dict[str, NodeInfo] = {}
        # Nodes seen dead (silent for DEAD_AFTER while Redis answered us): their
        # holders may be deleted by anyone. A node merely not heard from yet
        # (Redis just came back) is not dead.
        self.dead: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def alive(self, node: str) -> bool:
        if node == self.node_id:
            return True
        info = self.nodes.get(node)
        return info is not None and time.time() - info.seen <= NODE_TTL

    def url_of(self, node: str) -> str | None:
        info = self.nodes.get(node)
        return info.url if info is not None else None

    def forget(self, node: str) -> None:
        """A node that refused a connection: not alive, whatever its last heartbeat said."""
        self.nodes.pop(node, None)

    async def beat(self) -> None:
        now = time.time()
        mine = json.dumps({"url": self.url, "seen": now, "stats": self._stats()})

        async def go(client: Any) -> dict[Any, Any]:
            await client.hset(keys.nodes(), self.node_id, mine)
            return dict(await client.hgetall(keys.nodes()))

        raw = await self.link.call(go)
        if raw is None:
            return
        nodes: dict[str, NodeInfo] = {}
        stale: list[str] = []
        for field, value in raw.items():
            node = field.decode() if isinstance(field, bytes) else str(field)
            try:
                data = json.loads(value)
                info = NodeInfo(node, str(data["url"]), float(data["seen"]), dict(data.get("stats") or {}))
            except (ValueError, KeyError, TypeError):
                stale.append(node)
                continue
            if now - info.seen > DEAD_AFTER:
                stale.append(node)
                self.dead.add(node)
            nodes[node] = info
            if now - info.seen <= NODE_TTL:
                self.dead.discard(node)
        self.nodes = nodes
        if stale:
            await self.link.call(lambda c: c.hdel(keys.nodes(), *stale))

    async def leave(self) -> None:
        await self.link.call(lambda c: c.hdel(keys.nodes(), self.node_id))

    async def _run(self) -> None:
        while True:
            try:
                await self.beat()
            except Exception:  # noqa: BLE001 - the heartbeat must outlive any one bad answer
                log.exception("cluster heartbeat failed")
            await asyncio.sleep(HEARTBEAT_SECONDS)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ztream-cluster-heartbeat")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.leave()

    def live(self) -> list[NodeInfo]:
        return [n for n in self.nodes.values() if self.alive(n.id)]
