"""Peer-to-peer between real Chromium pages over WebRTC, as real listeners are.

Every listener sits behind its own NAT router (``tests.nat.NatTopology``:
iptables MASQUERADE, unsolicited packets from the WAN side dropped), the
gateway on the "public" namespace at 198.18.0.1 with its shipped defaults:
its built-in STUN responder on the HTTP port's number is the only ICE
server. No page is granted microphone or camera (real listeners never are),
so Chromium hides host candidates behind mDNS names and only
server-reflexive (or relayed) candidates can connect (docs/p2p.md). The
gateway is plain http on a non-loopback address, so Chromium is told to treat
that origin as secure (WebCrypto needs it).

One Chromium per listener namespace (Playwright drives it over its pipe from
outside, ``tests.netns``); each listener is a page in its own browser context
(its own IndexedDB), on a test page served at the gateway's own origin
through ``page.route``, which loads ``<ztream-player>`` from the gateway's
``/client/`` and records:

- ``window.appended``: the SHA-256 of every buffer appended to the
  SourceBuffer (init segment and chunks), to compare with the manifest;
- ``window.chunks``: the player's ``chunk`` events (index, source, bytes);
- ``window.bad``: its ``badchunk`` events.

Playback runs at real time on the 20 s tracks of the ``audio_dir`` library
(2 s chunks: the first 10 s come from the server, the rest may come from peers).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.browser import CHROMIUM_ARGS, ErrorLog, require_chromium, until
from tests.nat import PUBLIC_ADDRESS, TOPOLOGIES, Coturn, NatTopology, Topology
from tests.netns import NamespacedGateway, require_netns

pytestmark = [pytest.mark.timeout(120)]

PORT = 8000
PUBLIC_URL = f"http://{PUBLIC_ADDRESS}:{PORT}"
# No --allow-loopback-in-peer-connection and no permissions: what a listener's browser does.
NAT_ARGS = [
    f"--unsafely-treat-insecure-origin-as-secure={PUBLIC_URL}",
    f"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE {PUBLIC_ADDRESS}",
]

from playwright.async_api import async_playwright

SERVER_LEAD = 10.0  # seconds from the server after a start (scheduler.serverLead)
PAGE_PATH = "/__test/listener.html"

RECORDER = """
window.appended = [];
window.chunks = [];
window.bad = [];
window.finished = false;
const hex = (b) => [...new Uint8Array(b)].map((x) => x.toString(16).padStart(2, "0")).join("");
const append = SourceBuffer.prototype.appendBuffer;
SourceBuffer.prototype.appendBuffer = function (data) {
  const bytes = data instanceof ArrayBuffer ? data.slice(0) : data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength);
  const entry = { size: bytes.byteLength, sha256: null };
  window.appended.push(entry);
  crypto.subtle.digest("SHA-256", bytes).then((h) => { entry.sha256 = hex(h); });
  return append.call(this, data);
};
document.addEventListener("chunk", (e) => window.chunks.push(e.detail), true);
document.addEventListener("badchunk", (e) => window.bad.push(e.detail), true);
document.addEventListener("finish", () => { window.finished = true; }, true);
"""


# A seeder that crawls: every PIECE it sends is lost (requests, HAVEs and CHOKEs still go).
CRAWL = """
const send = RTCDataChannel.prototype.send;
RTCDataChannel.prototype.send = function (data) {
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
  if (bytes[1] === 3) return;
  return send.call(this, data);
};
"""


def listener_page(track_url: str, attrs: str = "", script: str = "", then: Sequence[str] = ()) -> str:
    """The test page; ``then``: track URLs after ``track_url`` (a playlist of <ztream-track>s)."""
    playlist = "".join(f'<ztream-track src="{url}"></ztream-track>' for url in [track_url, *then]) if then else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>listener</title>
<script>{RECORDER}{script}</script>
<script type="module" src="/client/ztream-player.js"></script>
</head><body>
<ztream-player id="p" src="{track_url}" peer-stats {attrs}>{playlist}</ztream-player>
</body></html>"""


class World:
    """A NAT topology (``kind``: tests.nat.TOPOLOGIES) with the gateway on its public namespace."""

    def __init__(self, tmp_path: Path, audio_dir: Path, *, count: int = 2, nat: Any = "eim",
                 kind: Topology = "bridge", **overrides: Any) -> None:
        require_netns()
        self.topology = NatTopology(count, nat, kind)
        self.homes = [listener.ns for listener in self.topology.listeners]
        try:
            server = {"host": self.topology.gateway_host, "public_url": PUBLIC_URL}
            self.gw = NamespacedGateway(self.topology.public, tmp_path, audio_dir, port=PORT,
                                        server=server, **overrides)
            self.gw.url = PUBLIC_URL
            self.gw.start()
        except BaseException:
            self.topology.close()
            raise

    @property
    def chromium_args(self) -> list[str]:
        """Chromium flags for a listener of this world (tests/test_cluster_browser.py has several origins)."""
        return NAT_ARGS

    def close(self) -> None:
        try:
            self.gw.stop()
        finally:
            self.topology.close()


@pytest.fixture
def world(request: pytest.FixtureRequest, tmp_path: Path, audio_dir: Path) -> Iterator[World]:
    """The bridge topology, or the one a test names (``indirect`` parametrisation)."""
    w = World(tmp_path, audio_dir, kind=getattr(request, "param", "bridge"))
    try:
        yield w
    finally:
        w.close()


def tone_track(gw: NamespacedGateway) -> dict[str, Any]:
    tracks = json.loads(gw.get("/v1/tracks"))["tracks"]
    track: dict[str, Any] = next(t for t in tracks if t["title"].startswith("tone"))
    return track


def manifest(gw: NamespacedGateway, track_id: str) -> dict[str, Any]:
    """The complete manifest (a fresh gateway transcodes on the first request)."""
    for _ in range(100):
        m: dict[str, Any] = json.loads(gw.get(f"/v1/tracks/{track_id}/manifest"))
        if m["complete"]:
            return m
        time.sleep(0.1)
    raise AssertionError("the transcode did not complete")


def server_bytes(gw: NamespacedGateway) -> float:
    return sum(v for k, v in gw.metrics().items() if k.startswith("ztream_server_bytes_total"))


def metric(gw: NamespacedGateway, name: str) -> float:
    return gw.metrics().get(name, 0.0)


class Browser:
    """One Chromium per listener namespace (behind its own NAT); one context (profile) per listener."""

    def __init__(self, pw: Any, world: World, tmp_path: Path, log: ErrorLog) -> None:
        self.pw = pw
        self.world = world
        self.gw = world.gw
        self.tmp_path = tmp_path
        self.log = log
        self.browsers: dict[int, Any] = {}

    async def __aenter__(self) -> Browser:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for browser in self.browsers.values():
            await browser.close()

    async def at(self, home: int) -> Any:
        if home not in self.browsers:
            wrapper = self.world.homes[home].chromium_wrapper(self.tmp_path, require_chromium())
            self.browsers[home] = await self.pw.chromium.launch(
                executable_path=wrapper, headless=True, args=[*CHROMIUM_ARGS, *self.world.chromium_args]
            )
        return self.browsers[home]

    async def listener(self, track_id: str, attrs: str = "", script: str = "", home: int = 0,
                       gw: NamespacedGateway | None = None, then: Sequence[str] = ()) -> Any:
        # No microphone/camera: host candidates stay hidden behind mDNS names.
        # local-network-access (not a media permission): the test page is
        # fulfilled by Playwright, so Chromium cannot place it and would refuse
        # its WebSocket to the gateway (ERR_BLOCKED_BY_LOCAL_NETWORK_ACCESS_CHECKS).
        # ``gw``: the gateway whose origin the page is on (default the world's one).
        # ``then``: track ids to play after ``track_id`` (a playlist).
        url = (gw or self.gw).url
        browser = await self.at(home)
        context = await browser.new_context(permissions=["local-network-access"])
        html = listener_page(f"{url}/v1/tracks/{track_id}", attrs, script, [f"{url}/v1/tracks/{t}" for t in then])

        async def serve(route: Any) -> None:
            await route.fulfill(status=200, content_type="text/html", body=html)

        await context.route(url + PAGE_PATH, serve)
        page = await context.new_page()
        self.log.watch(page)
        await page.goto(url + PAGE_PATH)
        await until(page, "document.getElementById('p').manifest !== null && document.getElementById('p').p2p !== null")
        return page


async def p2p(page: Any) -> dict[str, Any]:
    info: dict[str, Any] = await page.evaluate("document.getElementById('p').p2p")
    return info


async def play(page: Any) -> None:
    await page.evaluate("document.getElementById('p').play()")


async def check_audio(page: Any, m: dict[str, Any], *, whole: bool = True) -> None:
    """Every buffer appended is the init segment or a manifest chunk, and (``whole``) every chunk was appended."""
    await until(page, "window.appended.every((e) => e.sha256 !== null)", timeout=5)
    appended = await page.evaluate("window.appended.map((e) => e.sha256)")
    chunk_hashes = {c["sha256"] for c in m["chunks"]}
    allowed = chunk_hashes | {m["init"]["sha256"]}
    assert appended and all(h in allowed for h in appended), "a buffer that is not in the manifest was appended"
    if whole:
        assert chunk_hashes <= set(appended), "not every chunk was appended"


async def seeded(page: Any, m: dict[str, Any]) -> None:
    """Wait until a listener holds (and announced) every chunk."""
    n = len(m["chunks"])
    await until(page, f"(document.getElementById('p').p2p?.held ?? 0) >= {n}", timeout=20)


@pytest.mark.parametrize("world", TOPOLOGIES, indirect=True)
async def test_second_listener_gets_the_rest_from_the_first(world: World, tmp_path: Path) -> None:
    """After its first ~10 s from the server, the second listener gets (nearly) everything from the first."""
    gw = world.gw
    tid = tone_track(gw)["id"]
    m = manifest(gw, tid)
    log = ErrorLog()
    async with async_playwright() as pw, Browser(pw, world, tmp_path, log) as b:
        first = await b.listener(tid)
        await play(first)
        await seeded(first, m)
        before = await asyncio.to_thread(server_bytes, gw)

        second = await b.listener(tid, home=1)
        await play(second)
        await until(second, "window.finished", timeout=45)
        after = await asyncio.to_thread(server_bytes, gw)

        stats = await second.evaluate("document.getElementById('p').stats")
        chunks = await second.evaluate("window.chunks")
        info1, info2 = await p2p(first), await p2p(second)
        readout = await second.evaluate("document.getElementById('p').shadowRoot.querySelector('.peers').textContent")
        await check_audio(second, m)

    starts = {c["index"]: c for c in m["chunks"]}
    lead = {i for i, c in starts.items() if c["start"] < SERVER_LEAD}
    lead_bytes = m["init"]["size"] + sum(starts[i]["size"] for i in lead)
    rest_bytes = sum(c["size"] for i, c in starts.items() if i not in lead)
    grown = after - before
    from_server_later = [c for c in chunks if c["source"] == "server" and c["index"] not in lead]
    print(f"\nsecond listener ({world.topology.kind}): server bytes {grown:.0f} (lead {lead_bytes}, rest {rest_bytes}); "
          f"later chunks from the server: {len(from_server_later)}; stats {stats}; readout {readout!r}; "
          f"pairs {[(o['outcome'], o.get('local'), o.get('remote'), round(o['seconds'], 3)) for o in info1['outcomes'] + info2['outcomes']]}")
    assert stats["stalls"] == 0
    assert stats["httpBytes"] == grown, "the gateway counted other bytes than the player fetched"
    assert grown - lead_bytes <= 0.2 * rest_bytes, (grown, lead_bytes, rest_bytes, chunks)
    assert stats["peerBytes"] >= 0.8 * rest_bytes
    assert info1["upBytes"] >= stats["peerBytes"]
    assert [n["id"] for n in info2["neighbours"]] == [info1["peerId"]]
    assert readout.startswith("from peers: ") and readout != "from peers: 0%"
    # Through the NATs, by the address the gateway's STUN responder reported (or one learnt from it).
    assert {o["outcome"] for o in info2["outcomes"]} <= {"srflx", "prflx"}, info2["outcomes"]
    assert info2["outcomes"], "no connection outcome recorded"
    await until_metric(gw, 'ztream_stun_requests_total{result="ok"}', 2)
    # Each end reports the selected pair's candidate types as its getStats shows them:
    # across two NATs never a host pair, never a guess.
    for info in (info1, info2):
        assert_pair_ends(info)
    await until_metric(gw, 'ztream_p2p_connections_total{result="connected"}', 2)
    for impossible in ('candidate="host"', 'local="unknown"', 'remote="unknown"'):
        assert metric_sum(gw, f'ztream_p2p_connections_total{{result="connected",{impossible}}}') == 0, impossible
    # the reports reach the metrics (stats every ~5 s), start-up times too
    await until_metric(gw, "ztream_peer_bytes_total", stats["peerBytes"])
    await until_metric(gw, "ztream_startup_seconds_count", 2)
    log.assert_clean()


def assert_pair_ends(info: dict[str, Any]) -> None:
    """A listener behind its own NAT connected to one behind another: its end of the
    selected pair is its host (mDNS-hidden), server- or peer-reflexive candidate, the
    other end reflexive (a host pair cannot cross two NATs); both known."""
    ends = [(o.get("local"), o.get("remote")) for o in info["outcomes"] if o["outcome"] not in ("failed", "timeout")]
    assert ends, info["outcomes"]
    assert all(local in ("host", "srflx", "prflx") and remote in ("srflx", "prflx") for local, remote in ends), ends


def metric_sum(gw: NamespacedGateway, name: str) -> float:
    """A sample, or with ``{labels}`` the sum of every series that has those labels."""
    if "{" not in name:
        return metric(gw, name)
    family, _, wanted = name.partition("{")
    labels = set(wanted.rstrip("}").split(","))
    return sum(v for k, v in gw.metrics().items()
               if k.partition("{")[0] == family and labels <= set(k.partition("{")[2].rstrip("}").split(",")))


async def until_metric(gw: NamespacedGateway, name: str, at_least: float, timeout: float = 12.0) -> float:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await asyncio.to_thread(metric_sum, gw, name)
        if value >= at_least:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"{name} = {value}, expected >= {at_least}")
        await asyncio.sleep(0.5)


async def test_seeder_leaving_mid_track_causes_no_stall(world: World, tmp_path: Path) -> None:
    """The seeder's page closes while the leecher still needs chunks: the server fills in, no stall."""
    gw = world.gw
    tid = tone_track(gw)["id"]
    m = manifest(gw, tid)
    log = ErrorLog()
    async with async_playwright() as pw, Browser(pw, world, tmp_path, log) as b:
        seeder = await b.listener(tid)
        await play(seeder)
        await seeded(seeder, m)
        # a short buffer-ahead: the leecher asks for chunks as it goes, not all at once
        leecher = await b.listener(tid, 'buffer-ahead="10"', home=1)
        await play(leecher)
        await until(
            leecher,
            "window.chunks.filter((c) => c.source === 'peer').length >= 1 && document.getElementById('p').currentTime > 5",
            timeout=20,
        )
        closed_at = asyncio.get_running_loop().time()
        await seeder.close()
        await until(leecher, "document.getElementById('p').p2p.neighbours.length === 0", timeout=10)
        print(f"\nneighbour gone {asyncio.get_running_loop().time() - closed_at:.2f} s after the close")
        # from here on, the rest of the track
        at_close = await leecher.evaluate("({t: document.getElementById('p').currentTime, n: window.chunks.length})")
        await until(leecher, "window.finished", timeout=40)
        stats = await leecher.evaluate("document.getElementById('p').stats")
        chunks = await leecher.evaluate("window.chunks")
        await check_audio(leecher, m)
    after_close = chunks[at_close["n"]:]
    print(f"\nseeder closed at {at_close['t']:.1f} s; after that: {[(c['index'], c['source']) for c in after_close]}; stats {stats}")
    assert stats["stalls"] == 0
    assert any(c["source"] == "peer" for c in chunks)
    assert after_close, "the leecher had everything before the seeder left: nothing was tested"
    assert all(c["source"] == "server" for c in after_close)
    log.assert_clean()


async def test_corrupting_peer_is_dropped_and_counted(world: World, tmp_path: Path) -> None:
    """Chunks from a corrupting seeder fail their SHA-256: rejected, peer dropped, failure counted, playback intact."""
    gw = world.gw
    tid = tone_track(gw)["id"]
    m = manifest(gw, tid)
    failures_before = await asyncio.to_thread(metric, gw, "ztream_chunk_verify_failures_total")
    log = ErrorLog()
    async with async_playwright() as pw, Browser(pw, world, tmp_path, log) as b:
        bad = await b.listener(tid, "data-test-corrupt")
        await play(bad)
        await seeded(bad, m)
        bad_id = (await p2p(bad))["peerId"]
        leecher = await b.listener(tid, home=1)
        await play(leecher)
        await until(leecher, "window.bad.length >= 1", timeout=20)
        await until(leecher, "window.finished", timeout=40)
        stats = await leecher.evaluate("document.getElementById('p').stats")
        chunks = await leecher.evaluate("window.chunks")
        badchunks = await leecher.evaluate("window.bad")
        info = await p2p(leecher)
        await check_audio(leecher, m)
        assert (await p2p(bad))["upBytes"] > 0
    print(f"\nbad chunks: {badchunks}; leecher p2p {info}; stats {stats}")
    assert all(c["peer"] == bad_id for c in badchunks)
    assert not any(c["source"] == "peer" for c in chunks), "a chunk from the corrupting peer was accepted"
    assert stats["peerBytes"] == 0 and stats["stalls"] == 0
    assert info["banned"] == [bad_id] and info["neighbours"] == []
    assert info["verifyFailures"] == len(badchunks)
    await until_metric(gw, "ztream_chunk_verify_failures_total", failures_before + len(badchunks))
    log.assert_clean()


async def test_reloaded_page_seeds_from_indexeddb(world: World, tmp_path: Path) -> None:
    """A listener that played the track reloads its page: it announces and serves the chunks its IndexedDB holds."""
    gw = world.gw
    tid = tone_track(gw)["id"]
    m = manifest(gw, tid)
    n = len(m["chunks"])
    log = ErrorLog()
    async with async_playwright() as pw, Browser(pw, world, tmp_path, log) as b:
        seeder = await b.listener(tid)
        await play(seeder)
        await until(
            seeder,
            f"""async () => {{
                const {{ sharedCache }} = await import('/client/cache.js');
                const cache = await sharedCache();
                return cache.indices({json.dumps(tid)}, {json.dumps(m["rendition"])}).length === {n};
            }}""",
            timeout=20,
        )
        old_id = (await p2p(seeder))["peerId"]
        await seeder.reload()
        # not playing: a fresh peer id that holds the whole track from the cache
        await until(seeder, f"(p => p.p2p?.connected && p.p2p.held === {n})(document.getElementById('p'))", timeout=15)
        assert (await p2p(seeder))["peerId"] != old_id
        leecher = await b.listener(tid, home=1)
        await play(leecher)
        await until(leecher, "window.chunks.filter((c) => c.source === 'peer').length >= 4", timeout=25)
        await check_audio(leecher, m, whole=False)
        seeder_stats = await seeder.evaluate("document.getElementById('p').stats")
        seeder_info = await p2p(seeder)
        leecher_stats = await leecher.evaluate("document.getElementById('p').stats")
    print(f"\nreloaded seeder: stats {seeder_stats}, sent {seeder_info['upBytes']} bytes; leecher {leecher_stats}")
    assert seeder_stats["httpBytes"] == 0, "the reloaded page fetched from the gateway"
    assert seeder_info["upBytes"] >= leecher_stats["peerBytes"] > 0
    assert leecher_stats["stalls"] == 0
    log.assert_clean()


async def test_crawling_seeder_causes_no_stall(world: World, tmp_path: Path) -> None:
    """A seeder that takes requests but never delivers: each request expires at its deadline, the server fills in."""
    gw = world.gw
    tid = tone_track(gw)["id"]
    m = manifest(gw, tid)
    log = ErrorLog()
    async with async_playwright() as pw, Browser(pw, world, tmp_path, log) as b:
        seeder = await b.listener(tid, script=CRAWL)
        await play(seeder)
        await seeded(seeder, m)
        leecher = await b.listener(tid, home=1)
        await play(leecher)
        await until(leecher, "window.finished", timeout=45)
        stats = await leecher.evaluate("document.getElementById('p').stats")
        chunks = await leecher.evaluate("window.chunks")
        asked = (await p2p(seeder))["upBytes"]
        await check_audio(leecher, m)
    print(f"\ncrawling seeder was asked for {asked} bytes; leecher {stats}; sources {[c['source'] for c in chunks]}")
    assert asked > 0, "the leecher never asked the crawling seeder"
    assert stats["stalls"] == 0
    assert stats["peerBytes"] == 0 and all(c["source"] == "server" for c in chunks)
    log.assert_clean()


# -- NAT kinds, TURN, a swarm -------------------------------------------------------

TURN_SECRET = "test-turn-secret"


async def two_listeners(world: World, tmp_path: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A seeder, then a second listener to the end; (its stats, its p2p info, the manifest)."""
    gw = world.gw
    tid = tone_track(gw)["id"]
    m = manifest(gw, tid)
    log = ErrorLog()
    async with async_playwright() as pw, Browser(pw, world, tmp_path, log) as b:
        first = await b.listener(tid)
        await play(first)
        await seeded(first, m)
        second = await b.listener(tid, home=1)
        await play(second)
        await until(second, "window.finished", timeout=45)
        stats = await second.evaluate("document.getElementById('p').stats")
        info = await p2p(second)
        await check_audio(second, m)
    log.assert_clean()
    return stats, info, m


async def test_symmetric_nat_without_turn_shares_nothing(tmp_path: Path, audio_dir: Path) -> None:
    """Per-destination mappings make the STUN address useless: no pair connects, the server serves all, no stall."""
    world = World(tmp_path, audio_dir, nat="symmetric")
    try:
        stats, info, _m = await two_listeners(world, tmp_path)
        print(f"\nsymmetric, no TURN: {stats}; outcomes {info['outcomes']}")
        assert stats["peerBytes"] == 0 and stats["stalls"] == 0
        assert info["outcomes"] and all(o["outcome"] in ("failed", "timeout") for o in info["outcomes"])
        await until_metric(world.gw, 'ztream_p2p_connections_total{candidate="none"}', 1)
    finally:
        world.close()


async def test_symmetric_nat_connects_through_coturn(tmp_path: Path, audio_dir: Path) -> None:
    """With [p2p.turn] and a real coturn (use-auth-secret), the listeners connect through the relay."""
    require_netns()
    topology_dir = tmp_path / "turn"
    topology_dir.mkdir()
    turn_config: dict[str, Any] = {"urls": [f"turn:{PUBLIC_ADDRESS}:3478?transport=udp"], "secret": TURN_SECRET}
    world = World(tmp_path, audio_dir, nat="symmetric", p2p__turn=turn_config)
    turn = None
    try:
        turn = Coturn(world.topology.public, TURN_SECRET, topology_dir)
        stats, info, m = await two_listeners(world, tmp_path)
        print(f"\nsymmetric, TURN: {stats}; outcomes {info['outcomes']}")
        rest = sum(c["size"] for c in m["chunks"] if c["start"] >= SERVER_LEAD)
        assert stats["stalls"] == 0
        assert stats["peerBytes"] >= 0.8 * rest, (stats, rest)
        assert "relay" in {o["outcome"] for o in info["outcomes"]}, info["outcomes"]
        await until_metric(world.gw, "ztream_peer_relay_bytes_total", stats["peerBytes"] * 0.9)
        await until_metric(world.gw, 'ztream_p2p_connections_total{candidate="relay"}', 1)
        assert "allocation" in turn.log().lower() or "session" in turn.log().lower()
    finally:
        if turn is not None:
            turn.close()
        world.close()


@pytest.mark.parametrize("kind", TOPOLOGIES)
async def test_five_staggered_listeners_behind_nat_share_without_stalls(tmp_path: Path, audio_dir: Path,
                                                                       kind: Topology) -> None:
    """Five listeners, each behind its own NAT, joining 3 s apart, shipped defaults: 0 stalls, peers carry the rest."""
    world = World(tmp_path, audio_dir, count=5, kind=kind)
    try:
        gw = world.gw
        tid = tone_track(gw)["id"]
        m = manifest(gw, tid)
        log = ErrorLog()
        async with async_playwright() as pw, Browser(pw, world, tmp_path, log) as b:
            pages = []
            for i in range(5):
                page = await b.listener(tid, home=i)
                await play(page)
                pages.append(page)
                await asyncio.sleep(3)
            for page in pages:
                await until(page, "window.finished", timeout=45)
            stats = [await p.evaluate("document.getElementById('p').stats") for p in pages]
            infos = [await p2p(p) for p in pages]
            for page in pages:
                await check_audio(page, m)
        peer = sum(s["peerBytes"] for s in stats)
        http = sum(s["httpBytes"] for s in stats)
        total = m["init"]["size"] + sum(c["size"] for c in m["chunks"])
        lead = m["init"]["size"] + sum(c["size"] for c in m["chunks"] if c["start"] < SERVER_LEAD)
        ceiling = (4 * (total - lead)) / (5 * total)
        print(f"\nfive behind NAT ({kind}): offload {peer / (peer + http):.0%} (ceiling {ceiling:.0%}); "
              f"stalls {[s['stalls'] for s in stats]}; outcomes {[[o['outcome'] for o in i['outcomes']] for i in infos]}")
        assert all(s["stalls"] == 0 for s in stats), stats
        assert all(s["peerBytes"] > 0 for s in stats[1:]), stats
        assert peer / (peer + http) >= ceiling - 0.15, (peer, http, ceiling)
        log.assert_clean()
    finally:
        world.close()
