"""Gateway nodes of one cluster on loopback, for the cluster tests (Redis and nginx come from bench/cluster.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import redis

from bench.cluster import NginxEdge, RedisServer, RedisSetup
from tests.support.gateway import GatewayProcess

__all__ = ["NginxEdge", "RedisServer", "RedisSetup", "start_node", "wait_nodes"]


def start_node(tmp_path: Path, name: str, library: Path | None, redis_url: str, **overrides: dict[str, Any]) -> GatewayProcess:
    sub = tmp_path / name
    sub.mkdir()
    sections: dict[str, dict[str, Any]] = {"cluster": {"redis_url": redis_url, "node_id": name}}
    for key, values in overrides.items():
        sections.setdefault(key.replace("__", "."), {}).update(values)
    gw = GatewayProcess(sub, library, sections)
    gw.start()
    return gw


def wait_nodes(redis_url: str, count: int, *, cluster: bool, timeout: float = 10) -> None:
    """Until ``count`` nodes have beaten (so that every node knows the others)."""
    client: Any = redis.RedisCluster.from_url(redis_url) if cluster else redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(client.hgetall("ztream:nodes")) >= count:
            time.sleep(1.2)  # one more heartbeat: each node has read the others
            return
        time.sleep(0.1)
    raise RuntimeError("the nodes did not all register")
