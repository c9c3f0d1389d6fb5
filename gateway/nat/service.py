"""The gateway's NAT traversal, wired: the STUN responder on UDP and the
``ice_servers`` each peer gets in its ``welcome`` (docs/p2p.md).

``IcePlan`` decides what a peer is told, and is pure but for the wall clock
it reads for TURN expiry:

- ``p2p.ice_servers`` set: exactly those (an operator's own STUN/TURN);
  otherwise the built-in responder, ``stun:<public_url host>:<port>``, once
  it is listening (a port that could not be bound is not advertised);
- ``[p2p.turn]`` set: one more entry, the TURN URLs with credentials minted
  for this peer (``turn_credentials``; coturn's ``use-auth-secret``).

``setup_nat(app, config, metrics)`` hangs the plan on the app (``NAT``) and
starts and stops the responder with the app.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from ..config import Config
from ..metrics import Metrics
from .stun import RESULTS
from .turn import turn_credentials
from .udp import start_stun

__all__ = ["NAT", "IcePlan", "setup_nat", "stun_port"]

log = logging.getLogger("ztream.nat")


def stun_port(config: Config) -> int:
    """The UDP port the responder binds: ``p2p.stun_port``, -1 meaning the HTTP port's number; 0 is off."""
    port = config.p2p.stun_port
    return config.server.port if port == -1 else port


def _url_host(public_url: str) -> str:
    host = urlsplit(public_url).hostname or "127.0.0.1"
    return f"[{host}]" if ":" in host else host


class IcePlan:
    """What ``welcome.ice_servers`` holds for each peer."""

    def __init__(self, config: Config, *, wall: Callable[[], float] = time.time) -> None:
        self.config = config
        self.wall = wall
        # Set by the shell once the responder listens (its port may be 0 = any, in tests).
        self.stun_url: str | None = None

    def stun_listening(self, port: int) -> None:
        self.stun_url = f"stun:{_url_host(self.config.public_url)}:{port}"

    def for_peer(self, peer_id: str) -> tuple[dict[str, Any], ...]:
        p2p = self.config.p2p
        servers: list[dict[str, Any]] = [dict(s) for s in p2p.ice_servers]
        if not servers and self.stun_url is not None:
            servers.append({"urls": [self.stun_url]})
        if p2p.turn.urls:
            servers.append(dict(turn_credentials(
                list(p2p.turn.urls), p2p.turn.secret, peer_id, now=self.wall(), ttl_seconds=p2p.turn.ttl_seconds,
            )))
        return tuple(servers)


NAT = web.AppKey("nat", IcePlan)


def setup_nat(app: web.Application, config: Config, metrics: Metrics) -> IcePlan:
    """The plan on ``app[NAT]``; the STUN responder runs while the app does."""
    plan = IcePlan(config)
    app[NAT] = plan
    counts = {result: metrics.stun_requests.labels(result) for result in RESULTS}

    async def responder(app: web.Application) -> AsyncIterator[None]:
        port = stun_port(config)
        transport = None
        if port:
            try:
                transport = await start_stun(config.server.host, port, lambda result: counts[result].inc())
            except OSError as exc:
                # The gateway still serves; listeners behind NAT get no peers (docs/p2p.md).
                log.warning("STUN responder not started on udp %s:%s: %s (set p2p.stun_port to a free UDP "
                            "port, or 0 to turn it off)", config.server.host, port, exc)
            else:
                bound = transport.get_extra_info("sockname")[1]
                plan.stun_listening(bound)
                log.info("STUN responder on udp %s:%s, advertised as %s", config.server.host, bound, plan.stun_url)
        try:
            yield
        finally:
            plan.stun_url = None
            if transport is not None:
                transport.close()

    app.cleanup_ctx.append(responder)
    return plan
