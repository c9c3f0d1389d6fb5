"""What makes this node degraded: a small registry ``/healthz`` reports.

A part of the gateway that loses something it can live without (Redis, for a
cluster node: docs/cluster.md) names the reason here while it lasts; the node
keeps serving, and ``/healthz`` lists it among its ``reasons`` (beside the
chunk store's faults) with ``"status": "degraded"``.
"""

from __future__ import annotations

from aiohttp import web

__all__ = ["HEALTH", "Health"]


class Health:
    def __init__(self) -> None:
        self._reasons: dict[str, None] = {}

    def degrade(self, reason: str) -> None:
        self._reasons[reason] = None

    def heal(self, reason: str) -> None:
        self._reasons.pop(reason, None)

    @property
    def reasons(self) -> list[str]:
        return list(self._reasons)


HEALTH = web.AppKey("health", Health)
