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

Then one JSON line ``{"bench": "browsers", "scenarios": [...]}``. Every byte
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
        outcomes: dict[str, int] = {}
        pairs: dict[str, int] = {}
        scopes = {scope: 0 for scope in SCOPES}
        for r in self.rows:
            for o in r.outcomes:
                outcomes[o] = outcomes.get(o, 0) + 1
            for pair in r.pairs:
                pairs[pair] = pairs.get(pair, 0) + 1
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
            "pairs": dict(sorted(pairs.items())),
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
                connected = [o for o in info["outcomes"] if o["outcome"] not in ("failed", "timeout")]
                scopes = {scope: 0 for scope in SCOPES}
                for c in chunks:
                    if c["source"] == "peer":
                        scopes[scope_of(str(c["peer"]), info["peerId"], networks, lans)] += int(c["bytes"])
                result.rows.append(Row(
                    browser=kind, start_s=round(start, 2), server_bytes=int(stats["httpBytes"]),
                    peer_bytes=int(stats["peerBytes"]), up_bytes=int(info["upBytes"]), stalls=int(stats["stalls"]),
                    outcomes=[o["outcome"] for o in info["outcomes"]],
                    setup_ms=[round(1000 * float(o["seconds"]), 1) for o in connected],
                    pairs=[f"{o.get('local')}/{o.get('remote')}" for o in connected],
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


async def run(args: argparse.Namespace) -> list[Scenario]:
    from bench.harness import make_audio

    out: list[Scenario] = []
    with tempfile.TemporaryDirectory(prefix="ztream-bench-browsers-") as tmp:
        root = Path(tmp)
        library = root / "library"
        library.mkdir()
        make_audio(library / "tone_bench.flac", args.seconds)
        plan: list[tuple[str, int | None]] = []
        if args.only in ("both", "chromium"):
            plan.append(("chromium", None))
        if args.only in ("both", "firefox"):
            plan.append(("firefox", args.firefox_at))
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ztream bench browsers")
    parser.add_argument("--topology", choices=[*TOPOLOGIES, "all"], default="bridge",
                        help="how the listeners' homes and the gateway are wired (bench/nat.py); all: each in turn")
    parser.add_argument("--listeners", type=int, default=5)
    parser.add_argument("--stagger", type=float, default=3.0, help="seconds between two listeners' starts")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the generated track")
    parser.add_argument("--firefox-at", type=int, default=2, help="which listener (0-based) is Firefox")
    parser.add_argument("--only", choices=["both", "chromium", "firefox"], default="both")
    parser.add_argument("--timeout", type=float, default=None,
                        help="bound on the whole run, seconds (default 600 per topology)")
    args = parser.parse_args(argv)
    if not 2 <= args.listeners <= 8:
        parser.error("--listeners must be 2..8 (one network namespace and browser each)")
    if not 0 <= args.firefox_at < args.listeners:
        parser.error("--firefox-at must name one of the listeners")
    if not 0 < args.stagger <= 30 or not SERVER_LEAD < args.seconds <= 300:
        parser.error("--stagger must be in (0, 30] and --seconds in (10, 300]")
    if args.timeout is None:
        args.timeout = 600.0 * (len(TOPOLOGIES) if args.topology == "all" else 1)
    try:
        scenarios = asyncio.run(asyncio.wait_for(run(args), args.timeout))
    except TimeoutError:
        print(f"ztream bench browsers: not done within --timeout {args.timeout} s", file=sys.stderr)
        return 1
    print(json.dumps({"bench": "browsers", "scenarios": [s.summary() for s in scenarios]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
