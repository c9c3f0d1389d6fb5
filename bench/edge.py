"""The edge part of ``ztream bench cluster``: cached chunks through the shipped nginx config.

Two figures, each against a baseline from the same nginx in the same run:

* **rate**: requests/s of a cached chunk through deploy/nginx/ztream.conf vs
  the same bytes served by nginx as a static file (goal >= 0.8x). The
  variants are measured in interleaved rounds and the ratio is the median of
  the rounds' ratios, because on a shared machine two back-to-back ``wrk``
  runs can differ by 30 % from other load alone. Beside each rate, the CPU
  time nginx's worker spent per request (from /proc), which other load barely
  moves: at saturation the rate is its inverse, so its ratio says the same
  thing with less noise. A third variant, the static file with the cached
  answer's extra headers, splits the gap into what the headers cost and what
  the cache lookup costs.
* **misses**: N listeners asking at once for each of K cold chunks; the
  requests nginx sent to the gateway per chunk, from nginx's own access log
  (``$upstream_cache_status``). ``proxy_cache_lock`` should make it 1.
"""

from __future__ import annotations

import asyncio
import statistics
from dataclasses import dataclass
from pathlib import Path

__all__ = ["EdgeRate", "measure_rates", "measure_misses", "print_edge"]

# The headers the cached answer has and a static file does not (deploy/nginx/ztream.conf).
CACHED_HEADERS = (
    'add_header Vary Origin; add_header Cache-Control "public, max-age=31536000, immutable" always; '
    "add_header X-Cache-Status HIT always;"
)


@dataclass(frozen=True)
class EdgeRate:
    name: str
    rates: list[float]  # requests/s, one per round
    cpu_us: list[float]  # nginx worker CPU microseconds per request, one per round

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)

    @property
    def cost(self) -> float:
        return statistics.median(self.cpu_us)


def static_locations(static: Path) -> str:
    """The two baseline locations the bench adds to the shipped server block."""
    return (f"    location /static/ {{ alias {static}/; }}\n"
            f"    location /static-headers/ {{ alias {static}/; {CACHED_HEADERS} }}\n")


def measure_rates(edge_url: str, cached_path: str, worker_pids: list[int], *, seconds: int, rounds: int,
                  conns: int = 32) -> dict[str, EdgeRate]:
    from bench.harness import cpu_seconds, wrk_measured

    paths = {"static": "/static/chunk.webm", "static+headers": "/static-headers/chunk.webm", "cached": cached_path}
    rates: dict[str, list[float]] = {name: [] for name in paths}
    costs: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(rounds):
        for name, path in paths.items():
            before = cpu_seconds(worker_pids)
            rps, _ = wrk_measured(edge_url + path, seconds, conns, threads=1)
            used = cpu_seconds(worker_pids) - before
            rates[name].append(rps)
            costs[name].append(used / max(1.0, rps * seconds) * 1e6)
    return {name: EdgeRate(name, rates[name], costs[name]) for name in paths}


async def _storm(urls: list[str], listeners: int) -> list[int]:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async def one(url: str) -> int:
            async with session.get(url) as r:
                await r.read()
                return r.status

        statuses: list[int] = []
        for url in urls:  # one cold chunk at a time, its listeners all at once
            statuses.extend(await asyncio.gather(*(one(url) for _ in range(listeners))))
        return statuses


def measure_misses(edge_url: str, access_log: Path, chunk_paths: list[str], listeners: int) -> dict[str, float]:
    """Requests to the gateway per cold chunk when ``listeners`` ask for it at once."""
    start = access_log.stat().st_size if access_log.exists() else 0
    statuses = asyncio.run(_storm([edge_url + p for p in chunk_paths], listeners))
    with access_log.open() as f:
        f.seek(start)
        lines = [line.split() for line in f if line.strip()]
    # log_format ztream_edge: "$uri $status $upstream_cache_status $upstream_addr"
    upstream = [f for f in lines if len(f) >= 4 and f[3] != "-"]
    per_chunk = [sum(1 for f in upstream if f[0] == p) for p in chunk_paths]
    return {"chunks": len(chunk_paths), "listeners": listeners, "ok": sum(s == 200 for s in statuses),
            "requests": len(statuses), "upstream_per_chunk": statistics.mean(per_chunk),
            "upstream_max": max(per_chunk)}


def print_edge(rates: dict[str, EdgeRate], misses: dict[str, float], size: int, rounds: int, seconds: int) -> dict[str, float]:
    static, headers, cached = rates["static"], rates["static+headers"], rates["cached"]
    ratios = [c / s for c, s in zip(cached.rates, static.rates, strict=True)]
    ratio = statistics.median(ratios)
    cost_ratio = static.cost / cached.cost
    print(f"edge: nginx 1 worker, wrk -t1 -c32, {rounds} interleaved rounds of {seconds} s, chunk {size} B")
    for r in (static, headers, cached):
        print(f"  {r.name:15} {r.rate:9.0f} req/s (median; {min(r.rates):.0f}-{max(r.rates):.0f})   "
              f"nginx CPU {r.cost:6.1f} us/request")
    print(f"  cached / static: rate {ratio:.2f} (median of rounds {[round(x, 2) for x in ratios]}), "
          f"CPU cost {cost_ratio:.2f}   (goal >= 0.8)")
    gap = cached.cost - static.cost
    if gap > 0:
        hdr = headers.cost - static.cost
        print(f"  where the CPU gap of {gap:.1f} us/request goes: headers {hdr:.1f} us, "
              f"cache lookup and upstream headers {gap - hdr:.1f} us")
    print(f"  cold chunks: {misses['chunks']:.0f} chunks x {misses['listeners']:.0f} listeners at once -> "
          f"{misses['upstream_per_chunk']:.2f} requests to the gateway per chunk (max {misses['upstream_max']:.0f}), "
          f"{misses['ok']:.0f}/{misses['requests']:.0f} answered 200")
    return {"nginx_ratio": ratio, "nginx_cost_ratio": cost_ratio, "nginx_upstream_per_cold_chunk": misses["upstream_per_chunk"]}
