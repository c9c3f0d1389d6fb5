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

``create_app`` builds them (``make_hub``; in a cluster with a
``ClusterTracker`` and the sockets' ``Federation``, gateway/cluster/) and
``setup_swarm(app, hub, sockets)`` hangs them on the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from ..config import Config, ConfigError
from .heartbeat import TICK
from .hub import IceServers, SwarmHub, TurnGrant
from .networks import AsnDatabase, Networks
from .socket import SWEEP_SECONDS, Federation, SwarmSockets
from .tracker import Tracker

__all__ = [
    "HUB", "TRACKER", "SOCKETS", "Federation", "Networks", "SwarmHub", "SwarmSockets", "Tracker", "make_hub",
    "make_networks", "setup_swarm",
]

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


def make_networks(config: Config) -> tuple[Networks, AsnDatabase | None]:
    """The tracker's classifier from ``[p2p.networks]`` and ``p2p.asn_database``,
    and the database opened (to close at shutdown; None without one).

    Raises ``ConfigError`` naming ``p2p.asn_database`` when that file cannot be read.
    """
    database = None
    if config.p2p.asn_database:
        try:
            database = AsnDatabase(config.p2p.asn_database)
        except ValueError as exc:
            raise ConfigError(f"p2p.asn_database: {exc}") from None
    return Networks(config.p2p.networks, database.asn if database is not None else None), database


def make_hub(
    config: Config, tracker: Tracker, *, ice_servers: Callable[[str], IceServers],
    turn: Callable[[str], TurnGrant] | None = None,
) -> SwarmHub:
    """The hub's rules over ``tracker`` (a ``Tracker``, or a cluster node's ``ClusterTracker``).

    ``ice_servers``: what each ``welcome`` carries; ``turn``: the credentials a
    peer asking for a relay gets (None: no TURN). Both the NAT plan's, gateway/nat/.
    """
    return SwarmHub(
        tracker, new_id=lambda: secrets.token_urlsafe(16), ice_servers=ice_servers,
        min_listeners=config.p2p.min_listeners, turn=turn,
        upload=config.p2p.upload, upload_kbps=config.p2p.upload_kbps,
    )


def setup_swarm(app: web.Application, hub: SwarmHub, sockets: SwarmSockets) -> None:
    """Hang the tracker, the hub and the sockets (built by ``create_app``) on the app,
    route ``/v1/ws``, tick the hub, close the sockets at shutdown."""
    app[TRACKER] = hub.tracker
    app[HUB] = hub
    app[SOCKETS] = sockets
    app.router.add_get("/v1/ws", sockets.handle, allow_head=False)
    app.cleanup_ctx.append(_sweeper)
    app.on_shutdown.append(_on_shutdown)
