"""The swarm: the control WebSocket ``/v1/ws``, its tracker and its signaling relay.

Theory of operation
-------------------

Five layers, from pure to I/O (docs/websocket.md is the contract):

- ``messages``: one frozen dataclass per control message, both ways.
- ``codec``: their text form: ``parse(text)`` (peer → server, raising
  ``ProtocolError``) and ``render(message)`` (server → peer).
- ``tracker``: who holds which chunks, whom to introduce to whom.
- ``hub``: ``SwarmHub``, the rules (rates, strikes, relay, stats, idle),
  fed events and returning what to send, close and count.
- ``socket``: the aiohttp handler that pumps frames through the hub.

``setup_swarm(app, config, metrics)`` builds them and hangs the hub, the
tracker and the sockets on the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator

from aiohttp import web

from ..config import Config
from ..metrics import Metrics
from ..nat.service import NAT
from .hub import SwarmHub
from .heartbeat import TICK
from .socket import SWEEP_SECONDS, SwarmSockets
from .tracker import Tracker

__all__ = ["HUB", "TRACKER", "SOCKETS", "SwarmHub", "SwarmSockets", "Tracker", "setup_swarm"]

HUB = web.AppKey("swarm_hub", SwarmHub)
TRACKER = web.AppKey("tracker", Tracker)
# The open control sockets (the shell around HUB).
SOCKETS = web.AppKey("swarm_sockets", SwarmSockets)


async def _sweeper(app: web.Application) -> AsyncIterator[None]:
    sockets = app[SOCKETS]
    loop = asyncio.get_running_loop()

    async def sweep() -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            sockets.sweep(loop.time())

    async def beat() -> None:
        while True:
            await asyncio.sleep(TICK)
            sockets.beat(loop.time())

    tasks = [asyncio.create_task(sweep(), name="ztream-swarm-sweeper"),
             asyncio.create_task(beat(), name="ztream-swarm-heartbeats")]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _on_shutdown(app: web.Application) -> None:
    await app[SOCKETS].shutdown()


def setup_swarm(app: web.Application, config: Config, metrics: Metrics) -> None:
    """Hang the tracker, the hub and the sockets on the app, route ``/v1/ws``,
    tick the hub, close the sockets at shutdown."""
    tracker = Tracker(upload_slots=config.p2p.upload_slots)
    # The NAT plan (gateway/nat/) hands each peer its STUN address and TURN credentials.
    plan = app.get(NAT)
    ice_servers = plan.for_peer if plan is not None else config.p2p.ice_servers
    hub = SwarmHub(
        tracker, new_id=lambda: secrets.token_urlsafe(16), ice_servers=ice_servers,
        min_listeners=config.p2p.min_listeners,
    )
    sockets = SwarmSockets(hub, config, metrics)
    app[TRACKER] = tracker
    app[HUB] = hub
    app[SOCKETS] = sockets
    app.router.add_get("/v1/ws", sockets.handle, allow_head=False)
    app.cleanup_ctx.append(_sweeper)
    app.on_shutdown.append(_on_shutdown)
