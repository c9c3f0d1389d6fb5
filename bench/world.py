"""The browser P2P world: listeners behind NAT routers, the gateway on the public side.

``World`` builds a ``NatTopology`` (bench/nat.py) with a ``NamespacedGateway``
on its public namespace; ``Browser`` runs one Chromium per listener namespace,
each listener a page in its own context on a test page served at the gateway's
origin; ``firefox_listener`` does the same with Firefox ESR. The browser tests
(tests/system/browser/, tests/system/cluster/test_browsers.py) and
``ztream bench browsers`` share them, so the benchmark measures exactly what the
tests pin. ``live_station`` puts a live station on the public side: a real
Icecast on the public namespace's loopback, fed in real time (MP3), registered
with the gateway (a World made with ``LIVE_OVERRIDES`` may fetch from it).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.browser import CHROMIUM_ARGS, ErrorLog, require_chromium, until
from bench.firefox import Firefox, PulseAudio, require_firefox
from bench.icecast import Icecast, start_icecast
from bench.nat import PUBLIC_ADDRESS, NatTopology, Topology
from bench.netns import NamespacedGateway, require_netns

PORT = 8000
PUBLIC_URL = f"http://{PUBLIC_ADDRESS}:{PORT}"
# No --allow-loopback-in-peer-connection and no permissions: what a listener's browser does.
# The resolver rule keeps the browsers off any real name server; it must leave
# ``*.local`` alone: Chromium resolves peers' mDNS host candidates through the same
# resolver, and without that exception listeners on one LAN (``office``) never
# connect (every dial timed out, 0% from peers).
NAT_ARGS = [
    f"--unsafely-treat-insecure-origin-as-secure={PUBLIC_URL}",
    f"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE *.local, EXCLUDE {PUBLIC_ADDRESS}",
]

SERVER_LEAD = 10.0  # seconds from the server after a start (scheduler.serverLead)
# A live listener's start-up lead: the chunks of its first ``start_behind_seconds``
# (3 s of 1 s chunks, docs/live.md) come from the server (docs/p2p.md, "Live: peers carry the edge").
LIVE_LEAD = 3
# The gateway may fetch a live station from its own namespace's loopback (``live_station``).
LIVE_OVERRIDES: dict[str, Any] = {"sources__url": {"allow_hosts": ["127.0.0.1"]}}
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
    """A NAT topology (``kind``: bench.nat.TOPOLOGIES) with the gateway on its public namespace."""

    def __init__(self, tmp_path: Path, audio_dir: Path | None, *, count: int = 2, nat: Any = "eim",
                 kind: Topology = "bridge", **overrides: Any) -> None:
        require_netns()
        self.topology = NatTopology(count, nat, kind)
        self.homes = [listener.ns for listener in self.topology.listeners]
        if kind == "two-isps":
            # The gateway knows the two access networks, as their operator would
            # configure them (docs/config.md, [p2p.networks]); ``p2p__networks={}`` says it does not.
            overrides.setdefault("p2p__networks", self.topology.networks)
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
        """Chromium flags for a listener of this world (tests/system/cluster/test_browsers.py has several origins)."""
        return NAT_ARGS

    def close(self) -> None:
        try:
            self.gw.stop()
        finally:
            self.topology.close()


def tone_track(gw: NamespacedGateway) -> dict[str, Any]:
    tracks = json.loads(gw.get("/v1/tracks"))["tracks"]
    track: dict[str, Any] = next(t for t in tracks if t["title"].startswith("tone"))
    return track


def manifest(gw: NamespacedGateway, track_id: str, rendition: str = "") -> dict[str, Any]:
    """The complete manifest (a fresh gateway transcodes on the first request); ``rendition``: of that one."""
    query = f"?rendition={rendition}" if rendition else ""
    for _ in range(100):
        m: dict[str, Any] = json.loads(gw.get(f"/v1/tracks/{track_id}/manifest{query}"))
        if m["complete"]:
            return m
        time.sleep(0.1)
    raise AssertionError("the transcode did not complete")


@contextmanager
def live_station(world: World, work: Path, *, seconds: float, mount: str = "live.mp3") -> Iterator[tuple[Icecast, str]]:
    """Icecast on ``world``'s public namespace (its loopback), an ``ffmpeg -re`` MP3 source of ``seconds``
    on ``mount``, registered with the gateway: (the server, the live track's id). Stopped on exit."""
    icecast = start_icecast(work, ns=world.topology.public)
    try:
        icecast.source(mount, codec="mp3", seconds=seconds)
        track = world.gw.post_json("/v1/tracks", {"url": icecast.url(mount)})
        if not track.get("live"):
            raise AssertionError(f"the mount was not registered as a live track: {track}")
        yield icecast, str(track["id"])
    finally:
        icecast.close()


def live_window(gw: NamespacedGateway, track_id: str, seconds: float, timeout: float = 40.0) -> dict[str, Any]:
    """A live track's manifest once its window holds ``seconds`` of audio (the first request starts the ingest)."""
    deadline = time.monotonic() + timeout
    while True:
        m: dict[str, Any] = json.loads(gw.get(f"/v1/tracks/{track_id}/manifest"))
        if sum(c["duration"] for c in m["chunks"]) >= seconds:
            return m
        if time.monotonic() > deadline:
            raise AssertionError(f"the live window never held {seconds} s: {m}")
        time.sleep(0.5)


@dataclass(frozen=True, slots=True)
class EdgeChunk:
    """One live chunk as the gateway listed it, and when it was first seen listed."""

    index: int
    start: float  # media seconds
    duration: float
    wall: float  # the gateway's UNIX time of its first sample from the upstream
    seen: float  # UNIX time a manifest first listed it (polled: up to ``EdgeWatch.every`` late)

    @property
    def lag(self) -> float:
        """Seconds from the end of its audio at the upstream to its listing: the ingest's delay."""
        return self.seen - self.wall - self.duration


class EdgeWatch:
    """A live track's chunks as they appear, polled from inside the gateway's namespace on a
    thread (same clock as the gateway's ``wall``): shows whether a listener's stall met a chunk
    the ingest itself listed late, or one that was there in time and reached it late."""

    every = 0.25

    def __init__(self, gw: NamespacedGateway, track_id: str) -> None:
        self.gw, self.track_id = gw, track_id
        self.chunks: dict[int, EdgeChunk] = {}
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="edge-watch", daemon=True)

    def __enter__(self) -> EdgeWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _poll(self) -> None:
        before: set[int] | None = None  # listed at the first read: when they appeared is unknown
        while not self._stop.wait(self.every):
            try:
                m = json.loads(self.gw.get(f"/v1/tracks/{self.track_id}/manifest"))
            except (OSError, ValueError):
                self.errors += 1
                continue
            now = time.time()
            if before is None:
                before = {c["index"] for c in m.get("chunks", [])}
            for c in m.get("chunks", []):
                if c["index"] not in self.chunks and c["index"] not in before and c.get("wall") is not None:
                    self.chunks[c["index"]] = EdgeChunk(c["index"], c["start"], c["duration"], c["wall"], now)

    def at(self, first: int, played: float) -> int:
        """The index ``played`` seconds into a player's timeline that began at chunk ``first``
        (live-timeline.js: chunks placed end to end), as far as the durations are known (else 1 s)."""
        index, t = first, 0.0
        while True:
            d = c.duration if (c := self.chunks.get(index)) is not None else 1.0
            if played < t + d:
                return index
            index, t = index + 1, t + d

    def gap_before(self, index: int) -> float | None:
        """How much later than the previous chunk's end this chunk's audio began at the upstream."""
        prev, this = self.chunks.get(index - 1), self.chunks.get(index)
        return None if prev is None or this is None else this.wall - prev.wall - prev.duration


def server_bytes(gw: NamespacedGateway) -> float:
    return sum(v for k, v in gw.metrics().items() if k.startswith("ztream_server_bytes_total"))


def metric(gw: NamespacedGateway, name: str) -> float:
    return gw.metrics().get(name, 0.0)


def series_sum(metrics: Mapping[str, float], name: str) -> float:
    """In one /metrics reading, the sum of a family's series (``ztream_peer_bytes_total``:
    every ``scope``), or with ``{labels}`` of every series that has those labels."""
    if "{" not in name:
        return sum(v for k, v in metrics.items() if k.partition("{")[0] == name)
    family, _, wanted = name.partition("{")
    labels = set(wanted.rstrip("}").split(","))
    return sum(v for k, v in metrics.items()
               if k.partition("{")[0] == family and labels <= set(k.partition("{")[2].rstrip("}").split(",")))


def metric_sum(gw: NamespacedGateway, name: str) -> float:
    """``series_sum`` of the gateway's /metrics now."""
    return series_sum(gw.metrics(), name)


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


# A plain-http gateway address is a secure context for Firefox only by this pref
# (the older "...whitelist" name does nothing); nothing else is changed from
# Firefox's defaults: mDNS host-candidate hiding stays on.
FIREFOX_PREFS = {"dom.securecontext.allowlist": PUBLIC_ADDRESS}


@asynccontextmanager
async def firefox_listener(world: World, tmp_path: Path, track_id: str, home: int,
                           attrs: str = "", script: str = "") -> AsyncIterator[Firefox]:
    """A Firefox page in listener ``home``'s namespace, on the gateway's origin, the player loaded;
    ``script``: run in the page before the player (as ``Browser.listener``'s)."""
    require_firefox()
    pulse = PulseAudio(tmp_path / f"pulse-{home}")
    ff: Firefox | None = None
    try:
        ff = await Firefox.launch(tmp_path / f"ff-{home}", pulse, prefix=world.homes[home].exec_prefix,
                                  prefs=FIREFOX_PREFS)
        url = world.gw.url + PAGE_PATH
        await ff.route(url, listener_page(f"{world.gw.url}/v1/tracks/{track_id}", attrs, script))
        await ff.goto(url)
        await ff.until("isSecureContext", timeout=5)
        await ff.until("document.getElementById('p')?.manifest != null && document.getElementById('p').p2p !== null",
                       timeout=20)
        yield ff
    finally:
        if ff is not None:
            await ff.close()
        pulse.close()


# Where a listener was when its audio ran dry (a stall): the time, the playhead, the end of what was
# buffered and every buffered range (a hole at the playhead shows), and the last chunks it got with
# when they came (``at``, ms of the page's clock); ``unix`` (the host's clock, shared by the namespaces)
# and ``stalls`` (the player's count after it: a ``waiting`` while seeking or starting is no stall).
# ``rates``: every playback rate change (the live pace rules), with its ``unix`` time.
WATCH_STALLS = """(() => { const p = document.getElementById('p'); window.waits = []; window.rates = [];
  document.addEventListener('chunk', (e) => { e.detail.at = Math.round(performance.now()); e.detail.unix = Date.now() / 1000; }, true);
  p.audio.addEventListener('ratechange', () => { window.rates.push({ unix: Date.now() / 1000, rate: p.audio.playbackRate }); });
  p.audio.addEventListener('waiting', () => { const a = p.audio, b = a.buffered;
    const ranges = []; for (let i = 0; i < b.length; i++) ranges.push([b.start(i), b.end(i)]);
    window.waits.push({ at: Math.round(performance.now()), unix: Date.now() / 1000, stalls: p.stats.stalls,
      t: a.currentTime, end: b.length ? b.end(b.length - 1) : null, ranges,
      chunks: window.chunks.slice(-4).map((c) => ({ index: c.index, source: c.source, at: c.at })) }); });
})()"""

LIVE_STATE = """(() => { const p = document.getElementById('p');
  return { latency: p.liveInfo?.latency ?? null, state: p.liveInfo?.state ?? null, stats: p.stats }; })()"""


@dataclass
class LiveListener:
    """One listener of ``listen_live``: when it joined, what it did, what it got."""

    browser: str
    page: Any
    joined_s: float  # seconds after the first listener pressed play
    edge: int  # the window's newest index when it pressed play
    latencies: list[float] = field(default_factory=list)  # liveInfo.latency, about once a second while playing
    stats: dict[str, Any] = field(default_factory=dict)  # the player's stats at its end
    chunks: list[dict[str, Any]] = field(default_factory=list)  # its ``chunk`` events (index, source, bytes, peer)
    info: dict[str, Any] = field(default_factory=dict)  # its p2p state at its end (outcomes, upBytes, ...)
    waits: list[dict[str, Any]] = field(default_factory=list)  # its audio's ``waiting`` events (WATCH_STALLS)
    rates: list[dict[str, Any]] = field(default_factory=list)  # its playback rate changes (WATCH_STALLS)
    done: bool = False

    @property
    def first_index(self) -> int | None:
        """The first chunk it got (its start: near ``edge``, not at the window's start)."""
        return min((int(c["index"]) for c in self.chunks), default=None)

    @property
    def stalls(self) -> list[dict[str, Any]]:
        """The ``waits`` the player counted as stalls (not those while seeking or before the first sound)."""
        out: list[dict[str, Any]] = []
        for w in self.waits:
            if w.get("stalls", 0) > (out[-1]["stalls"] if out else 0):
                out.append(w)
        return out


def buffered_ahead(wait: Mapping[str, Any]) -> float:
    """Seconds of audio buffered without a hole past the playhead when a ``waiting`` began: about 0
    when the audio ran dry (a chunk came late); more when the media pipeline stopped with data in hand."""
    t = float(wait["t"])
    return max((float(end) - t for start, end in wait.get("ranges", []) if float(start) <= t + 0.05 < float(end)),
               default=0.0)


async def listen_live(b: Browser, stack: AsyncExitStack, track_id: str, *, count: int, stagger: float,
                      listen: float, each: bool, firefox_at: int | None = None, attrs: str = "",
                      script: str = "") -> list[LiveListener]:
    """``count`` listeners of live track ``track_id``, listener i in home i, joining ``stagger`` s apart
    (listener ``firefox_at`` a Firefox, kept open by ``stack``; ``attrs``, ``script``: as ``Browser.listener``'s). Each listens ``listen`` s after its own
    join (``each``) or after the first's; its latency is sampled every second meanwhile, and its stats,
    ``chunk`` events and p2p state read at its end. The pages stay open (serving the others) until
    ``b`` and ``stack`` close."""
    world = b.world
    for i in range(count):
        if i != firefox_at:
            await b.at(i)  # launched first, so that the stagger is the time between starts
    out: list[LiveListener] = []
    t0 = 0.0

    async def sample() -> None:
        now = time.monotonic() - t0
        for x in out:
            if x.done:
                continue
            end = x.joined_s + listen if each else listen
            if now >= end:
                x.stats = await x.page.evaluate("document.getElementById('p').stats")
                x.chunks = await x.page.evaluate("window.chunks")
                x.info = await x.page.evaluate("document.getElementById('p').p2p")
                x.waits = await x.page.evaluate("window.waits")
                x.rates = await x.page.evaluate("window.rates")
                x.done = True
                continue
            state = await x.page.evaluate(LIVE_STATE)
            if state["latency"] is not None:
                x.latencies.append(float(state["latency"]))

    for i in range(count):
        if i == firefox_at:
            page: Any = await stack.enter_async_context(
                firefox_listener(world, b.tmp_path, track_id, home=i, attrs=attrs, script=script))
            kind = "firefox"
        else:
            page = await b.listener(track_id, attrs=attrs, script=script, home=i)
            kind = "chromium"
        await page.evaluate(WATCH_STALLS)
        m = json.loads(await asyncio.to_thread(world.gw.get, f"/v1/tracks/{track_id}/manifest"))
        await play(page)
        if not out:
            t0 = time.monotonic()
        out.append(LiveListener(kind, page, round(time.monotonic() - t0, 2), int(m["edge"])))
        if i < count - 1:
            began = time.monotonic()
            while time.monotonic() - began < stagger:
                await sample()
                await asyncio.sleep(min(1.0, max(0.0, stagger - (time.monotonic() - began))))
    while not all(x.done for x in out):
        await sample()
        await asyncio.sleep(1.0)
    return out
