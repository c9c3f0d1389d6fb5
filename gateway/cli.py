"""The ``ztream`` command: serve, peer, bench."""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import socket
import sys
from typing import Any

from .config import ConfigError, load_config

__all__ = ["main"]


def _command_line(args: argparse.Namespace) -> dict[str, Any]:
    """``--host``/``--port`` as config tables; they win over the file and the overlay."""
    server: dict[str, Any] = {}
    if args.host is not None:
        server["host"] = args.host
    if args.port is not None:
        server["port"] = args.port
    return {"server": server} if server else {}


def _check_port(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on (one line naming the fix), or None.

    Tried before the (slow) start-up so that a busy port is reported at once;
    the listener proper still binds later, and a failure then is reported the
    same way by ``_startup_failure``.
    """
    if port == 0:
        return None
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"cannot listen on {host}: {exc.strerror}; give an address or a name of this machine (--host, server.host)"
    for family, kind, proto, _name, address in infos:
        with socket.socket(family, kind, proto) as probe:
            # As asyncio's server does: a port left in TIME_WAIT is not busy.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                return _bind_error(host, port, exc)
    return None


def _bind_error(host: str, port: int, exc: OSError) -> str:
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return (f"cannot listen on {where}: port {port} is already in use; stop the program using it "
                f"or choose another port: ztream serve --port {port + 1 if port < 65535 else 8080} "
                f"(make run PORT={port + 1 if port < 65535 else 8080}, or server.port in the config file)")
    if exc.errno == errno.EACCES:
        return (f"cannot listen on {where}: permission denied (ports below 1024 need privileges); "
                f"choose a port above 1024 with --port (server.port) and put a reverse proxy in front")
    if exc.errno == errno.EADDRNOTAVAIL:
        return (f"cannot listen on {where}: {host} is not an address of this machine; "
                f"use --host 127.0.0.1, or 0.0.0.0 for every interface (server.host)")
    return f"cannot listen on {where}: {exc.strerror or exc}"


def _startup_failure(host: str, port: int, exc: BaseException) -> str:
    """One line for an exception that ended ``ztream serve``: no traceback for an operator."""
    if isinstance(exc, OSError) and exc.errno in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
        return _bind_error(host, port, exc)
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"start-up failed: {text} (ztream -v serve ... shows the details)"


def _serve(args: argparse.Namespace) -> int:
    overrides = _command_line(args)
    try:
        config = load_config(args.config, overrides=overrides)
    except ConfigError as exc:
        print(f"ztream: invalid configuration: {exc}", file=sys.stderr)
        return 2
    from .admin import handle_sighup
    from .app import create_app, serve
    from .cluster.workers import run_workers, worker_sockets

    if args.workers < 1:
        print("ztream: --workers must be at least 1", file=sys.stderr)
        return 2
    host, port = config.server.host, config.server.port
    if args.workers > 1:
        return run_workers(config, args.config, args.workers, args.verbose, serve_args=_serve_args(args))
    try:
        sockets = worker_sockets(config)
        problem = None if sockets is not None else _check_port(host, port)
        if problem is not None:
            print(f"ztream: {problem}", file=sys.stderr)
            return 1
        app = create_app(config, config_path=args.config, overrides=overrides)
        handle_sighup(app)  # SIGHUP re-reads the config file (and its admin overlay)
        url = config.public_url
        print(f"ztream: serving on http://{host}:{port} -> open {url}/", flush=True)
        # Not web.run_app: serve() bounds shutdown (ffmpeg first, then
        # connections, ~2 s in all) and answers aiohttp's own errors in JSON.
        # One of `--workers N`: SO_REUSEPORT on the public port, and a private port.
        asyncio.run(serve(app, host, port, sockets=sockets))
    except KeyboardInterrupt:  # Ctrl-C before the signal handlers are in place
        return 130
    except Exception as exc:  # noqa: BLE001 - the operator gets one line, -v the traceback
        logging.getLogger("ztream").debug("start-up failed", exc_info=True)
        print(f"ztream: {_startup_failure(host, port, exc)}", file=sys.stderr)
        return 1
    return 0


def _serve_args(args: argparse.Namespace) -> list[str]:
    """The command-line settings a worker of ``--workers N`` is started with."""
    out: list[str] = []
    if args.host is not None:
        out += ["--host", args.host]
    if args.port is not None:
        out += ["--port", str(args.port)]
    return out


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (0..65535)")
    return value


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
    elif args.what == "abuse":
        from bench.abuse import main as bench_main
    elif args.what == "live":
        from bench.live import main as bench_main
    elif args.what == "live-election":
        from bench.live_election import main as bench_main
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
    serve.add_argument("--host", help="address to listen on (server.host; 0.0.0.0: every interface)")
    serve.add_argument("--port", type=_port, help="TCP port to listen on (server.port)")
    serve.add_argument("--workers", type=int, default=1,
                       help="processes on one port (SO_REUSEPORT); more than 1 needs [cluster] redis_url")
    serve.set_defaults(func=_serve)
    from peer.cli import add_arguments as peer_arguments

    peer = sub.add_parser("peer", help="a headless peer (aiortc) that plays a track and seeds it")
    peer_arguments(peer)
    peer.set_defaults(func=_peer)
    bench = sub.add_parser("bench", help="benchmarks that print figures against a same-run baseline")
    bench.add_argument("what", choices=["transcode", "swarm", "ws", "soak", "media", "browsers", "cluster", "abuse", "live",
                                         "live-election"])
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
