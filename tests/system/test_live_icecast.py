"""Live radio against a real Icecast fed by ffmpeg in real time (docs/live.md).

Each test has its own mount on one Icecast server; the gateways run in this
process (``make_gateway``), with the Icecast port on their allow-list.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.harness import ffmpeg_bin
from gateway.live import LIVE
from gateway.live.window import ORIGIN
from tests.support.audio import decoded_seconds
from tests.support.gateway import Client, post_url
from tests.support.icecast import Icecast, start_icecast


@pytest.fixture(scope="module")
def icecast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Icecast]:
    server = start_icecast(tmp_path_factory.mktemp("icecast"))
    try:
        yield server
    finally:
        server.close()


def live_sections(icecast: Icecast, **live: Any) -> dict[str, dict[str, Any]]:
    return {"sources.url": {"allow_hosts": [f"127.0.0.1:{icecast.port}"]}, "live": live}


async def manifest_of(client: Client, track_id: str) -> dict[str, Any]:
    r = await client.get(f"/v1/tracks/{track_id}/manifest")
    assert r.status == 200, await r.text()
    assert r.headers["Cache-Control"] == "public, max-age=1"
    body: dict[str, Any] = await r.json()
    return body


async def until(client: Client, track_id: str, ready: Any, timeout: float, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        manifest = await manifest_of(client, track_id)
        if ready(manifest):
            return manifest
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s; last manifest: {manifest}"
        await asyncio.sleep(0.5)


async def listed(client: Client) -> dict[str, dict[str, Any]]:
    """``GET /v1/tracks`` by id."""
    return {t["id"]: t for t in (await (await client.get("/v1/tracks")).json())["tracks"]}


def listeners(icecast: Icecast, mount: str) -> int:
    with urllib.request.urlopen(f"{icecast.base}/status-json.xsl", timeout=5) as response:
        stats = json.loads(response.read().decode("utf-8", "replace"))
    sources = stats["icestats"].get("source", [])
    if isinstance(sources, dict):
        sources = [sources]
    for source in sources:
        if source.get("listenurl", "").endswith("/" + mount):
            return int(source.get("listeners", 0))
    return 0


@pytest.mark.parametrize("codec", ["mp3", "opus"])
async def test_a_mount_is_a_live_track_heard_at_the_edge_with_its_title(
        icecast: Icecast, make_gateway: Any, codec: str) -> None:
    mount = f"edge-{codec}"
    icecast.source(mount, codec=codec, seconds=120)
    client = await make_gateway(library=None, **live_sections(icecast))
    r = await post_url(client, icecast.url(mount))
    assert r.status == 201, await r.text()
    track = await r.json()
    assert track["live"] is True and track["duration"] is None
    track_id = track["id"]
    first = await until(client, track_id, lambda m: m["edge"] is not None, 20, "the first chunk")
    assert first["live"] is True and first["complete"] is False and first["state"] == "live"
    assert first["chunks"][0]["index"] >= 2 * (int(time.time()) - 30 - ORIGIN)
    if codec == "mp3":
        # Icecast takes titles for MP3 mounts (ICY metadata); an Ogg stream carries its own comments.
        icecast.set_title(mount, "Artist - Title ✓")
    # A listener arriving 8 s later gets the edge of now, not the start of the ingest.
    await asyncio.sleep(8)
    titled = (lambda m: m["title"] == "Artist - Title ✓") if codec == "mp3" else (lambda m: True)
    late = await until(client, track_id, titled, 10, "the ICY title")
    chunks = late["chunks"]
    assert [c["index"] for c in chunks] == list(range(chunks[0]["index"], chunks[0]["index"] + len(chunks)))
    assert late["edge"] == chunks[-1]["index"] and len(chunks) >= 8
    assert all(0.9 <= c["duration"] <= 1.1 for c in chunks[:-1])
    newest = chunks[-1]
    assert time.time() - (newest["wall"] + newest["duration"]) < 3.0, "the edge lags the upstream"
    assert late["station"] and late["window_seconds"] == 60.0 and late["start_behind_seconds"] == 3.0
    assert late["init"]["epoch"] == late["epoch"] == chunks[0]["epoch"]
    # The window decodes as the audio it lists.
    init = await (await client.get(f"/v1/tracks/{track_id}/init?epoch={late['epoch']}")).read()
    bodies = []
    for entry in chunks:
        r = await client.get(f"/v1/tracks/{track_id}/chunks/{entry['index']}")
        assert r.status == 200 and "immutable" in r.headers["Cache-Control"]
        bodies.append(await r.read())
    listed = sum(c["duration"] for c in chunks)
    assert abs(decoded_seconds(init + b"".join(bodies)) - listed) < 0.1
    # Past the window: gone; just past the edge: waited for; far ahead: 404 at once.
    r = await client.get(f"/v1/tracks/{track_id}/chunks/{chunks[0]['index'] - 1}")
    assert r.status == 410 and (await r.json())["error"] == "gone"
    started = time.monotonic()
    r = await client.get(f"/v1/tracks/{track_id}/chunks/{late['edge'] + 2}")
    assert r.status == 200 and time.monotonic() - started < 5.0
    r = await client.get(f"/v1/tracks/{track_id}/chunks/{late['edge'] + 100}")
    assert r.status == 404 and (await r.json())["error"] == "chunk_not_found"
    # /stream starts at the edge: the init, then a chunk of the window's newest.
    async with client.get(f"/v1/tracks/{track_id}/stream") as r:
        assert r.status == 200
        head = await r.content.readexactly(len(init) + 64)
        edge_now = (await manifest_of(client, track_id))["edge"]
    assert head[: len(init)] == init
    candidates = [(await (await client.get(f"/v1/tracks/{track_id}/chunks/{i}")).read())[:64]
                  for i in range(edge_now - 3, edge_now + 1)]
    assert head[len(init):] in candidates
    metrics = await (await client.get("/metrics")).text()
    assert 'ztream_live_ingests{state="live"} 1.0' in metrics
    assert f'ztream_live_listeners{{station="{track_id}"}}' in metrics


def opus_part(path: Path, freq: int, seconds: float, **tags: str) -> bytes:
    """One track of a chained Ogg stream: Ogg/Opus with ``tags`` as its comments."""
    meta = [arg for key, value in tags.items() for arg in ("-metadata", f"{key}={value}")]
    subprocess.run([ffmpeg_bin(), "-v", "error", "-y", "-f", "lavfi", "-i", f"sine=f={freq}:d={seconds}",
                    "-c:a", "libopus", "-b:a", "64k", *meta, "-f", "ogg", str(path)], check=True, timeout=60)
    return path.read_bytes()


async def test_an_ogg_mount_names_its_tracks_from_their_comments(
        icecast: Icecast, make_gateway: Any, tmp_path: Path) -> None:
    # A playout's chained Ogg/Opus: each track its own logical stream with its comments; Icecast
    # sends no ICY metadata for Ogg, so the titles come from the stream itself.
    mount = "chained.ogg"
    one = opus_part(tmp_path / "one.ogg", 440, 6, title="One", artist="Artist A")
    two = opus_part(tmp_path / "two.ogg", 660, 6, title="Two")
    icecast.send(mount, (one + two) * 5, seconds=60)
    client = await make_gateway(library=None, **live_sections(icecast))
    track_id = (await (await post_url(client, icecast.url(mount))).json())["id"]
    seen: list[str | None] = []
    deadline = time.monotonic() + 40
    while not {"Artist A - One", "Two"} <= set(seen):
        assert time.monotonic() < deadline, f"titles seen: {seen}"
        manifest = await manifest_of(client, track_id)
        if manifest["edge"] is not None and (not seen or seen[-1] != manifest["title"]):
            seen.append(manifest["title"])
        await asyncio.sleep(0.3)
    assert None not in seen, seen  # titled from the first chunk on (Icecast sends a listener the headers first)
    r = await client.get(f"/v1/tracks/{track_id}/chunks/{manifest['edge']}")
    assert r.status == 200


async def test_a_pause_rides_through_and_a_restart_reconnects_with_the_same_id(
        icecast: Icecast, make_gateway: Any) -> None:
    mount = "restart"
    source = icecast.source(mount, seconds=120)
    client = await make_gateway(library=None, **live_sections(icecast, reconnect_max_seconds=1.0))
    track_id = (await (await post_url(client, icecast.url(mount))).json())["id"]
    before = await until(client, track_id, lambda m: m["edge"] is not None and len(m["chunks"]) >= 6, 25, "chunks")
    # A 5 s pause (the mount stays up, silent): the ingest carries on.
    source.pause()
    await asyncio.sleep(5)
    source.resume()
    paused = await until(client, track_id, lambda m: m["edge"] >= before["edge"] + 6 and m["state"] == "live",
                         20, "chunks after the pause")
    # Clean stop: the mount goes away; the track says reconnecting, its window stays.
    source.stop()
    gone = await until(client, track_id, lambda m: m["state"] == "reconnecting", 20, "reconnecting")
    assert gone["chunks"] and gone["edge"] >= paused["edge"]
    await asyncio.sleep(3)
    icecast.source(mount, seconds=120)
    back_at = time.monotonic()
    back = await until(client, track_id, lambda m: m["state"] == "live" and m["edge"] > gone["edge"], 20,
                       "live again")
    assert time.monotonic() - back_at < 10
    indices = [c["index"] for c in back["chunks"]]
    assert indices == sorted(set(indices)) and indices[-1] > gone["edge"]
    r = await client.get(f"/v1/tracks/{track_id}")
    assert (await r.json())["live"] is True
    metrics = await (await client.get("/metrics")).text()
    reconnects = float(metrics.split("\nztream_live_reconnects_total ")[1].split()[0])
    assert reconnects >= 1


async def test_no_listener_stops_the_ingest(icecast: Icecast, make_gateway: Any) -> None:
    mount = "idle"
    icecast.source(mount, seconds=120)
    client = await make_gateway(library=None, **live_sections(icecast, idle_seconds=3.0))
    track_id = (await (await post_url(client, icecast.url(mount))).json())["id"]
    assert track_id not in await listed(client)  # a URL station: never listed (docs/http.md)
    await until(client, track_id, lambda m: m["edge"] is not None, 20, "the first chunk")
    service = client.server.app[LIVE]
    assert service.running() and listeners(icecast, mount) == 1
    await asyncio.sleep(6)
    assert not service.running()
    assert listeners(icecast, mount) == 0
    metrics = await (await client.get("/metrics")).text()
    assert f'station="{track_id}"' not in metrics
    # The next listener starts it again, after the old edge.
    old_edge = service._edges[(track_id, "webm")]
    again = await until(client, track_id, lambda m: m["edge"] is not None, 20, "the first chunk again")
    assert again["chunks"][0]["index"] > old_edge


async def test_a_gateway_restart_never_repeats_an_index(icecast: Icecast, make_gateway: Any, tmp_path: Path) -> None:
    mount = "gateway-restart"
    icecast.source(mount, seconds=120)
    sections = live_sections(icecast)
    first = await make_gateway(library=None, **sections)
    track_id = (await (await post_url(first, icecast.url(mount))).json())["id"]
    await until(first, track_id, lambda m: m["edge"] is not None, 20, "the first chunk")
    await asyncio.sleep(8)
    edge = (await manifest_of(first, track_id))["edge"]
    await first.close()
    second = await make_gateway(library=None, **sections)  # the same cache directory: the same catalog
    after = await until(second, track_id, lambda m: m["edge"] is not None, 20, "the first chunk after the restart")
    assert after["chunks"][0]["index"] > edge


async def test_a_declared_always_station_ingests_without_listeners(icecast: Icecast, make_gateway: Any) -> None:
    mount = "always"
    icecast.source(mount, seconds=120)
    client = await make_gateway(library=None, **live_sections(
        icecast, idle_seconds=2.0, stations=[{"name": "Always On", "url": icecast.url(mount), "mode": "always"}]))
    service = client.server.app[LIVE]
    deadline = time.monotonic() + 20
    while not any(i.window.edge is not None for i in service.running().values()):
        assert time.monotonic() < deadline, "the always station did not start"
        await asyncio.sleep(0.5)
    await asyncio.sleep(3)  # past idle_seconds: still running
    (key, ingest), = service.running().items()
    r = await client.get(f"/v1/tracks/{key[0]}")
    track = await r.json()
    assert track["live"] is True and track["title"] == "Always On"
    assert (await listed(client))[key[0]]["title"] == "Always On"  # the operator's own: listed from the start
    manifest = await manifest_of(client, key[0])
    assert manifest["station"] == "Always On" and manifest["state"] == "live"
