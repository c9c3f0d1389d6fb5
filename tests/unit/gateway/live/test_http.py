"""The HTTP contract of a live track (docs/live.md) against a loopback station: an endless MP3 with ICY headers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.live import LIVE
from tests.support.audio import make_audio
from tests.support.gateway import post_url

TOKEN = "admin-token-live-9"


class Station:
    """``/live.mp3``: an MP3 looped forever at twice real time, ``icy-name`` and no length."""

    def __init__(self, mp3: bytes) -> None:
        self.mp3 = mp3
        self.connections = 0
        self.app = web.Application()
        self.app.router.add_get("/live.mp3", self.live)

    async def live(self, request: web.Request) -> web.StreamResponse:
        self.connections += 1
        response = web.StreamResponse(headers={"Content-Type": "audio/mpeg", "icy-name": "Fake FM", "icy-br": "128"})
        await response.prepare(request)
        piece = 4000  # 0.25 s at 128 kbit/s
        with contextlib.suppress(ConnectionError):
            while True:
                for offset in range(0, len(self.mp3), piece):
                    await response.write(self.mp3[offset : offset + piece])
                    await asyncio.sleep(0.125)
        return response


@pytest.fixture
async def station(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Station, str, int]]:
    mp3 = make_audio(tmp_path_factory.mktemp("station") / "loop.mp3", 10, fmt="mp3").read_bytes()
    server_side = Station(mp3)
    server = TestServer(server_side.app, host="127.0.0.1")
    await server.start_server()
    yield server_side, f"http://127.0.0.1:{server.port}/live.mp3", server.port
    await server.close()


async def test_a_live_track_answers_the_live_contract(station: tuple[Station, str, int], make_gateway: Any) -> None:
    fake, url, port = station
    client = await make_gateway(library=None, admin={"token": TOKEN},
                                **{"sources.url": {"allow_hosts": [f"127.0.0.1:{port}"]}, "live": {"idle_seconds": 30.0}})
    r = await post_url(client, url)
    assert r.status == 201
    track = await r.json()
    assert track["live"] is True and track["title"] == "Fake FM"
    tid = track["id"]
    r = await client.get(f"/v1/tracks/{tid}/manifest")
    assert r.status == 200 and r.headers["Cache-Control"] == "public, max-age=1"
    manifest = await r.json()
    for key, value in {"live": True, "complete": False, "duration": None, "expected_duration": None,
                       "duration_estimated": False, "loudness_lufs": None, "true_peak_db": None,
                       "station": "Fake FM", "chunk_seconds": 1.0, "window_seconds": 60.0,
                       "start_behind_seconds": 3.0, "peer_wait_seconds": 0.7}.items():
        assert manifest[key] == value, key
    assert manifest["state"] == "live" and manifest["edge"] == manifest["chunks"][-1]["index"]
    assert set(manifest["chunks"][0]) == {"index", "start", "duration", "size", "sha256", "wall", "epoch"}
    assert manifest["init"]["epoch"] == manifest["epoch"]
    edge = manifest["edge"]
    assert manifest["first"] == manifest["chunks"][0]["index"]
    # A delta: only what came after the index a player has.
    r = await client.get(f"/v1/tracks/{tid}/manifest?after={edge - 1}")
    delta = await r.json()
    assert [c["index"] for c in delta["chunks"]][:1] == [edge] and delta["first"] == manifest["first"]
    r = await client.get(f"/v1/tracks/{tid}/manifest?after=x")
    assert r.status == 400 and (await r.json())["error"] == "bad_after"
    # Init by epoch: immutable; an epoch no chunk uses: 410; a bad one: 400.
    r = await client.get(f"/v1/tracks/{tid}/init?epoch={manifest['epoch']}")
    assert r.status == 200 and "immutable" in r.headers["Cache-Control"]
    r = await client.get(f"/v1/tracks/{tid}/init")
    assert r.status == 200 and r.headers["Cache-Control"] == "public, max-age=1"
    assert (await client.get(f"/v1/tracks/{tid}/init?epoch={manifest['epoch'] - 1}")).status == 410
    for bad in ("x", "-1", "99999999999", "4294967296"):
        r = await client.get(f"/v1/tracks/{tid}/init?epoch={bad}")
        assert r.status == 400 and (await r.json())["error"] == "bad_epoch", bad
    r = await client.get(f"/v1/tracks/{tid}/chunks/{edge}")
    assert r.status == 200 and r.headers["ETag"] == f'"{manifest["chunks"][-1]["sha256"]}"'
    assert (await client.get(f"/v1/tracks/{tid}/chunks/4294967296")).status == 400
    assert (await client.get(f"/v1/tracks/{tid}/chunks/{edge + 50}")).status == 404
    # No recording, no waveform; the placeholder artwork.
    r = await client.get(f"/v1/tracks/{tid}/waveform")
    assert r.status == 404 and (await r.json())["error"] == "waveform_not_found"
    assert (await client.get(f"/v1/tracks/{tid}/artwork")).status == 200
    assert client.server.app[LIVE].running()  # still ingesting
    # One look at the headers at registration, one connection for the ingest.
    assert fake.connections == 2
    # An admin purge stops the ingest at once.
    r = await client.delete(f"/v1/admin/tracks/{tid}", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status == 200
    assert client.server.app[LIVE].running() == {}
    assert (await client.get(f"/v1/tracks/{tid}/manifest")).status == 404


async def test_max_stations_is_a_503(station: tuple[Station, str, int], make_gateway: Any, tmp_path: Path) -> None:
    _, url, port = station
    client = await make_gateway(library=None, transcode={"max_per_host": 0, "max_per_client": 0},
                                **{"sources.url": {"allow_hosts": [f"127.0.0.1:{port}"]}, "live": {"max_stations": 1}})
    first = (await (await post_url(client, url)).json())["id"]
    second = (await (await post_url(client, url + "?b")).json())["id"]
    assert (await client.get(f"/v1/tracks/{first}/manifest")).status == 200
    r = await client.get(f"/v1/tracks/{second}/manifest")
    assert r.status == 503 and (await r.json())["error"] == "live_full" and r.headers["Retry-After"]


async def test_the_manifest_is_gzipped_when_asked(station: tuple[Station, str, int], make_gateway: Any) -> None:
    _, url, port = station
    client = await make_gateway(library=None, **{"sources.url": {"allow_hosts": [f"127.0.0.1:{port}"]}})
    tid = (await (await post_url(client, url)).json())["id"]
    r = await client.get(f"/v1/tracks/{tid}/manifest", headers={"Accept-Encoding": "gzip"})
    assert r.status == 200 and r.headers.get("Content-Encoding") == "gzip"
    assert (await r.json())["live"] is True
