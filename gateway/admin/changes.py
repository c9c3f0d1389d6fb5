"""What the admin API changed on this node, told to whoever subscribed.

A signal in the manner of aiohttp's ``on_startup``: subscribers are async
callbacks, each awaited in turn with the change. The admin API sends one
after a change it made succeeded (``PUT /v1/admin/sources`` and ``POST
/v1/admin/reload``: ``Reloaded``; ``DELETE /v1/admin/tracks/{id}``:
``Purged``), before it answers. A reload for another reason (SIGHUP, or
another node's word) sends nothing, so a change told to other nodes is never
told back. A cluster node subscribes and tells the other nodes
(gateway/cluster/admin.py); the admin package knows nothing of who listens.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = ["AdminChange", "AdminChanges", "Purged", "Reloaded"]


@dataclass(frozen=True, slots=True)
class Reloaded:
    """The running configuration was changed or re-read through the admin API."""


@dataclass(frozen=True, slots=True)
class Purged:
    """A track was dropped from this node's store and catalog through the admin API."""

    track_id: str


AdminChange = Reloaded | Purged
Subscriber = Callable[[AdminChange], Awaitable[None]]


class AdminChanges:
    """The subscribers to admin changes; ``send`` awaits each in the order they subscribed."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.remove(subscriber)

    async def send(self, change: AdminChange) -> None:
        for subscriber in list(self._subscribers):
            await subscriber(change)

    def __len__(self) -> int:
        return len(self._subscribers)
