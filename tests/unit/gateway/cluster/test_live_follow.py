"""The live hook in a cluster, in one process: a fake owner node serving a real window over HTTP, a lock that
says who owns the station, and the follower's ingest copying the owner's window, then taking over."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.cluster.link import RedisLink
from gateway.cluster.live import LiveOwnership
from gateway.cluster.node import Directory
from gateway.errors import ZtreamError
from gateway.live.ingest import LiveIngest
from gateway.live.window import ORIGIN, LiveWindow
from gateway.media.catalog import Track
from gateway.metrics import Metrics

TRACK = Track(id="live0000000000bb", source="url", locator="http://radio.example/live.mp3", title="Radio", live=True)
NOW = ORIGIN + 10_000.0


class Owner:
    """The owning node's live routes over a window this test feeds; ``refuse`` answers every manifest so."""

    def __init__(self, start: float = NOW) -> None:
        self.window = LiveWindow(60.0)
        self.window.begin(start)
        self.window.add_init(b"init-segment")
        self.changed = asyncio.Event()
        self.refuse: tuple[int, str] | None = None
        self.hang = False  # a machine gone without a reset: requests get no answer
        self.app = web.Application()
        root = f"/v1/tracks/{TRACK.id}"
        self.app.router.add_get(f"{root}/manifest", self.manifest)
        self.app.router.add_get(f"{root}/init", self.init)
        self.app.router.add_get(f"{root}/chunks/{{n}}", self.chunk)

    def add(self, count: int = 1) -> None:
        for _ in range(count):
            n = len(self.window.chunks)
            self.window.add_chunk(start=float(n), duration=1.0, data=b"chunk %d" % n, wall=NOW + n)
        self.changed.set()
        self.changed = asyncio.Event()

    async def manifest(self, request: web.Request) -> web.Response:
        while self.hang:
            await asyncio.sleep(3600)
        if self.refuse is not None:
            status, code = self.refuse
            return web.json_response({"error": code, "detail": "refused"}, status=status)
        init = self.window.init()
        assert init is not None and request.query["rendition"] == "webm"
        return web.json_response({"chunks": self.window.entries(), "edge": self.window.edge, "state": "live",
                                  "title": "Now", "epoch": self.window.epoch, "init": init.entry()})

    async def init(self, request: web.Request) -> web.Response:
        found = self.window.init(int(request.query["epoch"]))
        assert found is not None
        return web.Response(body=found.data, headers={"ETag": f'"{found.sha256}"'})

    async def chunk(self, request: web.Request) -> web.Response:
        index = int(request.match_info["n"])
        deadline = time.monotonic() + 2
        while self.window.get(index) is None and time.monotonic() < deadline:
            try:
                await asyncio.wait_for(self.changed.wait(), deadline - time.monotonic())
            except TimeoutError:
                break
        while self.hang:
            await asyncio.sleep(3600)
        found = self.window.get(index)
        if found is None:
            return web.json_response({"error": "chunk_not_found", "detail": "no"}, status=404)
        return web.Response(body=found.data, headers={"ETag": f'"{found.sha256}"'})


class Lock:
    """What the lock script answers: another node's token until ``free``, then ours."""

    def __init__(self) -> None:
        self.free = False
        self.calls = 0

    async def eval(self, script: str, count: int, *args: Any) -> Any:
        self.calls += 1
        if "INCR" in script:
            return [b"mine", b"me:2"] if self.free else [b"owner", b"owner-node:1"]
        return 1 if self.free else 0  # renew, release: ours while free


class Link:
    def __init__(self, lock: Lock) -> None:
        self.lock = lock

    async def call(self, use: Any) -> Any:
        return await use(self.lock)


class Nodes:
    node_id = "me"

    def __init__(self, url: str) -> None:
        self.url = url

    def url_of(self, node: str) -> str | None:
        return self.url if node == "owner-node" else None


@pytest.fixture
async def owner() -> AsyncIterator[tuple[Owner, TestServer]]:
    fake = Owner()
    server = TestServer(fake.app, host="127.0.0.1")
    await server.start_server()
    yield fake, server
    await server.close()


def follower(url: str, lock: Lock, metrics: Metrics) -> tuple[LiveOwnership, LiveIngest]:
    hook = LiveOwnership(cast(RedisLink, Link(lock)), cast(Directory, Nodes(url)), metrics=metrics, chunk_wait=2.0)
    rendition = cast(Any, type("R", (), {"id": "r1", "name": "webm"})())
    ingest = LiveIngest(track=TRACK, source=cast(Any, None), rendition=rendition, window=LiveWindow(60.0),
                        reconnect_max=1.0)
    return hook, ingest


async def until(ready: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, "not in time"
        await asyncio.sleep(0.01)


async def test_a_follower_copies_the_owner_then_takes_over_past_its_edge(owner: tuple[Owner, TestServer]) -> None:
    fake, server = owner
    fake.add(5)
    lock, metrics = Lock(), Metrics()
    hook, ingest = follower(str(server.make_url("")).rstrip("/"), lock, metrics)
    ran: list[int] = []

    async def local() -> None:  # the follower's own ingest once it holds the lock
        first = ingest.window.begin(NOW + 100)
        ran.append(first)
        ingest.window.add_init(b"init-segment")
        ingest.window.add_chunk(start=0.0, duration=1.0, data=b"mine", wall=NOW + 100)
        ingest.relayed("live", None)
        await asyncio.sleep(3600)

    task = asyncio.create_task(hook.run(ingest, local))
    try:
        await until(lambda: ingest.window.edge == fake.window.edge)
        assert ingest.window.entries() == fake.window.entries()
        assert ingest.state == "live" and ingest.title == "Now" and ingest.window.init() == fake.window.init()
        assert metrics.live_following._value.get() == 1
        # A new chunk on the owner is on the follower at once (it waits on the owner for it).
        started = time.monotonic()
        fake.add()
        await until(lambda: ingest.window.edge == fake.window.edge)
        assert time.monotonic() - started < 0.5
        assert ingest.window.entries() == fake.window.entries()
        copied = ingest.window.edge
        assert copied is not None
        # The owner dies; the lock comes free; the follower ingests, its indices past what it copied.
        await server.close()
        await until(lambda: ingest.state == "reconnecting")
        lock.free = True
        await until(lambda: bool(ran))
        assert ran[0] > copied and ingest.window.edge == ran[0]
        assert hashlib.sha256(b"mine").hexdigest() == ingest.window.chunks[-1].sha256
        assert metrics.live_takeovers._value.get() == 1 and metrics.live_following._value.get() == 0
        assert not ingest.done
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await hook.close()
    assert ingest.done


async def test_the_owners_refusal_is_the_followers_error(owner: tuple[Owner, TestServer]) -> None:
    fake, server = owner
    fake.refuse = (415, "upstream_not_audio")
    lock, metrics = Lock(), Metrics()
    hook, ingest = follower(str(server.make_url("")).rstrip("/"), lock, metrics)
    try:
        await asyncio.wait_for(hook.run(ingest, lambda: asyncio.sleep(0)), 5)
    finally:
        await hook.close()
    assert isinstance(ingest.error, ZtreamError) and ingest.error.code == "upstream_not_audio"
    assert ingest.error.status == 415 and ingest.done


async def test_an_owner_that_lost_its_lock_follows_the_new_owner_past_its_own_edge() -> None:
    fake = Owner(start=NOW + 200)  # took the station after this node had begun: its indices are past ours
    server = TestServer(fake.app, host="127.0.0.1")
    await server.start_server()
    lock, metrics = Lock(), Metrics()
    lock.free = True
    hook, ingest = follower(str(server.make_url("")).rstrip("/"), lock, metrics)
    runs: list[int] = []

    async def local() -> None:
        runs.append(ingest.window.begin(NOW + 100))
        ingest.window.add_init(b"init-segment")
        ingest.window.add_chunk(start=0.0, duration=1.0, data=b"mine", wall=NOW + 100)
        ingest.relayed("live", None)
        await asyncio.sleep(3600)

    task = asyncio.create_task(hook.run(ingest, local))
    try:
        await until(lambda: bool(runs))
        mine = ingest.window.edge
        assert mine == runs[0] and metrics.live_following._value.get() == 0
        lock.free = False  # another node's token now: the renewal fails, the election names it
        fake.add(3)
        await until(lambda: ingest.window.edge == fake.window.edge)
        assert [c.index for c in ingest.window.chunks] == [mine] + [c.index for c in fake.window.chunks]
        assert not ingest.done and ingest.state == "live" and metrics.live_following._value.get() == 1
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await hook.close()
        await server.close()
    assert ingest.done


async def test_an_owner_that_stops_answering_is_left_within_the_chunk_wait(owner: tuple[Owner, TestServer]) -> None:
    fake, server = owner
    fake.add(3)
    lock, metrics = Lock(), Metrics()
    hook, ingest = follower(str(server.make_url("")).rstrip("/"), lock, metrics)
    task = asyncio.create_task(hook.run(ingest, lambda: asyncio.sleep(3600)))
    try:
        await until(lambda: ingest.window.edge == fake.window.edge)
        fake.hang = True
        started = time.monotonic()
        await until(lambda: ingest.state == "reconnecting", timeout=10)
        assert time.monotonic() - started < hook.chunk_wait + 1.5
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await hook.close()
