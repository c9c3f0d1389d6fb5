"""``ztream bench abuse``: attacks, each for a bounded time, against a gateway, and
what a legitimate listener measured meanwhile.

Starts a gateway subprocess on loopback (a small generated library, TURN
configured with a dummy server so that credentials are minted), then, for
each attack in turn, runs it for ``--seconds`` while a legitimate client
(from another loopback address) measures:

- time to first chunk: the manifest and chunk 0 of a library track (cached
  after the first run, so this is the gateway's latency under load);
- ``/healthz`` latency, p50 and p99, polled every 50 ms;
- the gateway's resident memory (RSS) before and after.

The same figures with no attack come first: the quiet baseline. Attacks come
from their own loopback addresses (127.0.<n>.x: Linux answers the whole
127/8 on ``lo``), so a per-client rule sees one client, and the tracker's
address groups (/24) tell them apart from the honest holders:

- ``sockets``: control sockets opened as fast as they come, held open;
- ``turn``: sockets asking for TURN credentials in a loop (granted vs refused);
- ``stats``: forged ``stats`` (2^30 bytes each, 1,000 srflx connections):
  how far ``ztream_peer_bytes_total`` moved;
- ``poison``: 5 sockets of one address claiming ``complete`` for a track
  beside 3 honest holders; a listener's ``want`` answers, counted for honest
  holders (goal: at least 2 in every answer);
- ``slowloris``: connections that send a partial request line and trickle.

Goal (issue 26): every legitimate figure within 2x of the quiet baseline, RSS
growth under 100 MB. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness import GatewayProcess, make_audio

__all__ = ["main", "ATTACKS"]

LEGIT = "127.0.9.1"
MAX_REPORT = 1 << 30


def _rss(pid: int) -> int:
    """Resident bytes of ``pid`` (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _session(address: str, limit: int = 100) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0), limit=limit))


async def _metric(url: str, name: str) -> float:
    async with _session(LEGIT) as s, s.get(f"{url}/metrics") as r:
        text = await r.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


class Legit:
    """The legitimate listener's measurements over one window."""

    def __init__(self, url: str, track: str) -> None:
        self.url = url
        self.track = track
        self.healthz: list[float] = []
        self.first_chunk: list[float] = []
        self.failures = 0

    async def run(self, stop: asyncio.Event) -> None:
        async with _session(LEGIT) as s:
            async def chunks() -> None:
                while not stop.is_set():
                    started = time.monotonic()
                    try:
                        async with s.get(f"{self.url}/v1/tracks/{self.track}/manifest") as r:
                            await r.read()
                        async with s.get(f"{self.url}/v1/tracks/{self.track}/chunks/0") as r:
                            await r.read()
                            ok = r.status == 200
                    except (aiohttp.ClientError, TimeoutError):
                        ok = False
                    if ok:
                        self.first_chunk.append(time.monotonic() - started)
                    else:
                        self.failures += 1
                    await asyncio.sleep(0.5)

            async def health() -> None:
                while not stop.is_set():
                    started = time.monotonic()
                    try:
                        async with s.get(f"{self.url}/healthz") as r:
                            await r.read()
                        self.healthz.append(time.monotonic() - started)
                    except (aiohttp.ClientError, TimeoutError):
                        self.failures += 1
                    await asyncio.sleep(0.05)

            await asyncio.gather(chunks(), health())

    def row(self) -> dict[str, Any]:
        h = sorted(self.healthz)

        def ms(values: list[float], q: float) -> float | None:
            return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 1) if values else None

        return {
            "first_chunk_ms": round(statistics.median(self.first_chunk) * 1000, 1) if self.first_chunk else None,
            "healthz_p50_ms": ms(h, 0.5),
            "healthz_p99_ms": ms(h, 0.99),
            "legit_failures": self.failures,
        }


# -- attacks: each runs until ``stop`` and returns what it wants printed --------------


async def attack_quiet(url: str, stop: asyncio.Event) -> dict[str, Any]:
    await stop.wait()
    return {}


async def attack_sockets(url: str, stop: asyncio.Event) -> dict[str, Any]:
    opened = refused = 0
    held: list[aiohttp.ClientWebSocketResponse] = []
    async with _session("127.0.1.1", limit=0) as s:
        while not stop.is_set() and opened < 5000:
            try:
                held.append(await s.ws_connect(f"{url}/v1/ws", timeout=aiohttp.ClientWSTimeout(ws_close=1)))
                opened += 1
            except (aiohttp.ClientError, TimeoutError, OSError):
                refused += 1
                await asyncio.sleep(0.01)
        await stop.wait()
        for ws in held:
            with contextlib.suppress(Exception):
                await ws.close()
    return {"sockets_opened": opened, "sockets_refused": refused}


async def attack_turn(url: str, stop: asyncio.Event) -> dict[str, Any]:
    granted = refused = closed = 0
    async with _session("127.0.2.1", limit=0) as s:
        sockets = [await s.ws_connect(f"{url}/v1/ws") for _ in range(20)]
        for ws in sockets:
            await ws.receive_json()  # welcome
        while not stop.is_set():
            for ws in sockets:
                if ws.closed:
                    continue
                try:
                    await ws.send_str('{"type":"turn"}')
                    answer = await ws.receive(timeout=5)
                except (aiohttp.ClientError, ConnectionError, TimeoutError):
                    answer = None
                if answer is None or answer.type != aiohttp.WSMsgType.TEXT:
                    closed += 1  # out of strikes: the gateway closed it (1008)
                    await ws.close()
                    continue
                body = json.loads(answer.data)
                granted += body.get("type") == "turn"
                refused += body.get("error") == "rate_limited"
            await asyncio.sleep(0.05)
        for ws in sockets:
            await ws.close()
    return {"turn_granted": granted, "turn_refused": refused, "sockets_closed": closed}


async def attack_stats(url: str, stop: asyncio.Event) -> dict[str, Any]:
    before = await _metric(url, "ztream_peer_bytes_total")
    sent = 0
    forged = json.dumps({"type": "stats", "p2p_down_bytes": MAX_REPORT, "connections": {"srflx": 1000}})
    async with _session("127.0.3.1", limit=0) as s:
        sockets = [await s.ws_connect(f"{url}/v1/ws") for _ in range(4)]
        while not stop.is_set():
            for ws in sockets:
                if not ws.closed:
                    await ws.send_str(forged)
                    sent += 1
            await asyncio.sleep(0.5)
        for ws in sockets:
            await ws.close()
    await asyncio.sleep(0.2)
    moved = await _metric(url, "ztream_peer_bytes_total") - before
    return {"forged_reports": sent, "forged_bytes": sent * MAX_REPORT, "peer_bytes_moved": int(moved)}


async def attack_poison(url: str, stop: asyncio.Event) -> dict[str, Any]:
    track, rendition = "poisoned", "r"
    holding = json.dumps({"type": "have", "track": track, "rendition": rendition, "chunks": list(range(10))})
    lie = json.dumps({"type": "have", "track": track, "rendition": rendition, "complete": True})
    want = json.dumps({"type": "want", "track": track, "rendition": rendition, "chunks": [3]})
    honest_ids: set[str] = set()
    per_answer: list[int] = []
    async with contextlib.AsyncExitStack() as stack:
        honest_sockets = []
        for i in range(3):
            s = await stack.enter_async_context(_session(f"127.0.{10 + i}.1"))
            ws = await s.ws_connect(f"{url}/v1/ws")
            honest_ids.add((await ws.receive_json())["peer_id"])
            await ws.send_str(holding)
            honest_sockets.append(ws)
        liars_session = await stack.enter_async_context(_session("127.0.4.1", limit=0))
        liars = []
        for _ in range(5):
            ws = await liars_session.ws_connect(f"{url}/v1/ws")
            await ws.receive_json()
            await ws.send_str(lie)
            liars.append(ws)
        asker_session = await stack.enter_async_context(_session("127.0.5.1"))
        asker = await asker_session.ws_connect(f"{url}/v1/ws")
        await asker.receive_json()
        while not stop.is_set():
            for ws in liars:  # keep themselves the most recently seen
                await ws.send_str('{"type":"ping"}')
            await asker.send_str(want)
            while (body := await asker.receive_json()).get("type") != "peers":
                pass
            per_answer.append(sum(1 for p in body["peers"] if p["peer_id"] in honest_ids))
            for ws in liars:
                with contextlib.suppress(TimeoutError):
                    await ws.receive(timeout=0.01)  # their pongs
            await asyncio.sleep(0.2)
        for ws in [*honest_sockets, *liars, asker]:
            await ws.close()
    return {"answers": len(per_answer), "honest_min": min(per_answer, default=0),
            "honest_mean": round(statistics.mean(per_answer), 2) if per_answer else 0}


async def attack_slowloris(url: str, stop: asyncio.Event) -> dict[str, Any]:
    host, port = url.removeprefix("http://").split(":")
    writers: list[asyncio.StreamWriter] = []
    closed = 0
    for _ in range(200):
        try:
            _reader, writer = await asyncio.open_connection(host, int(port), local_addr=("127.0.6.1", 0))
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            writers.append(writer)
        except OSError:
            closed += 1
    while not stop.is_set():
        for w in writers:
            if not w.is_closing():
                w.write(b"X-a: b\r\n")
        await asyncio.sleep(1)
    still_open = sum(1 for w in writers if not w.is_closing() and not w.transport.is_closing())
    for w in writers:
        w.close()
    return {"slowloris_opened": len(writers), "refused": closed, "still_open_at_end": still_open}


ATTACKS: dict[str, Callable[[str, asyncio.Event], Coroutine[Any, Any, dict[str, Any]]]] = {
    "quiet": attack_quiet,
    "sockets": attack_sockets,
    "turn": attack_turn,
    "stats": attack_stats,
    "poison": attack_poison,
    "slowloris": attack_slowloris,
}


async def run_attack(url: str, track: str, pid: int, name: str, seconds: float) -> dict[str, Any]:
    stop = asyncio.Event()
    legit = Legit(url, track)
    rss_before = _rss(pid)
    legit_task = asyncio.create_task(legit.run(stop))
    attack_task = asyncio.create_task(ATTACKS[name](url, stop))
    await asyncio.sleep(seconds)
    stop.set()
    try:
        extra = await asyncio.wait_for(attack_task, 30)
    except Exception as exc:  # an attack that broke still leaves its window measured
        extra = {"attack_error": repr(exc)[:120]}
    await asyncio.wait_for(legit_task, 30)
    return {"attack": name, **legit.row(), "rss_mb": round(_rss(pid) / 1e6, 1),
            "rss_growth_mb": round((_rss(pid) - rss_before) / 1e6, 1), **extra}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ztream bench abuse")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long each attack runs")
    parser.add_argument("--attacks", default=",".join(a for a in ATTACKS if a != "quiet"),
                        help=f"comma-separated, among {', '.join(a for a in ATTACKS if a != 'quiet')}")
    parser.add_argument("--json", action="store_true", help="also print one JSON line per attack")
    args = parser.parse_args(argv)
    chosen = [a.strip() for a in args.attacks.split(",") if a.strip()]
    unknown = [a for a in chosen if a not in ATTACKS]
    if unknown:
        parser.error(f"unknown attacks: {', '.join(unknown)}")
    with tempfile.TemporaryDirectory(prefix="ztream-abuse-") as tmp:
        work = Path(tmp)
        (work / "library").mkdir()
        make_audio(work / "library" / "legit.flac", 20, freq=330)
        gw = GatewayProcess(work, work / "library", {
            "p2p": {"stun_port": 0},
            "p2p.turn": {"urls": ["turn:127.0.0.1:3478?transport=udp"], "secret": "abuse-bench"},
        })
        gw.start()
        try:
            assert gw.proc is not None
            track = gw.library_ids[0]
            rows = asyncio.run(_run_all(gw.url, track, gw.proc.pid, ["quiet", *chosen], args.seconds))
        finally:
            gw.stop()
    base = rows[0]
    print(f"{'attack':10} {'1st chunk ms':>12} {'healthz p50':>11} {'p99':>7} {'fails':>5} {'RSS MB':>7} "
          f"{'+MB':>6}  what the attack saw")
    for row in rows:
        seen = {k: v for k, v in row.items() if k not in (
            "attack", "first_chunk_ms", "healthz_p50_ms", "healthz_p99_ms", "legit_failures", "rss_mb", "rss_growth_mb")}
        print(f"{row['attack']:10} {row['first_chunk_ms'] or '-':>12} {row['healthz_p50_ms'] or '-':>11} "
              f"{row['healthz_p99_ms'] or '-':>7} {row['legit_failures']:>5} {row['rss_mb']:>7} "
              f"{row['rss_growth_mb']:>6}  {json.dumps(seen)}")
    print("goal: every legitimate figure within 2x of 'quiet', RSS growth under 100 MB")
    for row in rows[1:]:
        worse = [k for k in ("first_chunk_ms", "healthz_p50_ms", "healthz_p99_ms")
                 if row[k] is not None and base[k] and row[k] > 2 * base[k]]
        if worse:
            print(f"  {row['attack']}: over 2x the quiet baseline: {', '.join(worse)}")
    if args.json:
        for row in rows:
            print(json.dumps(row))
    return 0


async def _run_all(url: str, track: str, pid: int, names: list[str], seconds: float) -> list[dict[str, Any]]:
    # The first chunk is cached before the baseline, so every window measures the same thing.
    async with _session(LEGIT) as s:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            async with s.get(f"{url}/v1/tracks/{track}/manifest") as r:
                if r.status == 200 and (await r.json()).get("complete"):
                    break
            await asyncio.sleep(0.2)
    return [await run_attack(url, track, pid, name, seconds) for name in names]


if __name__ == "__main__":
    sys.exit(main())
