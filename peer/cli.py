"""``ztream peer URL``: one headless peer from the command line.

``URL`` is the gateway (``http://127.0.0.1:8000``, then ``--track`` or the
first track it lists) or a track's address on it (``.../v1/tracks/ID``,
``.../embed/ID``). The peer plays the track against a virtual clock (real
time, or ``--speed`` times faster), seeds what it holds while it plays and,
by default, afterwards until interrupted (``--linger S`` to leave S seconds
after the end). A live track (docs/live.md) it follows at the edge, in real
time, until interrupted or for ``--live-seconds``. It prints a line of
progress every few seconds and a report at the end (one JSON line with
``--json``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import re
import signal
import sys
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:  # aiortc is imported when a peer runs, not to print --help
    from .node import PeerNode
    from .report import PeerReport

__all__ = ["main", "run", "add_arguments", "split_url"]

_TRACK_PATH = re.compile(r"^(?P<base>.*?)/(?:v1/tracks|embed)/(?P<id>[A-Za-z0-9._~:-]+)")


def split_url(url: str) -> tuple[str, str | None]:
    """``(gateway base URL, track id or None)`` from a gateway or track URL."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {url!r}")
    base = f"{parts.scheme}://{parts.netloc}"
    m = _TRACK_PATH.match(parts.path)
    if m:
        return base + m.group("base"), m.group("id")
    return base + parts.path.rstrip("/"), None


def _first_track(base: str) -> str:
    with urllib.request.urlopen(f"{base}/v1/tracks", timeout=10) as r:
        tracks = json.load(r)["tracks"]
    if not tracks:
        raise ValueError(f"{base} lists no tracks; pass --track ID")
    return str(tracks[0]["id"])


async def _progress(node: PeerNode, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        r = node.report
        p = node.playing.playback
        state, where = p.state.value, f"{p.position:7.1f} s"
        if node.live is not None:  # a live track: its state and latency instead of a position
            latency = node.live.latency
            state, where = node.live.state.value, "live " + ("   -  " if latency is None else f"{latency:4.1f} s")
        print(f"[{node.peer_id[:8]}] {state:8} {where}   server {r.chunks_server:4d} "
              f"peers {r.chunks_peer:4d} cache {r.chunks_cache:4d}   up {r.p2p_up_bytes / 1000:8.0f} KB   "
              f"neighbours {sum(1 for n in node.neighbours.values() if n.open)}   stalls {r.stalls}",
              flush=True)


async def _run(node: PeerNode, every: float) -> PeerReport:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, node.stop)
    progress = asyncio.create_task(_progress(node, every)) if every > 0 else None
    try:
        return await node.run()
    finally:
        if progress is not None:
            progress.cancel()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``ztream peer`` (also registered by ``gateway/cli.py``)."""
    parser.add_argument("url", help="the gateway, or a track's URL on it")
    parser.add_argument("--track", help="track id (default: from URL, else the gateway's first track)")
    parser.add_argument("--speed", type=float, default=1.0, help="playback speed, audio seconds per real second")
    parser.add_argument("--cache", type=Path, help="persistent chunk cache directory")
    parser.add_argument("--seed-only", action="store_true",
                        help="do not play: seed the cached chunks (fetching the rest from the server once)")
    parser.add_argument("--linger", type=float, default=None,
                        help="seconds to keep seeding after the end (default: until interrupted)")
    parser.add_argument("--live-seconds", type=float, default=None,
                        help="a live track: seconds to listen (default: until interrupted)")
    parser.add_argument("--progress", type=float, default=5.0, help="seconds between progress lines (0: none)")
    parser.add_argument("--json", action="store_true", help="print the final report as one JSON line")
    parser.add_argument("--no-upload", action="store_true",
                        help="download only: announce nothing, serve no one (docs/p2p.md, listeners' consent)")
    parser.add_argument("--upload-kbps", type=int, default=0,
                        help="upload cap in kbit/s; the gateway's p2p.upload_kbps applies where stricter (default: the gateway's)")


def run(args: argparse.Namespace) -> int:
    """Run one peer as ``args`` say; the exit status."""
    from .clock import VirtualClock
    from .core import DEFAULT_P2P_SETTINGS
    from .node import PeerError, PeerNode, PeerOptions

    if not args.speed > 0:
        print("ztream peer: --speed must be positive", file=sys.stderr)
        return 2
    if args.upload_kbps < 0:
        print("ztream peer: --upload-kbps must not be negative", file=sys.stderr)
        return 2
    logging.getLogger("aioice").setLevel(logging.WARNING)
    logging.getLogger("aiortc").setLevel(logging.WARNING)
    try:
        base, track = split_url(args.url)
        track = args.track or track or _first_track(base)
    except (ValueError, OSError, KeyError) as exc:
        print(f"ztream peer: {exc}", file=sys.stderr)
        return 2
    options = PeerOptions(speed=args.speed, cache_dir=args.cache, seed_only=args.seed_only, linger=args.linger,
                          name="peer", live_seconds=args.live_seconds, upload="stop" if args.no_upload else "share",
                          p2p=replace(DEFAULT_P2P_SETTINGS, upload_kbps=args.upload_kbps))
    node = PeerNode(base, track, clock=VirtualClock(args.speed), options=options)
    try:
        report = asyncio.run(_run(node, args.progress))
    except PeerError as exc:
        print(f"ztream peer: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report.as_dict()))
    else:
        for key, value in report.as_dict().items():
            print(f"{key:18} {value}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ztream peer", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
