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
from tests.unit.gateway.sources.test_icy import block

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


async def test_the_manifest_delta(station: tuple[Station, str, int], make_gateway: Any) -> None:
    """``?after=N``: the same fields, only the chunks past N; below the window, the whole window; bad N: 400."""
    _, url, port = station
    client = await make_gateway(library=None, **{"sources.url": {"allow_hosts": [f"127.0.0.1:{port}"]}})
    tid = (await (await post_url(client, url)).json())["id"]
    full = await (await client.get(f"/v1/tracks/{tid}/manifest")).json()
    while len(full["chunks"]) < 3:
        await asyncio.sleep(0.25)
        full = await (await client.get(f"/v1/tracks/{tid}/manifest")).json()
    first, edge = full["first"], full["edge"]
    assert first == full["chunks"][0]["index"]
    # The newest index held: no chunk, or only the newer ones, and every other field.
    r = await client.get(f"/v1/tracks/{tid}/manifest?after={edge}")
    assert r.status == 200 and r.headers["Cache-Control"] == "public, max-age=1"
    delta = await r.json()
    assert set(delta) == set(full) and delta["first"] >= first
    assert all(c["index"] > edge for c in delta["chunks"])
    # One behind the edge: the edge chunk as the whole read lists it.
    delta = await (await client.get(f"/v1/tracks/{tid}/manifest?after={edge - 1}")).json()
    assert delta["chunks"][0] == full["chunks"][-1]
    # Below the window (0, or long ago): the whole window.
    for after in (0, first - 1):
        delta = await (await client.get(f"/v1/tracks/{tid}/manifest?after={after}")).json()
        # (the window only grows here: 60 s of it are not yet made)
        assert delta["chunks"][0]["index"] == delta["first"] == first and len(delta["chunks"]) >= len(full["chunks"])
    # Past the edge: nothing (the edge cannot have moved 1000 chunks on meanwhile).
    assert (await (await client.get(f"/v1/tracks/{tid}/manifest?after={edge + 1000}")).json())["chunks"] == []
    for bad in ("-1", "x", "", "1e3", " 5", "+5", "4294967296", "12345678901"):
        r = await client.get(f"/v1/tracks/{tid}/manifest", params={"after": bad})
        assert r.status == 400 and (await r.json())["error"] == "bad_after", bad
    # The largest index is fine.
    assert (await client.get(f"/v1/tracks/{tid}/manifest?after=4294967295")).status == 200


async def test_a_shoutcast_v1_station_plays_live_with_its_title(make_gateway: Any, tmp_path: Path) -> None:
    """SHOUTcast v1 answers ``ICY 200 OK`` (no HTTP status line), with ``icy-metaint`` blocks."""
    mp3 = make_audio(tmp_path / "loop.mp3", 10, fmt="mp3").read_bytes()
    metaint, piece = 8192, 4000

    handlers: list[asyncio.Task[Any]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await play(reader, writer)
        finally:
            writer.close()

    async def play(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"ICY 200 OK\r\nicy-notice1:<BR>This stream requires Winamp<BR>\r\nicy-name:Old FM\r\n"
                     b"icy-genre:Oldies\r\nicy-pub:1\r\nicy-br:128\r\ncontent-type:audio/mpeg\r\n"
                     b"icy-metaint:%d\r\n\r\n" % metaint)
        body = bytearray()
        with contextlib.suppress(ConnectionError):
            while True:  # the loop at twice real time, a title block every metaint audio bytes
                for offset in range(0, len(mp3), piece):
                    body += mp3[offset : offset + piece]
                    while len(body) >= metaint:
                        writer.write(bytes(body[:metaint]) + block(b"StreamTitle='Artist - Old Song';"))
                        del body[:metaint]
                    await writer.drain()
                    await asyncio.sleep(0.125)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        client = await make_gateway(library=None, **{"sources.url": {"allow_hosts": [f"127.0.0.1:{port}"]}})
        r = await post_url(client, f"http://127.0.0.1:{port}/;")
        assert r.status == 201
        track = await r.json()
        assert track["live"] is True and track["title"] == "Old FM"
        manifest: dict[str, Any] = {}
        for _ in range(100):
            manifest = await (await client.get(f"/v1/tracks/{track['id']}/manifest")).json()
            if len(manifest.get("chunks", [])) >= 2 and manifest.get("title"):
                break
            await asyncio.sleep(0.2)
        assert manifest["state"] == "live" and manifest["title"] == "Artist - Old Song", manifest
        chunk = await client.get(f"/v1/tracks/{track['id']}/chunks/{manifest['edge']}")
        assert chunk.status == 200 and len(await chunk.read()) == manifest["chunks"][-1]["size"]
    finally:
        server.close()
        for task in handlers:  # a connection the gateway left open (3.11 leaves them running)
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()
