"""``ztream bench transcode``: the core data path against same-run baselines.

Prints three figures, each with its baseline measured in the same run:

1. a whole transcode through the gateway (URL upstream on loopback -> ffmpeg ->
   splitter -> store) vs raw ffmpeg with the same binary and argv over a pipe;
2. time to the first chunk of a cold 10-minute URL track;
3. cached chunk requests/s (wrk, keep-alive) vs a bare aiohttp handler that
   returns the same bytes.

``--rendition fmp4-opus|fmp4-aac`` measures an fMP4 rendition instead of
the WebM default: the gateway is asked with ``?rendition=``, raw ffmpeg runs
that rendition's argv (the same format), and its first fragment's time is
measured too (raw ffmpeg to the first complete chunk out of its pipe).

Everything runs on loopback. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time

from transcode.ebml import ClusterSplitter, InitSegment
from transcode.ffmpeg import DEFAULT_RENDITION, RENDITIONS, Rendition, find_ffmpeg, make_rendition
from transcode.fmp4 import FragmentSplitter

from .harness import (
    UPSTREAM_SERVER,
    Proc,
    free_port,
    get,
    start_gateway,
    wait_http,
    workspace,
)

BARE_SERVER = r"""
import sys
from aiohttp import web
data = open(sys.argv[1], "rb").read()
async def handler(request):
    return web.Response(body=data, content_type="audio/webm")
app = web.Application()
app.router.add_get("/chunk", handler)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[2]), print=None, access_log=None)
"""

def wrk(url: str, seconds: int, conns: int) -> float:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", url],
        capture_output=True, text=True, check=True,
    ).stdout
    for line in out.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    raise RuntimeError(out)


def raw_first_chunk(rendition: Rendition, source: bytes) -> float:
    """Seconds from starting raw ffmpeg (the rendition's argv, over pipes) to its first complete chunk."""
    splitter = FragmentSplitter() if rendition.container == "fmp4" else ClusterSplitter()
    t0 = time.perf_counter()
    proc = subprocess.Popen(list(rendition.argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    assert proc.stdin is not None and proc.stdout is not None
    stdin = proc.stdin

    def feed() -> None:
        try:
            stdin.write(source)
            stdin.close()
        except BrokenPipeError:
            pass

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        while data := os.read(proc.stdout.fileno(), 65536):
            if any(not isinstance(e, InitSegment) for e in splitter.feed(data)):
                return time.perf_counter() - t0
        raise RuntimeError("raw ffmpeg wrote no chunk")
    finally:
        proc.kill()
        proc.wait()
        feeder.join(5)
        proc.stdout.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ztream bench transcode")
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the generated track")
    parser.add_argument("--runs", type=int, default=3, help="repetitions of each timing")
    parser.add_argument("--seconds", type=int, default=8, help="duration of each wrk run")
    parser.add_argument("--json", action="store_true", help="also print one JSON line")
    parser.add_argument("--rendition", choices=list(RENDITIONS), default=DEFAULT_RENDITION,
                        help="the rendition measured (docs/http.md, Renditions)")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("ztream bench: needs wrk (apt-get install wrk)", file=sys.stderr)
        return 2
    binary = find_ffmpeg("")
    rendition = make_rendition(binary, bitrate=96000, chunk_seconds=2.0, kind=args.rendition)
    query = "" if args.rendition == DEFAULT_RENDITION else f"?rendition={args.rendition}"
    with workspace("ztream-bench-") as (work, procs):
        track = work / "files" / "track.mp3"
        track.parent.mkdir()
        seconds = int(args.minutes * 60)
        subprocess.run(
            [binary, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
             f"aevalsrc=0.3*sin(2*PI*(220+40*sin(t))*t)|0.3*sin(2*PI*330*t):s=44100:d={seconds}",
             "-c:a", "libmp3lame", "-b:a", "192k", str(track)],
            check=True,
        )
        source = track.read_bytes()
        up_port = free_port()
        procs.append(Proc([sys.executable, "-c", UPSTREAM_SERVER, str(track.parent), str(up_port)], work / "up.log"))
        wait_http(f"http://127.0.0.1:{up_port}/files/track.mp3")

        # 1. whole transcode: gateway vs raw ffmpeg
        raw, through = [], []
        for run in range(args.runs):
            t0 = time.perf_counter()
            subprocess.run(list(rendition.argv), input=source, capture_output=True, check=True)
            raw.append(time.perf_counter() - t0)
            gw, url = start_gateway(work, up_port, f"whole{run}")
            procs.append(gw)
            body = json.dumps({"url": f"http://127.0.0.1:{up_port}/files/track.mp3"}).encode()
            tid = json.loads(get(url + "/v1/tracks", body))["id"]
            t0 = time.perf_counter()
            while not json.loads(get(f"{url}/v1/tracks/{tid}/manifest{query}"))["complete"]:
                time.sleep(0.01)
            through.append(time.perf_counter() - t0)
            gw.stop()

        # 2. first chunk of a cold track
        first, raw_first = [], []
        for run in range(args.runs * 3):
            raw_first.append(raw_first_chunk(rendition, source))
            gw, url = start_gateway(work, up_port, f"cold{run}")
            procs.append(gw)
            body = json.dumps({"url": f"http://127.0.0.1:{up_port}/files/track.mp3"}).encode()
            tid = json.loads(get(url + "/v1/tracks", body))["id"]
            t0 = time.perf_counter()
            get(f"{url}/v1/tracks/{tid}/chunks/0{query}")
            first.append(time.perf_counter() - t0)
            gw.stop()

        # 3. cached chunk requests/s vs a bare aiohttp handler
        gw, url = start_gateway(work, up_port, "warm")
        procs.append(gw)
        body = json.dumps({"url": f"http://127.0.0.1:{up_port}/files/track.mp3"}).encode()
        tid = json.loads(get(url + "/v1/tracks", body))["id"]
        while not json.loads(get(f"{url}/v1/tracks/{tid}/manifest{query}"))["complete"]:
            time.sleep(0.05)
        chunk = get(f"{url}/v1/tracks/{tid}/chunks/10{query}")
        (work / "chunk.bin").write_bytes(chunk)
        bare_port = free_port()
        bare = Proc([sys.executable, "-c", BARE_SERVER, str(work / "chunk.bin"), str(bare_port)], work / "bare.log")
        procs.append(bare)
        wait_http(f"http://127.0.0.1:{bare_port}/chunk")
        gw_rps, bare_rps = [], []
        for _ in range(2):  # interleaved, so drift hits both
            bare_rps.append(wrk(f"http://127.0.0.1:{bare_port}/chunk", args.seconds, 16))
            gw_rps.append(wrk(f"{url}/v1/tracks/{tid}/chunks/10{query}", args.seconds, 16))

        med_raw, med_through = statistics.median(raw), statistics.median(through)
        result = {
            "track_seconds": seconds,
            "rendition": args.rendition,
            "raw_ffmpeg_s": round(med_raw, 3),
            "gateway_transcode_s": round(med_through, 3),
            "transcode_ratio": round(med_through / med_raw, 3),
            "first_chunk_p50_ms": round(statistics.median(first) * 1000, 1),
            "first_chunk_max_ms": round(max(first) * 1000, 1),
            "raw_first_chunk_p50_ms": round(statistics.median(raw_first) * 1000, 1),
            "chunk_bytes": len(chunk),
            "gateway_rps": round(max(gw_rps)),
            "bare_aiohttp_rps": round(max(bare_rps)),
            "rps_ratio": round(max(gw_rps) / max(bare_rps), 3),
        }
        print(f"track: {seconds} s mp3 192k, rendition {args.rendition} {rendition.id} "
              f"({rendition.mime}; {rendition.version.split(' Copyright')[0]})")
        print(f"whole transcode   gateway {med_through:7.3f} s   raw ffmpeg {med_raw:7.3f} s   "
              f"ratio {result['transcode_ratio']:.3f} (goal <= 1.1)")
        print(f"cold first chunk  p50 {result['first_chunk_p50_ms']:.1f} ms   max {result['first_chunk_max_ms']:.1f} ms"
              f"   raw ffmpeg p50 {result['raw_first_chunk_p50_ms']:.1f} ms   (goal <= 300 ms; fMP4 <= 100 ms)")
        print(f"cached chunk      gateway {result['gateway_rps']} req/s   bare aiohttp {result['bare_aiohttp_rps']} req/s"
              f"   ratio {result['rps_ratio']:.3f} (goal >= 0.9)   [{len(chunk)} B chunk, wrk -c16]")
        if args.json:
            print(json.dumps(result))
        return 0


if __name__ == "__main__":
    sys.exit(main())
