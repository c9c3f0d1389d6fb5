"""The ``ztream`` command: serve, peer, bench."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from .config import ConfigError, load_config

__all__ = ["main"]


def _serve(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"ztream: invalid configuration: {exc}", file=sys.stderr)
        return 2
    from .admin import handle_sighup
    from .app import create_app, serve
    from .cluster.workers import run_workers, worker_sockets

    if args.workers < 1:
        print("ztream: --workers must be at least 1", file=sys.stderr)
        return 2
    if args.workers > 1:
        return run_workers(config, args.config, args.workers, args.verbose)
    app = create_app(config, config_path=args.config)
    handle_sighup(app)  # SIGHUP re-reads the config file (and its admin overlay)
    url = config.public_url
    print(f"ztream: serving on http://{config.server.host}:{config.server.port} -> open {url}/", flush=True)
    # Not web.run_app: serve() bounds shutdown (ffmpeg first, then
    # connections, ~2 s in all) and answers aiohttp's own errors in JSON.
    # One of `--workers N`: SO_REUSEPORT on the public port, and a private port.
    asyncio.run(serve(app, config.server.host, config.server.port, sockets=worker_sockets(config)))
    return 0


def _bench(args: argparse.Namespace) -> int:
    if args.what == "transcode":
        from bench.transcode import main as bench_main
    elif args.what == "swarm":
        from bench.swarm import main as bench_main
    elif args.what == "ws":
        from bench.ws import main as bench_main
    elif args.what == "soak":
        from bench.soak import main as bench_main
    elif args.what == "media":
        from bench.media import main as bench_main
    elif args.what == "browsers":
        from bench.browsers import main as bench_main
    elif args.what == "cluster":
        from bench.cluster import main as bench_main
    else:  # pragma: no cover - argparse restricts choices
        raise SystemExit(2)
    return int(bench_main(args.rest) or 0)


def _peer(args: argparse.Namespace) -> int:
    from peer.cli import run

    return run(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ztream", description="P2P-assisted audio CDN gateway")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", help="TOML file (default: built-in defaults and a demo library)")
    serve.add_argument("--workers", type=int, default=1,
                       help="processes on one port (SO_REUSEPORT); more than 1 needs [cluster] redis_url")
    serve.set_defaults(func=_serve)
    from peer.cli import add_arguments as peer_arguments

    peer = sub.add_parser("peer", help="a headless peer (aiortc) that plays a track and seeds it")
    peer_arguments(peer)
    peer.set_defaults(func=_peer)
    bench = sub.add_parser("bench", help="benchmarks that print figures against a same-run baseline")
    bench.add_argument("what", choices=["transcode", "swarm", "ws", "soak", "media", "browsers", "cluster"])
    bench.add_argument("rest", nargs=argparse.REMAINDER)
    bench.set_defaults(func=_bench)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
