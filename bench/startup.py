"""Start-up benchmark: play → first `playing` in Chromium, through the embed page.

    .venv/bin/python bench/startup.py [--runs 20] [--gateway URL --track ID] [--json]

Without --gateway it starts its own ``ztream serve`` on a free loopback port
over a generated library, so that nothing leaves the machine. Three cases,
each ``--runs`` times, and the median (p50) printed; nothing is asserted:

- transcode: a track never played before: the gateway transcodes it while
  the player starts (fresh browser storage every run);
- cold: a track the gateway already holds, in a fresh browser context (no
  IndexedDB, no HTTP cache);
- warm: the same browser context again after a first play: the manifest, init
  segment and chunks come from IndexedDB.

The clock is the player's own (`startupSeconds`): from the play request that
``?autoplay=1`` makes as the page's module starts, to the first `playing`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.browser import CHROMIUM_ARGS, chromium_path  # noqa: E402
from bench.harness import Proc, free_port, wait_http  # noqa: E402


def make_library(directory: Path, count: int, seconds: float) -> None:
    from transcode.ffmpeg import find_ffmpeg

    ffmpeg = find_ffmpeg("")
    for i in range(count):
        freq = 220 + 17 * i
        subprocess.run(
            [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi",
             "-i", f"aevalsrc=0.4*sin(2*PI*{freq}*t)*(0.6+0.4*sin(2*PI*0.7*t)):s=44100:d={seconds}",
             "-c:a", "flac", str(directory / f"bench_{i:03d}.flac")],
            check=True, timeout=120,
        )


class Gateway:
    """``ztream serve`` in a subprocess over a temporary library and cache."""

    def __init__(self, workdir: Path, tracks: int, seconds: float) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        library = workdir / "library"
        library.mkdir()
        make_library(library, tracks, seconds)
        self.config = workdir / "ztream.toml"
        self.config.write_text(
            "[server]\n"
            f'host = "127.0.0.1"\nport = {self.port}\n'
            "[cache]\n"
            f'dir = "{workdir / "cache"}"\n'
            "[sources.local]\n"
            f'dirs = ["{library}"]\n'
        )
        self.proc: Proc | None = None

    def start(self) -> None:
        self.proc = Proc(
            [sys.executable, "-m", "gateway.cli", "serve", "--config", str(self.config)],
            self.workdir / "gateway.log",
        )
        wait_http(f"{self.url}/healthz")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


async def startup_once(page: Any, url: str, timeout: float = 30.0) -> float:
    """Load an autoplaying embed page; the player's own start-up time in seconds."""
    await page.goto(url)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        value = await page.evaluate("document.getElementById('player')?.startupSeconds ?? null")
        if value is not None:
            return float(value)
        await asyncio.sleep(0.02)
    raise TimeoutError(f"no start-up within {timeout} s: {url}")


def summary(values: list[float]) -> dict[str, float]:
    ms = sorted(v * 1000 for v in values)
    return {
        "runs": len(ms),
        "p50_ms": statistics.median(ms),
        "p90_ms": ms[min(len(ms) - 1, int(round(0.9 * (len(ms) - 1))))],
        "min_ms": ms[0],
        "max_ms": ms[-1],
    }


async def bench(gateway_url: str, track_ids: list[str], fresh_ids: list[str], runs: int) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    path = chromium_path()
    if path is None:
        raise SystemExit("chromium is not installed")

    def embed(tid: str) -> str:
        return f"{gateway_url}/embed/{tid}?autoplay=1"

    results: dict[str, Any] = {}
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        try:
            if fresh_ids:
                times = []
                for tid in fresh_ids[:runs]:
                    context = await browser.new_context()
                    times.append(await startup_once(await context.new_page(), embed(tid)))
                    await context.close()
                results["transcode"] = summary(times)

            tid = track_ids[0]
            get_json(f"{gateway_url}/v1/tracks/{tid}/manifest")  # the gateway holds it from here on
            context = await browser.new_context()
            await startup_once(await context.new_page(), embed(tid))  # warm-up, untimed
            await context.close()

            times = []
            for _ in range(runs):
                context = await browser.new_context()
                times.append(await startup_once(await context.new_page(), embed(tid)))
                await context.close()
            results["cold"] = summary(times)

            context = await browser.new_context()
            page = await context.new_page()
            await startup_once(page, embed(tid))
            # everything in IndexedDB before the warm runs
            for _ in range(300):
                done = await page.evaluate(
                    """async () => {
                        const p = document.getElementById('player');
                        const m = p.manifest;
                        if (!m || !m.complete) return false;
                        const { sharedCache } = await import('/client/cache.js');
                        const c = await sharedCache();
                        return c.has(m.id, m.rendition, 'init') && c.indices(m.id, m.rendition).length === m.chunks.length;
                    }"""
                )
                if done:
                    break
                await asyncio.sleep(0.05)
            times = []
            for _ in range(runs):
                times.append(await startup_once(page, embed(tid)))
            results["warm"] = summary(times)
            await context.close()
        finally:
            await browser.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--gateway", help="an already running gateway (default: start one)")
    parser.add_argument("--track", help="with --gateway: the track id to play")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the generated tracks")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    gateway: Gateway | None = None
    tmp = None
    try:
        if args.gateway:
            url = args.gateway.rstrip("/")
            ids = [args.track] if args.track else [t["id"] for t in get_json(f"{url}/v1/tracks")["tracks"]]
            fresh: list[str] = []
        else:
            tmp = tempfile.TemporaryDirectory(prefix="ztream-bench-")
            gateway = Gateway(Path(tmp.name), tracks=args.runs + 1, seconds=args.seconds)
            gateway.start()
            url = gateway.url
            ids = [t["id"] for t in get_json(f"{url}/v1/tracks")["tracks"]]
            fresh = ids[1:]
        results = asyncio.run(bench(url, ids, fresh, args.runs))
    finally:
        if gateway is not None:
            gateway.stop()
        if tmp is not None:
            tmp.cleanup()

    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"start-up, play → playing, Chromium headless ({args.runs} runs each)")
    print(f"{'case':<10} {'p50 ms':>8} {'p90 ms':>8} {'min ms':>8} {'max ms':>8}")
    for case, s in results.items():
        print(f"{case:<10} {s['p50_ms']:8.0f} {s['p90_ms']:8.0f} {s['min_ms']:8.0f} {s['max_ms']:8.0f}")


if __name__ == "__main__":
    main()
