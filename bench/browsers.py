"""``ztream bench browsers``: real browsers behind NAT routers, shipped defaults.

Builds the world of the browser P2P tests (``bench.world``, ``bench.nat.NatTopology``)
in each ``--topology`` (``bench.nat.TOPOLOGIES``: ``bridge``, ``vip``,
``dualstack``, ``office``, ``two-isps``, or ``all``): ``--listeners``
listeners, each in its own network namespace behind an endpoint-independent
NAT router (its own, or in the ``office`` one for all), the gateway on the
public namespace at 198.18.0.1 with its shipped defaults (the built-in STUN
responder is the only ICE server; no TURN), no camera/microphone permission
in any browser. One generated tone of ``--seconds`` is the library.
Listeners start ``--stagger`` seconds apart and play it to the end at real
time.

Two scenarios, in this order (``--only`` picks one):

- ``chromium``: every listener is Chromium (one browser per namespace);
- ``firefox``: the same, with listener ``--firefox-at`` (0-based) a Firefox
  ESR (``bench.world.firefox_listener``).

Per scenario it prints a row per listener and the totals:

- ``offload``: peer bytes / (peer + server bytes), as the players counted
  them (stats ``peerBytes``, ``httpBytes``);
- ``ceiling``: the most peers could carry. Every listener's first
  ``serverLead`` (10 s) after its start comes from the server by design, and
  the first listener has nobody to ask: ceiling = (N-1)(total - lead) /
  (N total), where ``total`` is the init segment plus every chunk and
  ``lead`` the init plus the chunks starting in the first 10 s. The stagger
  does not lower it as long as it is positive: the first listener buffers
  30 s ahead of its playhead, so it holds every chunk a later listener asks
  for before that listener asks;
- ``stalls`` (player stats, goal 0);
- connection set-up: the seconds from opening a neighbour link to its ICE
  connection being connected, as each player's transport records it
  (``p2p.outcomes[].seconds``, both ends of every connection), p50/p95;
- the selected pairs' candidate types, ``local/remote`` as each end's
  ``getStats`` shows them (both ends of every connection);
- where the peer bytes came from (``scope``, as ``ztream_peer_bytes_total``
  labels it): ``same_lan`` (a neighbour behind the same public address),
  ``same_network`` (another home of the same access network, ``two-isps``),
  ``other``; from the players' own ``chunk`` events (each names the peer it
  came from). ``within_network`` is the share of the first two: for
  ``two-isps`` the goal is 80% or more. ``within_network_ceiling``: the most
  that can stay within a network in this order, every listener after the
  first getting the same bytes from peers, when a listener whose network
  has no earlier listener can only get them from another network (1 - k/(N-1),
  k such listeners: 80% for six listeners alternating between two networks). Where the gateway labels
  ``ztream_peer_bytes_total`` with ``scope`` (``[p2p.networks]`` configured),
  its own split is printed beside.

With ``--live`` the library is a live station instead (``bench.world.live_station``):
Debian's icecast2 on the public namespace's loopback, fed in real time by
``ffmpeg -re`` (MP3), registered with the gateway by its URL (docs/live.md; the
gateway may fetch from ``127.0.0.1``, ``bench.world.LIVE_OVERRIDES``), in the
``bridge`` topology. Listeners (up to 12) join ``--stagger`` seconds apart
(``bench.world.listen_live``) and all listen until ``--seconds`` after the
first joined. Per scenario it prints a row per listener and the totals:

- ``server_per_listener``: the server's bytes (the players' ``httpBytes``,
  summed) over one listener's bytes (the first's, which listened longest:
  ``httpBytes`` + ``peerBytes``); the goal is 2.0 or less (with 10 listeners,
  offload 80% or more);
- ``offload``, as the file mode counts it; the gateway's own
  ``ztream_live_server_bytes_total`` and ``ztream_peer_bytes_total`` beside;
- ``http_fetches_per_chunk``: of every chunk any listener got, how many
  listeners took it from the server (the players' ``chunk`` events), start-up
  leads included;
- stalls; live latency p50/p95 (the players' ``liveInfo.latency``, sampled
  about once a second each, all listeners together); ``start``: each one's
  first chunk minus the window's edge when it pressed play (about -3: it
  starts near the edge, not at the window's start);
- connection set-up and selected pairs, as above; in the JSON line each
  listener's ``waits``: when its audio ran dry, where its playhead and
  buffer were, and its last chunks then (``bench.world.WATCH_STALLS``).

Then one JSON line ``{"bench": "browsers", "live": false|true, "scenarios": [...]}``. Every byte
stays inside namespaces this bench made; each wait is bounded, the whole run
by ``--timeout``. Needs root, iproute2, iptables, Chromium (and for the
second scenario firefox-esr, pulseaudio, node with puppeteer-core): what
``make test`` installs. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.nat import TOPOLOGIES, Topology

__all__ = ["Scenario", "ceiling", "main", "run_scenario"]

SERVER_LEAD = 10.0  # seconds (client/scheduler.js serverLead)


@dataclass(slots=True)
class Row:
    browser: str
    start_s: float
    server_bytes: int
    peer_bytes: int
    up_bytes: int
    stalls: int
    outcomes: list[str]
    setup_ms: list[float]
    pairs: list[str] = field(default_factory=list)  # "local/remote" per connected link
    network: str = ""  # its access network, or its public address when the topology names none
    scopes: dict[str, int] = field(default_factory=dict)  # peer bytes by where the sender is


SCOPES = ("same_lan", "same_network", "other")


@dataclass(slots=True)
class Scenario:
    name: str
    listeners: int
    stagger_s: float
    track_s: float
    topology: str = "bridge"
    rows: list[Row] = field(default_factory=list)
    ceiling: float = 0.0
    wall_s: float = 0.0
    gateway_scopes: dict[str, float] = field(default_factory=dict)  # ztream_peer_bytes_total by scope

    def summary(self) -> dict[str, Any]:
        peer = sum(r.peer_bytes for r in self.rows)
        server = sum(r.server_bytes for r in self.rows)
        setups = sorted(ms for r in self.rows for ms in r.setup_ms)
        outcomes = tally([r.outcomes for r in self.rows])
        pairs = tally([r.pairs for r in self.rows])
        scopes = {scope: 0 for scope in SCOPES}
        for r in self.rows:
            for scope, n in r.scopes.items():
                scopes[scope] += n
        offload = peer / (peer + server) if peer + server else 0.0
        scoped = sum(scopes.values())
        within = (scopes["same_lan"] + scopes["same_network"]) / scoped if scoped else None
        # The most that can stay within a network in this order: a listener whose
        # network has no earlier listener can only get its peer bytes from another.
        first_of_network = sum(1 for i, r in enumerate(self.rows)
                               if i > 0 and r.network not in {q.network for q in self.rows[:i]})
        within_ceiling = 1 - first_of_network / (len(self.rows) - 1) if len(self.rows) > 1 else None
        return {
            "scenario": self.name,
            "topology": self.topology,
            "listeners": self.listeners,
            "browsers": [r.browser for r in self.rows],
            "stagger_s": self.stagger_s,
            "track_s": self.track_s,
            "server_bytes": server,
            "peer_bytes": peer,
            "offload": round(offload, 4),
            "ceiling": round(self.ceiling, 4),
            "gap_points": round(100 * (self.ceiling - offload), 1),
            "stalls": sum(r.stalls for r in self.rows),
            "setup_p50_ms": round(percentile(setups, 50), 1) if setups else None,
            "setup_p95_ms": round(percentile(setups, 95), 1) if setups else None,
            "connections": len(setups),
            "outcomes": outcomes,
            "pairs": pairs,
            "scopes": scopes,
            "within_network": round(within, 4) if within is not None else None,
            "within_network_ceiling": round(within_ceiling, 4) if within_ceiling is not None else None,
            "gateway_scopes": self.gateway_scopes,
            "wall_s": round(self.wall_s, 1),
            "rows": [asdict(r) for r in self.rows],
        }


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, -(-len(sorted_values) * p // 100))
    return sorted_values[int(rank) - 1]


def links(info: dict[str, Any]) -> tuple[list[str], list[float], list[str]]:
    """A player's neighbour links (its ``p2p`` state): every outcome, and of the connected ones
    the set-up time (ms) and the selected pair's candidate types (``local/remote``)."""
    connected = [o for o in info["outcomes"] if o["outcome"] not in ("failed", "timeout")]
    return ([o["outcome"] for o in info["outcomes"]], [round(1000 * float(o["seconds"]), 1) for o in connected],
            [f"{o.get('local')}/{o.get('remote')}" for o in connected])


def tally(lists: list[list[str]]) -> dict[str, int]:
    """How many times each string occurs in the lists (outcomes, pairs), sorted."""
    out: dict[str, int] = {}
    for values in lists:
        for v in values:
            out[v] = out.get(v, 0) + 1
    return dict(sorted(out.items()))


def ceiling(m: dict[str, Any], listeners: int) -> float:
    """The largest offload share: everything but each listener's server lead, and all of the first listener."""
    total = m["init"]["size"] + sum(c["size"] for c in m["chunks"])
    lead = m["init"]["size"] + sum(c["size"] for c in m["chunks"] if c["start"] < SERVER_LEAD)
    return float((listeners - 1) * (total - lead) / (listeners * total))


def scope_of(sender: str, receiver: str, networks: dict[str, str], lans: dict[str, str]) -> str:
    """Where ``sender`` (a peer id) is for ``receiver``: behind the same public address,
    in the same access network, or elsewhere (peers of no listener here: ``other``)."""
    if sender in lans and lans[sender] == lans.get(receiver):
        return "same_lan"
    if sender in networks and networks[sender] == networks.get(receiver):
        return "same_network"
    return "other"


def gateway_scopes(metrics: dict[str, float]) -> dict[str, float]:
    """``ztream_peer_bytes_total`` by its ``scope`` label; empty where the gateway has none."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name, _, labels = key.partition("{")
        if name != "ztream_peer_bytes_total" or 'scope="' not in labels:
            continue
        scope = labels.split('scope="', 1)[1].split('"', 1)[0]
        out[scope] = out.get(scope, 0.0) + value
    return out


async def run_scenario(name: str, workdir: Path, library: Path, *, listeners: int, stagger: float,
                       track_seconds: float, firefox_at: int | None, topology: Topology = "bridge") -> Scenario:
    # The browser world is the one the browser tests pin (bench/world.py).
    from playwright.async_api import async_playwright

    from bench.browser import ErrorLog, until
    from bench.world import (
        Browser,
        World,
        check_audio,
        firefox_listener,
        manifest,
        p2p,
        play,
        tone_track,
    )

    result = Scenario(name, listeners, stagger, track_seconds, topology)
    began = time.monotonic()
    world = World(workdir, library, count=listeners, kind=topology)
    homes = world.topology.listeners
    try:
        tid = tone_track(world.gw)["id"]
        m = manifest(world.gw, tid)
        result.ceiling = ceiling(m, listeners)
        log = ErrorLog()
        async with async_playwright() as pw, Browser(pw, world, workdir, log) as b, AsyncExitStack() as stack:
            # Browsers first, so that --stagger is the time between starts, not launches.
            for i in range(listeners):
                if i != firefox_at:
                    await b.at(i)
            pages: list[tuple[str, float, Any]] = []
            t0 = time.monotonic()
            for i in range(listeners):
                if i == firefox_at:
                    page: Any = await stack.enter_async_context(firefox_listener(world, workdir, tid, home=i))
                    kind = "firefox"
                else:
                    page = await b.listener(tid, home=i)
                    kind = "chromium"
                await play(page)
                pages.append((kind, time.monotonic() - t0, page))
                if i < listeners - 1:
                    await asyncio.sleep(stagger)
            for _kind, _start, page in pages:
                await until(page, "window.finished", timeout=track_seconds + 40)
            infos = [await p2p(page) for _kind, _start, page in pages]
            # Each peer id's home: its public address (one LAN) and its access network.
            lans = {info["peerId"]: home.wan_address for info, home in zip(infos, homes, strict=True)}
            networks = {info["peerId"]: home.network or home.wan_address for info, home in zip(infos, homes, strict=True)}
            for (kind, start, page), info, home in zip(pages, infos, homes, strict=True):
                stats = await page.evaluate("document.getElementById('p').stats")
                chunks = await page.evaluate("window.chunks")
                await check_audio(page, m)  # every appended buffer is a manifest chunk, all of them
                outcomes, setup_ms, pairs = links(info)
                scopes = {scope: 0 for scope in SCOPES}
                for c in chunks:
                    if c["source"] == "peer":
                        scopes[scope_of(str(c["peer"]), info["peerId"], networks, lans)] += int(c["bytes"])
                result.rows.append(Row(
                    browser=kind, start_s=round(start, 2), server_bytes=int(stats["httpBytes"]),
                    peer_bytes=int(stats["peerBytes"]), up_bytes=int(info["upBytes"]), stalls=int(stats["stalls"]),
                    outcomes=outcomes, setup_ms=setup_ms, pairs=pairs,
                    network=home.network or home.wan_address, scopes=scopes,
                ))
        # The players report every ~5 s: the last reports reach the gateway after the end.
        await asyncio.sleep(6)
        result.gateway_scopes = gateway_scopes(await asyncio.to_thread(world.gw.metrics))
    finally:
        world.close()
    result.wall_s = time.monotonic() - began
    return result


def print_scenario(s: Scenario) -> None:
    summary = s.summary()
    print(f"\n{s.name} in topology {s.topology}: {s.listeners} listeners behind NAT, {s.stagger_s} s apart, "
          f"{s.track_s:.0f} s track, shipped defaults (built-in STUN), no media permissions")
    print(f"{'#':>2} {'browser':9} {'network':13} {'start s':>7} {'server KB':>9} {'peer KB':>8} {'near KB':>8} "
          f"{'up KB':>8} {'stalls':>6}  {'set-up ms':18} pairs (local/remote)")
    for i, r in enumerate(s.rows):
        setup = ",".join(f"{ms:.0f}" for ms in r.setup_ms) or "-"
        near = r.scopes.get("same_lan", 0) + r.scopes.get("same_network", 0)
        failed = [o for o in r.outcomes if o in ("failed", "timeout")]
        print(f"{i:>2} {r.browser:9} {r.network:13} {r.start_s:7.1f} {r.server_bytes / 1000:9.0f} "
              f"{r.peer_bytes / 1000:8.0f} {near / 1000:8.0f} {r.up_bytes / 1000:8.0f} {r.stalls:6}  {setup:18} "
              f"{','.join([*r.pairs, *failed]) or '-'}")
    pairs = ", ".join(f"{n} x {pair}" for pair, n in summary["pairs"].items()) or "none"
    within = summary["within_network"]
    print(f"offload {summary['offload']:.1%} (ceiling {summary['ceiling']:.1%}, {summary['gap_points']} points below; "
          f"goal within 5)   stalls {summary['stalls']} (goal 0)   set-up p50 {summary['setup_p50_ms']} ms "
          f"p95 {summary['setup_p95_ms']} ms over {summary['connections']} connection ends (goal p50 <= 500 ms)   "
          f"wall {summary['wall_s']} s")
    print(f"selected pairs: {pairs}; outcomes {summary['outcomes']}")
    scopes = ", ".join(f"{scope} {n / 1000:.0f} KB" for scope, n in summary["scopes"].items())
    goal = " (goal >= 80% in two-isps)" if s.topology == "two-isps" else ""
    most = summary["within_network_ceiling"]
    print(f"peer bytes by sender: {scopes}; within the network {'-' if within is None else f'{within:.1%}'}"
          f"{'' if most is None else f' (at most {most:.0%} in this order)'}{goal}")
    if s.gateway_scopes:
        print("gateway ztream_peer_bytes_total by scope: "
              + ", ".join(f"{scope} {n / 1000:.0f} KB" for scope, n in sorted(s.gateway_scopes.items())))


@dataclass(slots=True)
class LiveRow:
    browser: str
    start_s: float
    server_bytes: int
    peer_bytes: int
    up_bytes: int
    stalls: int
    latencies: list[float]  # liveInfo.latency, about once a second while it played
    start_offset: int | None  # its first chunk's index minus the window's edge when it pressed play
    sources: list[str]  # "server" or "peer", each chunk it got, in order
    outcomes: list[str]
    setup_ms: list[float]
    pairs: list[str] = field(default_factory=list)
    waits: list[dict[str, Any]] = field(default_factory=list)  # its audio's ``waiting`` events (bench.world.WATCH_STALLS)


@dataclass(slots=True)
class LiveScenario:
    name: str
    listeners: int
    stagger_s: float
    listen_s: float
    rows: list[LiveRow] = field(default_factory=list)
    chunks: dict[int, list[str]] = field(default_factory=dict)  # index -> where each listener got it
    gateway: dict[str, float] = field(default_factory=dict)  # live server and peer bytes, /metrics
    wall_s: float = 0.0
    edge: dict[str, Any] = field(default_factory=dict)  # the ingest's delays (bench.world.EdgeWatch)
    stalls_at: list[dict[str, Any]] = field(default_factory=list)  # each stall's chunk, and whether it was listed late

    def summary(self) -> dict[str, Any]:
        peer = sum(r.peer_bytes for r in self.rows)
        server = sum(r.server_bytes for r in self.rows)
        one = self.rows[0].server_bytes + self.rows[0].peer_bytes if self.rows else 0  # the longest listener
        latencies = sorted(x for r in self.rows for x in r.latencies)
        setups = sorted(ms for r in self.rows for ms in r.setup_ms)
        fetches = sum(where.count("server") for where in self.chunks.values())
        return {
            "scenario": self.name,
            "track": "live",
            "listeners": self.listeners,
            "browsers": [r.browser for r in self.rows],
            "stagger_s": self.stagger_s,
            "listen_s": self.listen_s,
            "server_bytes": server,
            "peer_bytes": peer,
            "one_listener_bytes": one,
            "server_per_listener": round(server / one, 2) if one else None,
            "offload": round(peer / (peer + server), 4) if peer + server else 0.0,
            "http_fetches_per_chunk": round(fetches / len(self.chunks), 2) if self.chunks else None,
            "chunks": len(self.chunks),
            "stalls": sum(r.stalls for r in self.rows),
            "latency_p50_s": round(percentile(latencies, 50), 2) if latencies else None,
            "latency_p95_s": round(percentile(latencies, 95), 2) if latencies else None,
            "start_offsets": [r.start_offset for r in self.rows],
            "setup_p50_ms": round(percentile(setups, 50), 1) if setups else None,
            "setup_p95_ms": round(percentile(setups, 95), 1) if setups else None,
            "connections": len(setups),
            "outcomes": tally([r.outcomes for r in self.rows]),
            "pairs": tally([r.pairs for r in self.rows]),
            "gateway": self.gateway,
            "edge": self.edge,
            "stalls_at": self.stalls_at,
            "wall_s": round(self.wall_s, 1),
            "rows": [asdict(r) for r in self.rows],
        }


async def run_live_scenario(name: str, workdir: Path, *, listeners: int, stagger: float, seconds: float,
                            firefox_at: int | None) -> LiveScenario:
    """``listeners`` browsers (bridge topology) on a live Icecast station (``bench.world.live_station``),
    joining ``stagger`` s apart, each listening until ``seconds`` after the first joined."""
    from playwright.async_api import async_playwright

    from bench.browser import ErrorLog
    from bench.world import (
        LIVE_OVERRIDES,
        Browser,
        EdgeWatch,
        World,
        listen_live,
        live_station,
        live_window,
        series_sum,
    )

    result = LiveScenario(name, listeners, stagger, seconds)
    began = time.monotonic()
    world = World(workdir, None, count=listeners, **LIVE_OVERRIDES)
    try:
        # The source outlasts the run: joins take longer than the stagger on a busy machine.
        with live_station(world, workdir / "icecast", seconds=seconds + listeners * (stagger + 20) + 120) as (_, tid):
            await asyncio.to_thread(live_window, world.gw, tid, 4)
            async with async_playwright() as pw, Browser(pw, world, workdir, ErrorLog()) as b, \
                    AsyncExitStack() as stack:
                with EdgeWatch(world.gw, tid) as edge:
                    heard = await listen_live(b, stack, tid, count=listeners, stagger=stagger, listen=seconds,
                                              each=False, firefox_at=firefox_at)
            # The players report every ~5 s: the last reports reach the gateway after the end.
            await asyncio.sleep(6)
            metrics = await asyncio.to_thread(world.gw.metrics)
        result.gateway = {"live_server_bytes": series_sum(metrics, "ztream_live_server_bytes_total"),
                          "live_peer_bytes": series_sum(metrics, "ztream_live_peer_bytes_total")}
        for x in heard:
            outcomes, setup_ms, pairs = links(x.info)
            first = x.first_index
            for c in x.chunks:
                result.chunks.setdefault(int(c["index"]), []).append(str(c["source"]))
            result.rows.append(LiveRow(
                browser=x.browser, start_s=x.joined_s, server_bytes=int(x.stats["httpBytes"]),
                peer_bytes=int(x.stats["peerBytes"]), up_bytes=int(x.info.get("upBytes", 0)),
                stalls=int(x.stats["stalls"]), latencies=[round(v, 2) for v in x.latencies],
                start_offset=None if first is None else first - x.edge,
                sources=[str(c["source"]) for c in x.chunks], outcomes=outcomes, setup_ms=setup_ms, pairs=pairs,
                waits=x.waits,
            ))
        result.edge, result.stalls_at = edge_delays(edge, heard)
    finally:
        world.close()
    result.wall_s = time.monotonic() - began
    return result


def edge_delays(edge: Any, heard: list[Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ingest's delays (``bench.world.EdgeWatch``: each chunk's listing after its audio's end at the
    upstream, ``lag``; the upstream's holes, ``gap``), and for each listener's stall the chunk at its
    playhead with its lag and gap: a stall at a chunk listed late is the ingest's (or the source's), one at
    a chunk listed in time is delivery's."""
    chunks = sorted(edge.chunks.values(), key=lambda c: c.index)
    lags = sorted(c.lag for c in chunks)
    gaps = sorted(g for c in chunks if (g := edge.gap_before(c.index)) is not None)
    summary = {
        "chunks": len(chunks), "poll_errors": edge.errors,
        "lag_p50_s": round(percentile(lags, 50), 2) if lags else None,
        "lag_p95_s": round(percentile(lags, 95), 2) if lags else None,
        "lag_max_s": round(lags[-1], 2) if lags else None,
        "gap_max_s": round(gaps[-1], 2) if gaps else None,
        "late_over_1s": sum(1 for x in lags if x > 1.0),
    }
    from bench.world import buffered_ahead

    stalls = []
    for n, x in enumerate(heard):
        for w in x.stalls if x.first_index is not None else []:
            index = edge.at(x.first_index, float(w["t"]) + 0.01)
            rates = [r for r in x.rates if r["unix"] <= w["unix"]]
            c = edge.chunks.get(index)
            got = next((k for k in x.chunks if int(k["index"]) == index), None)
            gap = edge.gap_before(index)
            stalls.append({
                "listener": n, "t": round(float(w["t"]), 2), "ahead_s": round(buffered_ahead(w), 2), "index": index,
                # the playback rate then (the pace rules), and how long before it had changed
                "rate": rates[-1]["rate"] if rates else 1.0,
                "rate_changed_s": round(w["unix"] - rates[-1]["unix"], 2) if rates else None,
                # seconds its chunk had been listed at the gateway when the stall began (< 0: listed after)
                "listed_before_s": None if c is None else round(float(w["unix"]) - c.seen, 2),
                "lag_s": None if c is None else round(c.lag, 2), "gap_s": None if gap is None else round(gap, 2),
                # when the listener got that chunk after the stall began, and from where
                "got_after_s": None if got is None or got.get("unix") is None else round(got["unix"] - w["unix"], 2),
                "source": None if got is None else got["source"],
            })
    return summary, stalls


def print_live(s: LiveScenario) -> None:
    summary = s.summary()
    print(f"\n{s.name} on a live Icecast station (MP3, 1 s chunks): {s.listeners} listeners behind NAT (bridge), "
          f"{s.stagger_s} s apart, each until {s.listen_s:.0f} s after the first joined, shipped defaults")
    print(f"{'#':>2} {'browser':9} {'start s':>7} {'server KB':>9} {'peer KB':>8} {'up KB':>8} {'from peers':>10} "
          f"{'stalls':>6} {'lat p50':>7} {'lat p95':>7} {'start':>5}  {'set-up ms':18} pairs (local/remote)")
    for i, r in enumerate(s.rows):
        lat = sorted(r.latencies)
        p50 = f"{percentile(lat, 50):.2f}" if lat else "-"
        p95 = f"{percentile(lat, 95):.2f}" if lat else "-"
        share = f"{r.sources.count('peer')}/{len(r.sources)}"
        setup = ",".join(f"{ms:.0f}" for ms in r.setup_ms) or "-"
        failed = [o for o in r.outcomes if o in ("failed", "timeout")]
        print(f"{i:>2} {r.browser:9} {r.start_s:7.1f} {r.server_bytes / 1000:9.0f} {r.peer_bytes / 1000:8.0f} "
              f"{r.up_bytes / 1000:8.0f} {share:>10} {r.stalls:6} {p50:>7} {p95:>7} "
              f"{'-' if r.start_offset is None else r.start_offset:>5}  {setup:18} {','.join([*r.pairs, *failed]) or '-'}")
    print(f"server {summary['server_bytes'] / 1000:.0f} KB = {summary['server_per_listener']} x one listener's "
          f"{summary['one_listener_bytes'] / 1000:.0f} KB (goal <= 2.0)   offload {summary['offload']:.1%}   "
          f"HTTP fetches per chunk {summary['http_fetches_per_chunk']} over {summary['chunks']} chunks   "
          f"stalls {summary['stalls']} (goal 0)")
    print(f"live latency p50 {summary['latency_p50_s']} s p95 {summary['latency_p95_s']} s   "
          f"start: first chunk minus the edge at the join {summary['start_offsets']}   "
          f"set-up p50 {summary['setup_p50_ms']} ms p95 {summary['setup_p95_ms']} ms over "
          f"{summary['connections']} connection ends   wall {summary['wall_s']} s")
    pairs = ", ".join(f"{n} x {pair}" for pair, n in summary["pairs"].items()) or "none"
    gw = s.gateway
    e = s.edge
    if e:
        print(f"ingest: {e['chunks']} chunks listed {e['lag_p50_s']} s (p50), {e['lag_p95_s']} s (p95), "
              f"{e['lag_max_s']} s (max) after their audio's end at the upstream ({e['late_over_1s']} over 1 s); "
              f"largest hole in the upstream {e['gap_max_s']} s")
    for st in s.stalls_at:
        print(f"  stall: listener {st['listener']} at {st['t']} s of its timeline, {st['ahead_s']} s buffered ahead, "
              f"rate {st['rate']} (changed {st['rate_changed_s']} s before); its chunk {st['index']} listed at the "
              f"gateway {st['listed_before_s']} s before ({st['lag_s']} s after its audio's end, upstream hole before "
              f"it {st['gap_s']} s), got {st['got_after_s']} s after the stall from {st['source']}")
    print(f"selected pairs: {pairs}; outcomes {summary['outcomes']}; gateway /metrics: live server "
          f"{gw.get('live_server_bytes', 0) / 1000:.0f} KB, live peer {gw.get('live_peer_bytes', 0) / 1000:.0f} KB")


async def run(args: argparse.Namespace) -> list[Scenario] | list[LiveScenario]:
    from bench.harness import make_audio

    plan: list[tuple[str, int | None]] = []
    if args.only in ("both", "chromium"):
        plan.append(("chromium", None))
    if args.only in ("both", "firefox"):
        plan.append(("firefox", args.firefox_at))
    if args.live:
        return await run_live(args, plan)
    out: list[Scenario] = []
    with tempfile.TemporaryDirectory(prefix="ztream-bench-browsers-") as tmp:
        root = Path(tmp)
        library = root / "library"
        library.mkdir()
        make_audio(library / "tone_bench.flac", args.seconds)
        topologies = TOPOLOGIES if args.topology == "all" else (args.topology,)
        for topology in topologies:
            for name, firefox_at in plan:
                workdir = root / f"{topology}-{name}"
                workdir.mkdir()
                scenario = await run_scenario(name, workdir, library, listeners=args.listeners, stagger=args.stagger,
                                              track_seconds=args.seconds, firefox_at=firefox_at, topology=topology)
                print_scenario(scenario)
                out.append(scenario)
    return out


async def run_live(args: argparse.Namespace, plan: list[tuple[str, int | None]]) -> list[LiveScenario]:
    out: list[LiveScenario] = []
    with tempfile.TemporaryDirectory(prefix="ztream-bench-browsers-live-") as tmp:
        for name, firefox_at in plan:
            workdir = Path(tmp) / name
            workdir.mkdir()
            scenario = await run_live_scenario(name, workdir, listeners=args.listeners, stagger=args.stagger,
                                               seconds=args.seconds, firefox_at=firefox_at)
            print_live(scenario)
            out.append(scenario)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ztream bench browsers")
    parser.add_argument("--topology", choices=[*TOPOLOGIES, "all"], default="bridge",
                        help="how the listeners' homes and the gateway are wired (bench/nat.py); all: each in turn")
    parser.add_argument("--listeners", type=int, default=5)
    parser.add_argument("--stagger", type=float, default=3.0, help="seconds between two listeners' starts")
    parser.add_argument("--live", action="store_true",
                        help="a live Icecast station instead of the generated track (bridge topology only)")
    parser.add_argument("--seconds", type=float, default=30.0,
                        help="length of the generated track; --live: how long after the first joined all listen")
    parser.add_argument("--firefox-at", type=int, default=2, help="which listener (0-based) is Firefox")
    parser.add_argument("--only", choices=["both", "chromium", "firefox"], default="both")
    parser.add_argument("--timeout", type=float, default=None,
                        help="bound on the whole run, seconds (default 600 per topology)")
    args = parser.parse_args(argv)
    most = 12 if args.live else 8
    if not 2 <= args.listeners <= most:
        parser.error(f"--listeners must be 2..{most} (one network namespace and browser each)")
    if not 0 <= args.firefox_at < args.listeners:
        parser.error("--firefox-at must name one of the listeners")
    longest = 600 if args.live else 300
    if not 0 < args.stagger <= 30 or not SERVER_LEAD < args.seconds <= longest:
        parser.error(f"--stagger must be in (0, 30] and --seconds in (10, {longest}]")
    if args.live and args.topology != "bridge":
        parser.error("--live runs in the bridge topology only")
    if args.live and args.stagger * (args.listeners - 1) >= args.seconds:
        parser.error("--live: the last listener must join before --seconds")
    if args.timeout is None:
        args.timeout = 600.0 * (len(TOPOLOGIES) if args.topology == "all" else 1)
        if args.live:
            args.timeout = (args.seconds + 20 * args.listeners + 120) * (2 if args.only == "both" else 1)
    try:
        scenarios = asyncio.run(asyncio.wait_for(run(args), args.timeout))
    except TimeoutError:
        print(f"ztream bench browsers: not done within --timeout {args.timeout} s", file=sys.stderr)
        return 1
    print(json.dumps({"bench": "browsers", "live": args.live, "scenarios": [s.summary() for s in scenarios]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
