"""One transcode per track cluster-wide: a lock in Redis, and pulling from its holder.

Theory of operation
-------------------

``MediaService`` keeps its single flight per process; what a flight is made
from is asked of ``TrackOwnership.events`` (the service's ``events_hook``),
which yields the same events a local transcode does (gateway/media/events.py)
and writes nothing itself, from one of three places:

1. **This node transcodes** when it wins the track's lock: one ``EVAL`` sets
   ``ztream:{<track>}:owner:<rendition>`` to ``<node>:<token>`` with a TTL of
   ``LOCK_TTL``, the token drawn from the track's fencing counter. While the
   transcode runs the lock is renewed every ``RENEW_SECONDS`` (only if it
   still holds our token); at the end it is released, and the track's
   ``done`` key names this node for ``DONE_TTL``.
2. **Another node is transcoding it, or has it**: its chunks are pulled over
   HTTP from that node's ``node_url``: the manifest, the init segment, then
   chunk after chunk (each request on the owner waits for a live chunk, so
   this follows the running transcode), every piece checked against the
   owner's SHA-256; then, with extras, the owner's waveform and artwork, and
   its loudness with ``Finished`` (so the manifests are the same). The
   service stores what was pulled as if made here, so the next request is a
   local hit.
3. **Redis is down** (or the track is one the owner cannot know): this node
   transcodes alone, as a single node does.

A library track whose file this node does not have (``can_make``) never
takes the lock: it is pulled from the node making it, or, when none is, from
a live node whose library holds the file (the shared catalog's ``holders``);
asking that node for the manifest starts its transcode there.

An owner that dies mid-transcode stops renewing; its lock expires within
``LOCK_TTL``, and a puller whose connection broke elects again: one of them
wins the lock and transcodes from the start, the events it already has being
skipped (ffmpeg's output is the same bytes for the same input). The
listeners waiting on that flight see a pause, not an error.

The owner's own error answers (its upstream is bad, say) are this node's
``Failed`` too, with the owner's status and code; a node that went away is
no error, only a reason to elect again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from transcode.analysis import Loudness

from ..errors import NotFound, UpstreamTimeout, ZtreamError
from ..media.catalog import Track
from ..media.events import (
    ArtworkFound,
    Cluster,
    Event,
    Events,
    Failed,
    Finished,
    InitSegment,
    WaveformFound,
)
from ..media.extras import StoredArtwork
from . import keys
from .link import RedisLink
from .node import Directory

__all__ = ["TrackOwnership", "LOCK_TTL", "RENEW_SECONDS", "RENEW_LOCK"]

log = logging.getLogger("ztream.cluster")

LOCK_TTL = 6.0
RENEW_SECONDS = 2.0
DONE_TTL = 3600
RETRY_SECONDS = 0.5
# Rounds of "elect, then transcode or pull" before giving up (bounded: a
# cluster that cannot agree for this long answers an error, not a hang).
MAX_ROUNDS = 120
NODE_HEADER = "X-Ztream-Node"

# KEYS: owner, fence, done; ARGV: node, ttl ms, ignore done ("1"/"0"), may take the lock ("1"/"0").
_ACQUIRE = """
local d = redis.call('GET', KEYS[3])
if d and ARGV[3] == '0' and d ~= ARGV[1] then return {'done', d} end
local o = redis.call('GET', KEYS[1])
if o and string.sub(o, 1, #ARGV[1] + 1) ~= ARGV[1] .. ':' then return {'owner', o} end
if ARGV[4] == '0' then return {'none', ''} end
local t = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. t, 'PX', ARGV[2])
return {'mine', ARGV[1] .. ':' .. t}
"""
# KEYS: owner; ARGV: our value, ttl ms. The live stations' lock (live.py) renews with it too.
RENEW_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
# KEYS: owner, done; ARGV: our value, node, done ttl s, finished ("1"/"0").
_RELEASE = """
local mine = redis.call('GET', KEYS[1]) == ARGV[1]
if mine then redis.call('DEL', KEYS[1]) end
if mine and ARGV[4] == '1' then redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3]) end
return mine and 1 or 0
"""


# What a pull yields before its extras: the owner's init segment and clusters.
_Media = AsyncGenerator[InitSegment | Cluster, None]


class _PullFailed(Exception):
    """The node pulled from went away or answered a server error: elect again."""


@dataclass(frozen=True, slots=True)
class _Verdict:
    kind: str  # "mine" | "remote" | "alone" | "none" (nobody makes it, and this node may not)
    value: str = ""  # "mine": the lock's value; "remote": the node to pull from


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _node_of(value: str) -> str:
    return value.rsplit(":", 1)[0]


def _always(_track: Track) -> bool:
    return True


async def _nobody(_track_id: str) -> list[str]:
    return []


class TrackOwnership:
    def __init__(self, link: RedisLink, directory: Directory, rendition_id: str, *, wait_seconds: float,
                 extras: bool = False, can_make: Callable[[Track], bool] = _always,
                 holders: Callable[[str], Awaitable[list[str]]] = _nobody) -> None:
        self.can_make = can_make  # False: a library file this node does not have
        self.holders = holders  # the nodes whose library has a track's file
        self.extras = extras  # also pull the owner's waveform, artwork and loudness
        self.link = link
        self.directory = directory
        self.node_id = directory.node_id
        self.rendition_id = rendition_id
        self.wait_seconds = wait_seconds
        self._session: aiohttp.ClientSession | None = None
        self.pulls = 0
        self.locks = 0

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=None, connect=3, sock_read=self.wait_seconds + 10)
            # Node to node only: no proxy from the environment.
            self._session = aiohttp.ClientSession(timeout=timeout, trust_env=False)
        return self._session

    # -- the lock -------------------------------------------------------------

    async def _elect(self, track: Track, *, ignore_done: bool = False, acquire: bool = True) -> _Verdict:
        rid = self.rendition_id
        lock_keys = (keys.owner(track.id, rid), keys.fence(track.id, rid), keys.done(track.id, rid))
        args = (self.node_id, int(LOCK_TTL * 1000), "1" if ignore_done else "0", "1" if acquire else "0")
        result = await self.link.call(lambda c: c.eval(_ACQUIRE, 3, *lock_keys, *args))
        if result is None:
            return _Verdict("alone")
        kind, value = (v.decode() if isinstance(v, bytes) else str(v) for v in result)
        if kind == "mine":
            self.locks += 1
            return _Verdict("mine", value)
        if kind == "none":
            return _Verdict("none")
        node = value if kind == "done" else _node_of(value)
        if kind == "done" and not self.directory.alive(node):
            if ignore_done:
                return _Verdict("alone")
            return await self._elect(track, ignore_done=True, acquire=acquire)
        return _Verdict("remote", node)

    async def _holder(self, track: Track) -> str | None:
        """A live node, other than this one, whose library holds ``track``'s file (the same one for
        every asker, so that one node makes it)."""
        found = [n for n in await self.holders(track.id) if n != self.node_id and self.directory.alive(n)]
        if not found:
            return None
        return found[int(hashlib.sha256(track.id.encode()).hexdigest(), 16) % len(found)]

    async def _renew(self, track: Track, value: str) -> None:
        key = keys.owner(track.id, self.rendition_id)
        while True:
            await asyncio.sleep(RENEW_SECONDS)
            held = await self.link.call(lambda c: c.eval(RENEW_LOCK, 1, key, value, int(LOCK_TTL * 1000)))
            if held == 0:
                # Our token is no longer the lock's: another node took over (we
                # were too slow, or Redis lost it). The bytes are the same either
                # way; only the done marker is left to the new owner.
                log.warning("lost the transcode lock of %s (token %s)", track.id, value)
                return

    async def _release(self, track: Track, value: str, finished: bool) -> None:
        rid = self.rendition_id
        release_keys = (keys.owner(track.id, rid), keys.done(track.id, rid))
        args = (value, self.node_id, DONE_TTL, "1" if finished else "0")
        await self.link.call(lambda c: c.eval(_RELEASE, 2, *release_keys, *args))

    # -- the hook -------------------------------------------------------------

    async def events(self, track: Track, local: Callable[[], Events]) -> Events:
        """The track's events, from whichever node makes them (see the module docstring)."""
        try:
            async with contextlib.aclosing(self._events(track, local)) as made:
                async for event in made:
                    yield event
        except ZtreamError as exc:  # the owner's own answer, or no node in time
            yield Failed(exc)

    async def _events(self, track: Track, local: Callable[[], Events]) -> Events:
        have_init = False
        next_index = 0
        for _round in range(MAX_ROUNDS):
            here = self.can_make(track)
            verdict = await self._elect(track, acquire=here)
            if verdict.kind == "none":
                holder = await self._holder(track)
                if holder is None:
                    raise NotFound("no live node of the cluster has this library file", code="upstream_not_found")
                verdict = _Verdict("remote", holder)
            elif verdict.kind == "alone" and not here:
                raise UpstreamTimeout("this library file is on another node, and Redis is down",
                                      code="cluster_unavailable")
            if verdict.kind == "remote":
                base = self.directory.url_of(verdict.value)
                if base is None:
                    await asyncio.sleep(RETRY_SECONDS)
                    continue
                try:
                    async with contextlib.aclosing(self._pull(base, track, have_init, next_index)) as pulled:
                        async for piece in pulled:
                            if isinstance(piece, InitSegment):
                                have_init = True
                            else:
                                next_index = piece.index + 1
                            yield piece
                    ending = await self._pull_extras(base, track)
                except _PullFailed as exc:
                    log.info("pulling %s from node %s failed (%s); electing again", track.id, verdict.value, exc)
                    await asyncio.sleep(RETRY_SECONDS)
                    continue
                for found in ending:
                    yield found
                return
            renewer = (
                asyncio.create_task(self._renew(track, verdict.value), name=f"ztream-lock-{track.id}")
                if verdict.kind == "mine" else None
            )
            finished = False
            try:
                async with contextlib.aclosing(local()) as made:
                    async for event in made:
                        if isinstance(event, InitSegment):
                            if have_init:
                                continue
                            have_init = True
                        elif isinstance(event, Cluster):
                            if event.index < next_index:
                                continue  # pulled already, from the node that died
                            next_index = event.index + 1
                        yield event
                        # Only once the service took it: a Finished it refused (no audio) is no success.
                        finished = isinstance(event, Finished)
            finally:
                if renewer is not None:
                    renewer.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await renewer
                    await asyncio.shield(self._release(track, verdict.value, finished))
            return
        raise UpstreamTimeout("no node of the cluster could make this track in time", code="cluster_unavailable")

    # -- pulling --------------------------------------------------------------

    async def _pull_extras(self, base: str, track: Track) -> list[Event]:
        """What the owner's transcode measured besides the chunks, ending with ``Finished``: its
        waveform and its artwork, and its loudness (so this node's manifest is the owner's)."""
        if not self.extras:
            return [Finished()]
        found: list[Event] = []
        root = f"{base}/v1/tracks/{track.id}"
        manifest = await self._manifest(base, track)
        loudness = None
        lufs = manifest.get("loudness_lufs")
        if isinstance(lufs, int | float):
            peak = manifest.get("true_peak_db")
            loudness = Loudness(float(lufs), float(peak) if isinstance(peak, int | float) else None)
        status, body, _ = await self._get(f"{root}/waveform")
        if status == 200:
            waveform = json.loads(body)
            if isinstance(waveform, dict) and waveform.get("complete") is True:
                found.append(WaveformFound(waveform))
        status, info, _ = await self._get(root)
        status_art, jpeg, etag = await self._get(f"{root}/artwork")
        if status == 200 and status_art == 200:
            described = json.loads(info)
            width, height = described.get("artwork_width"), described.get("artwork_height")
            if isinstance(width, int) and isinstance(height, int):
                placeholder = etag.startswith("placeholder-")
                found.append(ArtworkFound(StoredArtwork(None if placeholder else jpeg, width, height)))
        found.append(Finished(loudness))
        return found

    async def _get(self, url: str) -> tuple[int, bytes, str]:
        try:
            async with self._http().get(url, headers={NODE_HEADER: self.node_id}) as response:
                body = await response.read()
                return response.status, body, response.headers.get("ETag", "").strip('"')
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise _PullFailed(f"{type(exc).__name__}: {exc}") from None

    @staticmethod
    def _refused(status: int, body: bytes) -> ZtreamError:
        """The owner's own error (its upstream is bad, say): the same answer here."""
        try:
            data: Any = json.loads(body)
            code, detail = str(data["error"]), str(data["detail"])
        except (ValueError, KeyError, TypeError):
            code, detail = "upstream_failed", f"the owning node answered {status}"
        error = ZtreamError(detail, code=code)
        error.status = status
        return error

    async def _manifest(self, base: str, track: Track) -> dict[str, Any]:
        url = f"{base}/v1/tracks/{track.id}/manifest"
        status, body, _ = await self._get(url)
        if status == 404 and b"track_not_found" in body and track.source == "url":
            # The owner has not seen this URL yet: register it there, as a listener would.
            try:
                async with self._http().post(f"{base}/v1/tracks", json={"url": track.locator}) as response:
                    await response.read()
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                raise _PullFailed(str(exc)) from None
            status, body, _ = await self._get(url)
        if status >= 500:
            raise _PullFailed(f"manifest answered {status}")
        if status != 200:
            raise self._refused(status, body)
        manifest: dict[str, Any] = json.loads(body)
        return manifest

    async def _pull(self, base: str, track: Track, have_init: bool, next_index: int) -> _Media:
        self.pulls += 1
        root = f"{base}/v1/tracks/{track.id}"
        manifest = await self._manifest(base, track)
        if not have_init:
            status, data, etag = await self._get(f"{root}/init")
            if status >= 500:
                raise _PullFailed(f"init answered {status}")
            if status != 200:
                raise self._refused(status, data)
            if _sha256(data) != etag:
                raise _PullFailed("the init segment does not match its hash")
            yield InitSegment(data)
        index = next_index
        while True:
            status, data, etag = await self._get(f"{root}/chunks/{index}")
            if status == 404 and b"chunk_not_found" in data:
                manifest = await self._manifest(base, track)
                if manifest["complete"] and len(manifest["chunks"]) <= index:
                    return
                raise _PullFailed(f"chunk {index} is not there yet")
            if status >= 500:
                raise _PullFailed(f"chunk {index} answered {status}")
            if status != 200:
                raise self._refused(status, data)
            if index >= len(manifest["chunks"]):
                manifest = await self._manifest(base, track)
                if index >= len(manifest["chunks"]):
                    raise _PullFailed(f"chunk {index} is not in the manifest")
            meta = manifest["chunks"][index]
            if _sha256(data) != meta["sha256"]:
                raise _PullFailed(f"chunk {index} does not match its hash")
            yield Cluster(index=index, start=float(meta["start"]), duration=float(meta["duration"]), data=data)
            index += 1
