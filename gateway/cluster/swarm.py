"""One swarm across nodes: the federation around each node's hub.

Theory of operation
-------------------

Each node keeps its own ``SwarmHub`` (the rules: rates, strikes, relay
checks) and a ``ClusterTracker``; this shell, given to ``SwarmSockets``
as their ``Federation``, shares what must be shared through Redis (docs/cluster.md):

- **Holdings**: after a ``have``/``leave``/``slots`` the peer is marked
  dirty; a writer flushes dirty peers every ``FLUSH_SECONDS`` in one pipeline
  (HSET of its entry in each swarm's holders hash, with the node it is
  connected to: that is its placement). A closed peer's entries are deleted.
  Every ``REFRESH_SECONDS`` all entries are rewritten (their time refreshed,
  the hashes' TTL pushed back), and after Redis comes back.
- **Want**: just before the hub answers a ``want``, the swarm's holders hash
  is read (one HGETALL) and the holders on live nodes become shadows in the
  tracker; the hub then ranks everyone by the same rule.
- **Introductions and signals**: an introduction made with a shadow is told
  to the shadow's node, and a ``signal`` to a shadow is published, with the
  sender's real id, on that node's channel; one ordered queue publishes both,
  so the introduction arrives first. The receiving node records the
  introduction and hands the signal to its socket. The sending node checked
  it (introduced, budget) as for a local peer, so forged and unintroduced
  signals stop where they were sent.

When Redis is down nothing waits for it: a ``want`` is answered from this
node's own holders (per-node introductions), writes wait for the heal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from protocol.limits import IDLE_TIMEOUT
from protocol.messages import Have, Leave, PeerMessage, ServerMessage, SignalFrom, Slots, Want

from ..swarm.hub import Send
from ..swarm.networks import UNKNOWN_PLACE, Place
from ..swarm.socket import SwarmSockets
from . import keys
from .link import RedisLink
from .node import Directory
from .tracker import ClusterTracker, RemoteHolding

__all__ = ["SwarmFederation"]

log = logging.getLogger("ztream.cluster")

FLUSH_SECONDS = 0.02
REFRESH_SECONDS = 60.0
# A holders hash outlives its last write by this much (its entries carry their own time too).
HOLDERS_TTL = int(IDLE_TIMEOUT + 2 * REFRESH_SECONDS)
OUTBOX = 10_000
# How long a heal waits for this node's inbox subscription before it writes
# its holdings anyway (other nodes introduce to peers named there, and their
# signals arrive on that inbox).
SUBSCRIBE_WAIT_SECONDS = 10.0
MAX_GONE = 100_000
# A `want` reads at most this many holders of the swarm from Redis, drawn at
# random (HRANDFIELD): all of a swarm this size or smaller, a fair sample of a
# bigger one. Reading the whole hash made a want's cost grow with the swarm
# (1.3 s of Redis for 100,000 holders, docs/cluster.md, Capacity); the tracker
# offers at most MAX_CANDIDATES of them anyway.
HOLDERS_SAMPLE = 256


def _place(entry: dict[str, Any]) -> Place:
    """A holder's place from its Redis entry (``l``, ``w``); unknown when absent (an older node's) or odd."""
    lan, network = entry.get("l"), entry.get("w")
    if not isinstance(lan, str) or not 0 < len(lan) <= 64:
        return UNKNOWN_PLACE
    return Place(lan, network if isinstance(network, str) and 0 < len(network) <= 80 else None)


class SwarmFederation:
    def __init__(self, link: RedisLink, directory: Directory, tracker: ClusterTracker) -> None:
        self.link = link
        self.directory = directory
        self.tracker = tracker
        self.node_id = directory.node_id
        self._dirty: dict[str, None] = {}
        self._written: dict[str, set[tuple[str, str]]] = {}
        self._gone: dict[tuple[str, str, str], None] = {}  # (track, rendition, peer) to delete
        self._outbox: asyncio.Queue[tuple[str, str]] = asyncio.Queue(OUTBOX)
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._listening = asyncio.Event()
        self.relayed_in = 0
        self.relayed_out = 0

    # -- Federation (called by SwarmSockets) ----------------------------------

    async def before(self, peer: str, message: PeerMessage) -> None:
        if not isinstance(message, Want) or not self.link.up:
            return
        track, rendition = message.track, message.rendition
        flat = await self.link.call(lambda c: c.hrandfield(keys.holders(track, rendition), HOLDERS_SAMPLE, True))
        if flat is None:
            return
        wall = time.time()
        holdings: list[RemoteHolding] = []
        dead: list[str] = []
        for field, value in zip(flat[::2], flat[1::2], strict=True):
            holder = field.decode() if isinstance(field, bytes) else str(field)
            try:
                entry = json.loads(value)
                node = str(entry["n"])
                holding = RemoteHolding(
                    holder, node, tuple((int(a), int(b)) for a, b in entry["r"]), bool(entry["c"]),
                    int(entry["u"]), max(0.0, wall - float(entry["s"])), _place(entry),
                )
            except (ValueError, KeyError, TypeError):
                dead.append(holder)
                continue
            if node != self.node_id and not self.directory.alive(node):
                if node in self.directory.dead:
                    dead.append(holder)
                continue
            holdings.append(holding)
        self.tracker.adopt(track, rendition, holdings, asyncio.get_running_loop().time(), IDLE_TIMEOUT)
        if dead:
            # A dead node's holders are nobody's: whoever sees them first clears them.
            await self.link.call(lambda c: c.hdel(keys.holders(track, rendition), *dead))

    def after(self, peer: str, message: PeerMessage) -> None:
        if isinstance(message, Have | Leave | Slots):
            self._dirty[peer] = None
            self._wake.set()
        for node, theirs, ours in self.tracker.take_introductions():
            self._publish(node, {"t": "intro", "to": theirs, "from": ours, "node": self.node_id})

    def forward(self, peer: str, message: ServerMessage) -> None:
        node = self.tracker.node_of(peer)
        if node is None or not isinstance(message, SignalFrom):
            return
        self.relayed_out += 1
        self._publish(node, {"t": "signal", "to": peer, "from": message.sender, "node": self.node_id,
                             "data": message.data_json})

    def closed(self, peer: str) -> None:
        self._dirty.pop(peer, None)
        for track, rendition in self._written.pop(peer, ()):
            if len(self._gone) < MAX_GONE:
                self._gone[(track, rendition, peer)] = None
        self._wake.set()

    # -- publishing ---------------------------------------------------------

    def _publish(self, node: str, payload: dict[str, Any]) -> None:
        if not self.link.up:
            return
        try:
            self._outbox.put_nowait((keys.inbox(node), json.dumps(payload, separators=(",", ":"))))
        except asyncio.QueueFull:
            log.warning("cluster outbox full: dropping a message for node %s", node)

    async def _publisher(self) -> None:
        while True:
            batch = [await self._outbox.get()]
            while not self._outbox.empty() and len(batch) < 256:
                batch.append(self._outbox.get_nowait())
            if self.link.is_cluster:
                for channel, data in batch:
                    await self.link.publish(channel, data)
            else:
                async def go(client: Any, batch: list[tuple[str, str]] = batch) -> None:
                    pipe = client.pipeline(transaction=False)
                    for channel, data in batch:
                        pipe.publish(channel, data)
                    await pipe.execute()

                await self.link.call(go)

    # -- holdings -----------------------------------------------------------

    def _entry(self, peer: str, track: str, rendition: str, wall: float, mono: float) -> str | None:
        held = self.tracker.held(peer, track, rendition)
        if held is None:
            return None
        holding, complete = held
        in_use = self.tracker.upload_slots - self.tracker.free_slots(peer)
        seen = wall - (mono - self.tracker.last_seen(peer))
        entry: dict[str, Any] = {"n": self.node_id, "r": holding.ranges(), "c": complete, "u": in_use,
                                 "s": round(seen, 3)}
        place = self.tracker.place(peer)
        if place.lan is not None:
            # Its LAN (public address or /64) and network: nearness across nodes (docs/cluster.md).
            entry["l"] = place.lan
            if place.network is not None:
                entry["w"] = place.network
        return json.dumps(entry, separators=(",", ":"))

    async def flush(self) -> bool:
        """Write the dirty peers' holdings and delete the gone ones; False if Redis failed."""
        if not self._dirty and not self._gone:
            return True
        dirty = [p for p in self._dirty if p in self.tracker and not self.tracker.elsewhere(p)]
        gone = list(self._gone)
        wall, mono = time.time(), asyncio.get_running_loop().time()
        writes: list[tuple[str, str, str]] = []
        deletes: list[tuple[str, str]] = [(keys.holders(t, r), p) for t, r, p in gone]
        now_written: dict[str, set[tuple[str, str]]] = {}
        for peer in dirty:
            swarms = set(self.tracker.tracks(peer))
            now_written[peer] = swarms
            for track, rendition in swarms:
                entry = self._entry(peer, track, rendition, wall, mono)
                if entry is not None:
                    writes.append((keys.holders(track, rendition), peer, entry))
            for track, rendition in self._written.get(peer, set()) - swarms:
                deletes.append((keys.holders(track, rendition), peer))

        async def go(client: Any) -> bool:
            pipe = client.pipeline(transaction=False)
            for key, peer, entry in writes:
                pipe.hset(key, peer, entry)
                pipe.expire(key, HOLDERS_TTL)
            for key, peer in deletes:
                pipe.hdel(key, peer)
            await pipe.execute()
            return True

        if not await self.link.call(go):
            return False
        for peer in dirty:
            self._dirty.pop(peer, None)
            self._written[peer] = now_written[peer]
        for item in gone:
            self._gone.pop(item, None)
        return True

    async def _writer(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.link.up:
                await self.flush()
            await asyncio.sleep(FLUSH_SECONDS)

    async def resync(self) -> None:
        """Rewrite every local peer's holdings (after an outage, and now and then).

        Not before this node listens on its inbox again: a holder named in
        Redis gets introductions and signals from other nodes at once, and a
        Redis publish reaches only those subscribed at that moment.
        """
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._listening.wait(), SUBSCRIBE_WAIT_SECONDS)
        for peer in self.tracker.local_ids():
            self._dirty[peer] = None
        self._wake.set()

    async def _refresher(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            await self.resync()

    # -- receiving ------------------------------------------------------------

    def receive(self, raw: bytes | str, sockets: SwarmSockets) -> None:
        """Apply a message from another node; a signal goes to its peer's socket in ``sockets``."""
        try:
            msg = json.loads(raw)
            kind, to, sender, node = msg["t"], str(msg["to"]), str(msg["from"]), str(msg["node"])
        except (ValueError, KeyError, TypeError):
            log.warning("a malformed cluster message was dropped")
            return
        now = asyncio.get_running_loop().time()
        if kind == "intro":
            self.tracker.meet(to, sender, node, now)
        elif kind == "signal" and to in sockets.connections:
            # The sending node checked the introduction and the budget; this
            # side only makes sure its tracker knows the pair, so the answer passes.
            self.tracker.meet(to, sender, node, now)
            self.relayed_in += 1
            sockets.carry_out([Send(to, SignalFrom(sender, str(msg["data"])))], now)

    async def _subscriber(self, sockets: SwarmSockets) -> None:
        while True:
            if self.link.up:
                async for raw in self.link.subscribe(keys.inbox(self.node_id), self._listening.set):
                    self.receive(raw, sockets)
                self._listening.clear()
            await asyncio.sleep(0.2)

    # -- life -----------------------------------------------------------------

    def start(self, sockets: SwarmSockets) -> None:
        """Start sharing; what other nodes send this node's peers is carried out on ``sockets``.

        ``sockets`` are the ones this federation is the ``Federation`` of: the
        two are built apart (the sockets take the federation) and meet here.
        """
        self.link.on_heal.append(self.resync)
        self.link.on_down.append(self.tracker.drop_shadows)
        self.link.on_down.append(self._listening.clear)
        runs: tuple[tuple[str, Callable[[], Coroutine[Any, Any, None]]], ...] = (
            ("publisher", self._publisher), ("writer", self._writer), ("refresher", self._refresher),
            ("subscriber", lambda: self._subscriber(sockets)),
        )
        for name, run in runs:
            self._tasks.append(asyncio.create_task(run(), name=f"ztream-cluster-{name}"))

    async def stop(self) -> None:
        # What this node's peers held goes with it.
        for peer in list(self._written):
            self.closed(peer)
        with contextlib.suppress(Exception):
            await self.flush()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
