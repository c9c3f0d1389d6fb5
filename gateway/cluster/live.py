"""One ingest per live station cluster-wide: a fenced lock in Redis, and the other nodes copying the owner's edge.

Theory of operation
-------------------

``LiveService`` keeps its single flight per process; how a station's ingest
runs is asked of ``LiveOwnership.run`` (the service's ``ingest_hook``),
which feeds the ingest's window (gateway/live/window.py) from one of three
places:

1. **This node ingests** when it wins the station's lock: one ``EVAL`` sets
   ``ztream:{<track>}:live-owner:<rendition>`` to ``<node>:<token>`` with a
   TTL of ``LOCK_TTL``, the token drawn from the station's fencing counter.
   While the ingest runs, the lock is renewed every ``RENEW_SECONDS`` (only
   if it still holds our token). A renewal that finds another node's token
   (this node was cut off longer than the TTL) ends the local ingest, and
   the station follows the new owner (2), past the newest index it has. At
   the end (no listener here any more, an admin purge, a gave-up
   upstream) the lock is released.
2. **Another node holds it**: the owner's window is copied over HTTP from
   its ``node_url``: its manifest, each chunk past this window's newest
   index (checked against the owner's SHA-256) and each epoch's init
   segment, kept with the owner's index, epoch, ``start`` and ``wall``, so a
   listener sees the same manifest and bytes on every node. Then a request
   for the chunk after the owner's edge, which the owner holds until that
   chunk is made (docs/live.md): a new chunk reaches this node one loopback
   round trip after the owner has it, plus the manifest's. The follower's
   requests are touches on the owner: the owner's ingest lives as long as
   any node has listeners. The owner's state and title are relayed.
3. **Redis is down**: this node ingests alone, as a single node does, and
   tries the lock every ``RENEW_SECONDS``: once Redis answers it holds the
   lock, or, if another node took it meanwhile, it follows that node (as in 1).

**The owner dies**: a follower's request fails (refused, reset, a server
error or a timeout); its state turns ``reconnecting`` and it elects again
every ``RETRY_SECONDS``. The dead owner's lock expires within ``LOCK_TTL``;
one follower wins it and ingests from the upstream into the window it was
copying: the session's first index is past the copied edge
(``LiveWindow.begin``), so indices keep growing for its listeners, and the
other followers copy from it, past what they have.

An owner's own refusal (a 4xx: the upstream is not audio, say) is this
station's error here too.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from ..errors import ZtreamError
from ..live.ingest import LiveIngest
from ..live.window import LiveChunk, LiveInit
from ..media.types import LiveState
from ..metrics import Metrics
from . import keys
from .link import RedisLink
from .media import RENEW_LOCK
from .node import Directory

__all__ = ["LiveOwnership", "LOCK_TTL", "RENEW_SECONDS", "RETRY_SECONDS"]

log = logging.getLogger("ztream.cluster")

# Shorter than a transcode's: a dead owner's listeners elsewhere hear nothing new until it expires.
LOCK_TTL = 3.0
RENEW_SECONDS = 1.0
RETRY_SECONDS = 0.5
# A manifest answers at once once the owner has a chunk (before, it waits up to 15 s for the first).
MANIFEST_SECONDS = 5.0
FIRST_MANIFEST_SECONDS = 20.0
NODE_HEADER = "X-Ztream-Node"
_STATES: tuple[LiveState, ...] = ("starting", "live", "reconnecting")

# KEYS: owner, fence; ARGV: node, ttl ms.
_ACQUIRE = """
local o = redis.call('GET', KEYS[1])
if o and string.sub(o, 1, #ARGV[1] + 1) ~= ARGV[1] .. ':' then return {'owner', o} end
local t = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. t, 'PX', ARGV[2])
return {'mine', ARGV[1] .. ':' .. t}
"""
# KEYS: owner; ARGV: our value.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class _OwnerGone(Exception):
    """The owner went away or answered a server error: elect again."""


@dataclass(frozen=True, slots=True)
class _Verdict:
    kind: str  # "mine" | "remote" | "alone"
    value: str = ""  # "mine": the lock's value; "remote": the owner's node id


@dataclass
class _Hold:
    value: str | None  # the lock's value while this node holds it; None: alone (Redis down)


def _renewal(owner: str, value: str) -> Callable[[Any], Awaitable[Any]]:
    async def renew(client: Any) -> Any:
        return await client.eval(RENEW_LOCK, 1, owner, value, int(LOCK_TTL * 1000))

    return renew


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class LiveOwnership:
    """The live service's ``ingest_hook`` in a cluster (see the module docstring)."""

    def __init__(self, link: RedisLink, directory: Directory, *, metrics: Metrics, chunk_wait: float) -> None:
        """``chunk_wait``: how long the owner holds a request for the chunk after its edge (docs/live.md)."""
        self.link = link
        self.directory = directory
        self.node_id = directory.node_id
        self.metrics = metrics
        self.chunk_wait = chunk_wait
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            # Node to node only: no proxy from the environment.
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, connect=3),
                                                  trust_env=False)
        return self._session

    # -- the lock -------------------------------------------------------------

    def _keys(self, ingest: LiveIngest) -> tuple[str, str]:
        track, rid = ingest.track.id, ingest.rendition.id
        return keys.live_owner(track, rid), keys.live_fence(track, rid)

    async def _elect(self, ingest: LiveIngest) -> _Verdict:
        result = await self.link.call(lambda c: c.eval(_ACQUIRE, 2, *self._keys(ingest), self.node_id,
                                                       int(LOCK_TTL * 1000)))
        if result is None:
            return _Verdict("alone")
        kind, value = (v.decode() if isinstance(v, bytes) else str(v) for v in result)
        if kind == "mine":
            return _Verdict("mine", value)
        return _Verdict("remote", value.rsplit(":", 1)[0])

    async def _keep(self, ingest: LiveIngest, hold: _Hold) -> None:
        """Renew the lock (or take it, once Redis answers again); return when another node holds it."""
        owner = self._keys(ingest)[0]
        while True:
            await asyncio.sleep(RENEW_SECONDS)
            value = hold.value
            if value is not None:
                held = await self.link.call(_renewal(owner, value))
                if held is None or held == 1:
                    continue  # renewed, or Redis is down: go on alone
            verdict = await self._elect(ingest)  # not ours any more (or never was): take it if it is free
            if verdict.kind == "mine":
                hold.value = verdict.value
            elif verdict.kind == "remote":
                log.warning("live %s: node %s holds the station's lock; the ingest here stops",
                            ingest.track.id, verdict.value)
                return

    async def _release(self, ingest: LiveIngest, value: str) -> None:
        await self.link.call(lambda c: c.eval(_RELEASE, 1, self._keys(ingest)[0], value))

    # -- the hook -------------------------------------------------------------

    async def run(self, ingest: LiveIngest, local: Callable[[], Awaitable[None]]) -> None:
        """Run ``ingest``: ``local()`` on the station's owner, a copy of the owner's window elsewhere."""
        followed = False
        try:
            while True:
                verdict = await self._elect(ingest)
                if verdict.kind == "remote":
                    followed = True
                    if not await self._follow_once(verdict.value, ingest):
                        return  # the owner refused the station: its error is the ingest's
                    continue
                if followed:
                    self.metrics.live_takeovers.inc()
                    log.info("live %s: took over the station's ingest", ingest.track.id)
                if not await self._local(ingest, local, _Hold(verdict.value if verdict.kind == "mine" else None)):
                    return
                # Another node holds the lock now: its window is copied into this one, past what it has.
                ingest.done = False
                ingest.relayed("reconnecting", ingest.title)
                followed = True
        finally:
            ingest.done = True
            ingest.notify()

    async def _local(self, ingest: LiveIngest, local: Callable[[], Awaitable[None]], hold: _Hold) -> bool:
        """Run the local ingest while this node holds the lock; True if another node took it meanwhile."""
        async def ingesting() -> None:
            await local()

        run = asyncio.create_task(ingesting(), name=f"live {ingest.track.id}")
        keeper = asyncio.create_task(self._keep(ingest, hold), name=f"ztream-live-lock-{ingest.track.id}")
        try:
            await asyncio.wait({run, keeper}, return_when=asyncio.FIRST_COMPLETED)
            lost = not run.done()
        finally:
            for task in (run, keeper):
                task.cancel()
            for task in (run, keeper):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if hold.value is not None:
                await asyncio.shield(self._release(ingest, hold.value))
        return lost

    async def _follow_once(self, node: str, ingest: LiveIngest) -> bool:
        """Copy ``node``'s window until it goes away (True: elect again) or refuses the station (False)."""
        base = self.directory.url_of(node)
        if base is not None:
            self.metrics.live_following.inc()
            try:
                await self._follow(base, ingest)
            except _OwnerGone as exc:
                log.info("live %s: following node %s failed (%s); electing again", ingest.track.id, node, exc)
            except ZtreamError as exc:
                ingest.error = exc
                return False
            finally:
                self.metrics.live_following.dec()
        if ingest.produced:
            ingest.relayed("reconnecting", ingest.title)
        await asyncio.sleep(RETRY_SECONDS)
        return True

    # -- following ------------------------------------------------------------

    async def _get(self, url: str, rendition: str, timeout: float, **query: str) -> tuple[int, bytes, str]:
        try:
            async with self._http().get(url, params={"rendition": rendition, **query},
                                        headers={NODE_HEADER: self.node_id},
                                        timeout=aiohttp.ClientTimeout(total=timeout, connect=3)) as response:
                body = await response.read()
                return response.status, body, response.headers.get("ETag", "").strip('"')
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise _OwnerGone(f"{type(exc).__name__}: {exc}") from None

    @staticmethod
    def _refused(status: int, body: bytes) -> Exception:
        """A 4xx is the owner's own answer about the station (the same here); anything else: elect again."""
        if status >= 500 or status in (404, 408, 429):
            return _OwnerGone(f"the owner answered {status}")
        try:
            data: Any = json.loads(body)
            error = ZtreamError(str(data["detail"]), code=str(data["error"]))
        except (ValueError, KeyError, TypeError):
            error = ZtreamError(f"the owning node answered {status}", code="upstream_failed")
        error.status = status
        return error

    async def _follow(self, base: str, ingest: LiveIngest) -> None:
        track, name, window = ingest.track, ingest.rendition.name, ingest.window
        root = f"{base}/v1/tracks/{track.id}"
        early: dict[int, bytes] = {}  # the chunk the last wait brought
        while True:
            wait = MANIFEST_SECONDS if window.edge is not None else FIRST_MANIFEST_SECONDS
            # Only what is past this window (a node that knows ``after`` lists no more; one that does not, all).
            since = {"after": str(window.last_edge)} if window.last_edge is not None else {}
            status, body, _ = await self._get(f"{root}/manifest", name, wait, **since)
            if status != 200:
                raise self._refused(status, body)
            manifest: dict[str, Any] = json.loads(body)
            for entry in manifest["chunks"]:
                index = int(entry["index"])
                if window.last_edge is not None and index <= window.last_edge:
                    continue
                data = early.pop(index, None)
                if data is None:
                    status, data, _ = await self._get(f"{root}/chunks/{index}", name, MANIFEST_SECONDS)
                    if status == 410:
                        continue  # left the owner's window meanwhile
                    if status != 200:
                        raise self._refused(status, data)
                if _sha256(data) != entry["sha256"]:
                    raise _OwnerGone(f"chunk {index} does not match its hash")
                epoch = int(entry["epoch"])
                init = window.init(epoch) or await self._init(root, name, epoch)
                window.add_copy(LiveChunk(index, float(entry["start"]), float(entry["duration"]), data,
                                          entry["sha256"], float(entry["wall"]), epoch), init)
            early.clear()
            # Told once the whole batch is in: a first manifest here lists the owner's window, not its oldest chunk.
            state = manifest.get("state")
            title = manifest.get("title")
            ingest.relayed(state if state in _STATES else "live", title if isinstance(title, str) else None)
            edge = manifest.get("edge")
            if not isinstance(edge, int):
                await asyncio.sleep(RETRY_SECONDS)
                continue
            # The owner answers this one as soon as it has made it (or 404 after chunk_wait).
            # Bounded just past the owner's own bound: an owner whose machine vanished (no reset) is left
            # within about a second of its answer's deadline.
            status, data, _ = await self._get(f"{root}/chunks/{edge + 1}", name, self.chunk_wait + 1)
            if status == 200:
                early[edge + 1] = data
            elif status >= 500:
                raise _OwnerGone(f"chunk {edge + 1} answered {status}")

    async def _init(self, root: str, name: str, epoch: int) -> LiveInit:
        status, data, etag = await self._get(f"{root}/init", name, MANIFEST_SECONDS, epoch=str(epoch))
        if status != 200:
            raise self._refused(status, data) if status != 410 else _OwnerGone(f"epoch {epoch} is gone")
        sha = _sha256(data)
        if sha != etag:
            raise _OwnerGone(f"the init segment of epoch {epoch} does not match its hash")
        return LiveInit(epoch, data, sha)
