"""``python -m bench.media``: what the extras (seeking inputs, tags, artwork, waveform, loudness) cost, against same-run baselines.

Prints two figures, each with its baseline measured in the same run:

1. a whole transcode (real runner, real ffmpeg) with the extras (tags,
   loudness and waveform outputs, analysis process) against without, runs
   alternated, medians compared (goal: ratio <= 1.05). The analysis runs in
   its own ffmpeg, in parallel: the ratio depends on a second core being
   free, so the CPU time of both is printed too.
2. time to the first chunk of a ``moov``-at-end AAC file from a Range-capable
   loopback upstream (probe, one Range request for the moov, then streaming)
   against the same audio as faststart (goal: <= 2x); the spooled path of a
   no-Range upstream is printed for comparison.

Everything runs on loopback; the figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from transcode.analysis import MediaAnalysis
from transcode.ebml import Cluster
from transcode.ffmpeg import Rendition, find_ffmpeg, make_rendition
from transcode.runner import transcode
from transcode.seekable import prepare_input


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def _file_chunks(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 65536):
        yield data[i : i + 65536]


async def _timed_transcode(rendition: Rendition, data: bytes) -> tuple[float, float]:
    """(wall seconds, child CPU seconds) of one whole transcode."""
    cpu0 = _children_cpu()
    t0 = time.perf_counter()
    analysis = MediaAnalysis() if rendition.extras else None
    async for _ in transcode(rendition, _file_chunks(data), timeout=600, analysis=analysis):
        pass
    return time.perf_counter() - t0, _children_cpu() - cpu0


async def _first_chunk(client: httpx.AsyncClient, url: str, rendition: Rendition, ranged: bool) -> tuple[float, str]:
    t0 = time.perf_counter()

    async def body() -> AsyncIterator[bytes]:
        async with client.stream("GET", url) as response:
            response.raise_for_status()
            async for piece in response.aiter_bytes():
                yield piece

    async def fetch_tail(offset: int) -> bytes:
        response = await client.get(url, headers={"Range": f"bytes={offset}-"})
        if response.status_code != 206:
            raise ValueError("no Range support")
        return response.content

    async with prepare_input(body(), max_bytes=500_000_000, fetch_tail=fetch_tail if ranged else None) as prepared:
        gen = transcode(rendition, prepared.stream, input_path=prepared.path, input_format=prepared.input_format,
                        timeout=600)
        try:
            async for event in gen:
                if isinstance(event, Cluster):
                    return time.perf_counter() - t0, prepared.mode
        finally:
            await gen.aclose()
    raise RuntimeError("no chunk")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    binary = find_ffmpeg("")
    plain = make_rendition(binary, bitrate=96000, chunk_seconds=2.0)
    extras = make_rendition(binary, bitrate=96000, chunk_seconds=2.0, extras=True)
    work = Path(tempfile.mkdtemp(prefix="ztream-bench-media-"))
    seconds = int(args.minutes * 60)
    source = ["-f", "lavfi", "-i",
              f"aevalsrc=0.3*sin(2*PI*(220+40*sin(t))*t)|0.3*sin(2*PI*330*t):s=44100:d={seconds}"]

    def ff(*more: str) -> None:
        subprocess.run([binary, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *source, *more], check=True)

    mp3 = work / "track.mp3"
    ff("-c:a", "libmp3lame", "-b:a", "192k", str(mp3))
    ff("-c:a", "aac", "-b:a", "160k", str(work / "moov_end.m4a"))
    ff("-c:a", "aac", "-b:a", "160k", "-movflags", "+faststart", str(work / "faststart.m4a"))
    data = mp3.read_bytes()

    walls: dict[str, list[float]] = {"plain": [], "extras": []}
    cpus: dict[str, list[float]] = {"plain": [], "extras": []}
    await _timed_transcode(plain, data[: len(data) // 10])  # warm the page cache and the binary
    for _ in range(args.runs):
        for name, rendition in (("plain", plain), ("extras", extras)):
            wall, cpu = await _timed_transcode(rendition, data)
            walls[name].append(wall)
            cpus[name].append(cpu)

    async def serve(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(work / request.match_info["name"])

    app = web.Application()
    app.router.add_get("/{name}", serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    first: dict[str, list[float]] = {"faststart": [], "moov_end_range": [], "moov_end_spool": []}
    modes: dict[str, str] = {}
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(args.runs):
                for key, name, ranged in (("faststart", "faststart.m4a", True),
                                          ("moov_end_range", "moov_end.m4a", True),
                                          ("moov_end_spool", "moov_end.m4a", False)):
                    latency, mode = await _first_chunk(client, f"http://127.0.0.1:{port}/{name}", plain, ranged)
                    first[key].append(latency)
                    modes[key] = mode
    finally:
        await runner.cleanup()
        for path in work.iterdir():
            path.unlink()
        work.rmdir()

    med = {k: statistics.median(v) for k, v in walls.items()}
    lat = {k: statistics.median(v) for k, v in first.items()}
    return {
        "track_seconds": seconds,
        "runs": args.runs,
        "transcode_seconds": {k: round(v, 3) for k, v in med.items()},
        "transcode_cpu_seconds": {k: round(statistics.median(v), 3) for k, v in cpus.items()},
        "extras_ratio": round(med["extras"] / med["plain"], 3),
        "first_chunk_seconds": {k: round(v, 4) for k, v in lat.items()},
        "modes": modes,
        "range_vs_faststart": round(lat["moov_end_range"] / lat["faststart"], 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.media")
    parser.add_argument("--minutes", type=float, default=5.0, help="length of the generated tracks")
    parser.add_argument("--runs", type=int, default=3, help="repetitions of each timing")
    parser.add_argument("--json", action="store_true", help="also print one JSON line")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    t, c = result["transcode_seconds"], result["transcode_cpu_seconds"]
    f = result["first_chunk_seconds"]
    print(f"transcode of {result['track_seconds']} s MP3, median of {result['runs']}:")
    print(f"  without extras   {t['plain']:7.3f} s wall  {c['plain']:7.3f} s CPU")
    print(f"  with extras      {t['extras']:7.3f} s wall  {c['extras']:7.3f} s CPU (both ffmpeg processes)")
    print(f"  ratio            {result['extras_ratio']:7.3f}   (goal <= 1.05)")
    print("first chunk, loopback upstream:")
    print(f"  faststart AAC            {f['faststart'] * 1000:8.1f} ms  ({result['modes']['faststart']})")
    print(f"  moov-at-end AAC, Range   {f['moov_end_range'] * 1000:8.1f} ms  ({result['modes']['moov_end_range']})"
          f"  = {result['range_vs_faststart']}x faststart (goal <= 2x)")
    print(f"  moov-at-end AAC, spool   {f['moov_end_spool'] * 1000:8.1f} ms  ({result['modes']['moov_end_spool']})")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
