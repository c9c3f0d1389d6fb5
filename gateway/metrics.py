"""Prometheus metrics, one registry per app (so tests can run several apps).

Names and meanings are the public contract in docs/metrics.md; label values are a
fixed, small set (never track or peer ids), so cardinality stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable

import prometheus_client
from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

__all__ = ["METRICS", "Metrics", "SERVER_KINDS", "UPSTREAM_SOURCES", "PEER_SCOPES"]

# `_created` series double the output and no query here uses them.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]  # unannotated upstream

SERVER_KINDS = ("init", "chunk", "stream")
UPSTREAM_SOURCES = ("url", "soundcloud", "local")
# How near a peer's source was (gateway/swarm/networks.py), nearest first.
PEER_SCOPES = ("same_lan", "same_network", "other", "unknown")
# transcode.seekable's modes: piped, piped after a Range request for the moov, spooled, a library file by path.
INPUT_MODES = ("pipe", "range", "spool", "file")


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self.server_bytes = Counter(
            "ztream_server_bytes", "Audio bytes the gateway sent to listeners", ["kind"], registry=r
        )
        self.peer_bytes = Counter(
            "ztream_peer_bytes", "Audio bytes listeners report they received from peers, by how near the source was",
            ["scope"], registry=r,
        )
        self.upstream_bytes = Counter(
            "ztream_upstream_bytes", "Bytes fetched from upstreams", ["source"], registry=r
        )
        self.cache_hits = Counter("ztream_cache_hits", "Chunk store look-ups that hit", registry=r)
        self.cache_misses = Counter("ztream_cache_misses", "Chunk store look-ups that missed", registry=r)
        self.store_corruptions = Counter(
            "ztream_store_corruptions",
            "Stored init segments, chunks and manifests that failed their check on read (evicted, made again)",
            registry=r,
        )
        self.cache_bytes = Gauge("ztream_cache_bytes", "Bytes held in the chunk store", registry=r)
        self.transcodes = Counter("ztream_transcodes", "Transcodes ended", ["result"], registry=r)
        self.transcodes_running = Gauge("ztream_transcodes_running", "Transcodes now running", registry=r)
        self.transcode_seconds = Histogram(
            "ztream_transcode_seconds",
            "Wall time of a whole transcode",
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
            registry=r,
        )
        # How each transcode's input reached ffmpeg (pipe, Range, spool, file), and bytes spooled to disk.
        self.transcode_inputs = Counter(
            "ztream_transcode_inputs", "Transcode inputs by how ffmpeg read them", ["mode"], registry=r
        )
        self.spooled_bytes = Counter(
            "ztream_spooled_bytes", "Upstream bytes spooled to a temporary file for ffmpeg to seek in", registry=r
        )
        self.peers_connected = Gauge("ztream_peers_connected", "Open control WebSockets", registry=r)
        self.verify_failures = Counter(
            "ztream_chunk_verify_failures", "Bad chunks from peers, as reported", registry=r
        )
        self.stalls = Counter("ztream_playback_stalls", "Stalls reported by players", registry=r)
        self.startup_seconds = Histogram(
            "ztream_startup_seconds",
            "Time from play to sound, as reported by players",
            buckets=(0.05, 0.1, 0.175, 0.25, 0.35, 0.5, 0.75, 1, 1.5, 2.5, 5, 10),
            registry=r,
        )
        # NAT traversal and P2P connection outcomes (docs/p2p.md).
        self.stun_requests = Counter(
            "ztream_stun_requests", "STUN datagrams received, by what the responder did", ["result"], registry=r
        )
        self.p2p_connections = Counter(
            "ztream_p2p_connections",
            "Neighbour connections, as players report: connected (by the selected pair's candidate types), failed, timeout",
            ["result", "candidate", "local", "remote"],
            registry=r,
        )
        self.peer_relay_bytes = Counter(
            "ztream_peer_relay_bytes",
            "The part of ztream_peer_bytes that came through a TURN relay (candidate relay), as reported",
            registry=r,
        )
        self.peers_without_neighbours = Gauge(
            "ztream_peers_without_neighbours",
            "Open peers whose last stats report said they had no neighbour connection open",
            registry=r,
        )
        self.redis_outages = Counter(
            "ztream_redis_outages", "Times this cluster node lost Redis and carried on alone", registry=r
        )
        # Live radio (docs/live.md).
        self.live_listeners = Gauge(
            "ztream_live_listeners",
            "Client groups that requested a live station in the last 10 s (station: its track id)",
            ["station"], registry=r,
        )
        self.live_ingests = Gauge("ztream_live_ingests", "Live ingests running now, by state", ["state"], registry=r)
        self.live_reconnects = Counter(
            "ztream_live_reconnects", "Times a live ingest lost its upstream and started reconnecting", registry=r
        )
        self.live_following = Gauge(
            "ztream_live_following",
            "Live stations this node serves by copying another cluster node's ingest (counted in ztream_live_ingests too)",
            registry=r,
        )
        self.live_takeovers = Counter(
            "ztream_live_takeovers",
            "Live stations this node took over (it followed another node's ingest, then ingested itself)",
            registry=r,
        )
        self.live_latency_seconds = Histogram(
            "ztream_live_latency_seconds",
            "Distance from a live chunk's arrival from the upstream to its playback, as reported by players",
            buckets=(0.5, 1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 60),
            registry=r,
        )
        self.live_server_bytes = Counter(
            "ztream_live_server_bytes",
            "The part of ztream_server_bytes that was live tracks' init segments, chunks and streams",
            registry=r,
        )
        self.live_peer_bytes = Counter(
            "ztream_live_peer_bytes",
            "The part of ztream_peer_bytes that was live tracks' chunks, as reported (credited like the whole)",
            registry=r,
        )
        # Touch every fixed label value so the series exist from the start and
        # rate() has a zero to start from.
        # Labelled children looked up once: .labels() costs a lock and a dict
        # walk on every chunk answer.
        self.server_bytes_by_kind = {kind: self.server_bytes.labels(kind) for kind in SERVER_KINDS}
        for source in UPSTREAM_SOURCES:
            self.upstream_bytes.labels(source)
        for name in PEER_SCOPES:
            self.peer_bytes.labels(name)
        for result in ("ok", "error"):
            self.transcodes.labels(result)
        for state in ("starting", "live", "reconnecting"):
            self.live_ingests.labels(state)
        for result in ("ok", "ignored", "rate_limited", "malformed"):
            self.stun_requests.labels(result)
        for local in ("host", "srflx", "prflx", "relay"):
            for remote in ("host", "srflx", "prflx", "relay"):
                pair_type = "relay" if "relay" in (local, remote) else remote
                self.p2p_connections.labels("connected", pair_type, local, remote)
        self.p2p_connections.labels("connected", "unknown", "unknown", "unknown")
        for result in ("failed", "timeout"):
            self.p2p_connections.labels(result, "none", "none", "none")
        self._inputs = {mode: self.transcode_inputs.labels(mode) for mode in INPUT_MODES}

    def count_input(self, mode: str) -> None:
        self._inputs[mode].inc()

    def track_cache_bytes(self, volume: Callable[[], int]) -> None:
        self.cache_bytes.set_function(volume)

    def render(self) -> bytes:
        return generate_latest(self.registry)


METRICS = web.AppKey("metrics", Metrics)
