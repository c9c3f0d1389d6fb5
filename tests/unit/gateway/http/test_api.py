"""The public HTTP contract, through a real app, real ffmpeg and loopback upstreams."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import pytest

from gateway.media import MEDIA, STORE
from gateway.media.catalog import track_id_for
from tests.support.audio import decoded_seconds
from tests.support.gateway import fetch_all, post_url

# -- the local library ----------------------------------------------------------


async def test_healthz_and_library(make_gateway: Any, audio_dir: Path) -> None:
    client = await make_gateway()
    r = await client.get("/healthz")
    assert r.status == 200 and await r.json() == {"status": "ok"}
    tracks = (await (await client.get("/v1/tracks")).json())["tracks"]
    ids = {t["id"] for t in tracks}
    expected = {track_id_for("local", str((audio_dir / n).resolve())) for n in ("tone_a.flac", "tone_b.flac", "short.flac")}
    assert expected <= ids
    for t in tracks:
        assert set(t) >= {"id", "title", "source", "duration"}
        assert "locator" not in t and "url" not in t  # local paths stay private


async def test_manifest_init_chunks_contract(make_gateway: Any, audio_dir: Path) -> None:
    client = await make_gateway()
    tid = track_id_for("local", str((audio_dir / "short.flac").resolve()))
    manifest, init, chunks = await fetch_all(client, tid)
    assert manifest["id"] == tid and manifest["complete"] is True
    assert manifest["mime"] == 'audio/webm; codecs="opus"' and manifest["bitrate"] == 96000
    assert manifest["init"] == {"size": len(init), "sha256": hashlib.sha256(init).hexdigest()}
    assert abs(manifest["duration"] - 7.0) < 0.3
    for i, (meta, data) in enumerate(zip(manifest["chunks"], chunks, strict=True)):
        assert meta["index"] == i
        assert meta["size"] == len(data) and meta["sha256"] == hashlib.sha256(data).hexdigest()
    starts = [c["start"] for c in manifest["chunks"]]
    assert starts == sorted(starts) and starts[0] == 0.0
    assert abs(decoded_seconds(init + b"".join(chunks)) - 7.0) < 0.3
    # The track learns its duration.
    track = await (await client.get(f"/v1/tracks/{tid}")).json()
    assert abs(track["duration"] - 7.0) < 0.3

    r = await client.get(f"/v1/tracks/{tid}/chunks/1")
    assert r.headers["ETag"] == f'"{manifest["chunks"][1]["sha256"]}"'
    assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert r.headers["Content-Type"] == "audio/webm"
    r304 = await client.get(f"/v1/tracks/{tid}/chunks/1", headers={"If-None-Match": r.headers["ETag"]})
    assert r304.status == 304
    head = await client.head(f"/v1/tracks/{tid}/chunks/1")
    assert head.status == 200 and int(head.headers["Content-Length"]) == manifest["chunks"][1]["size"]
    assert await head.read() == b""
    stream = await client.get(f"/v1/tracks/{tid}/stream")
    assert stream.status == 200 and await stream.read() == init + b"".join(chunks)


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v1/tracks/nope", 404, "track_not_found"),
        ("/v1/tracks/nope/manifest", 404, "track_not_found"),
        ("/v1/tracks/{tid}/chunks/999", 404, "chunk_not_found"),
        ("/v1/tracks/{tid}/chunks/-1", 400, "bad_chunk_index"),
        ("/v1/tracks/{tid}/chunks/x", 400, "bad_chunk_index"),
        ("/no/such/route", 404, "not_found"),
    ],
)
async def test_json_errors(make_gateway: Any, audio_dir: Path, path: str, status: int, code: str) -> None:
    client = await make_gateway()
    tid = track_id_for("local", str((audio_dir / "short.flac").resolve()))
    r = await client.get(path.format(tid=tid))
    assert r.status == status
    body = await r.json()
    assert body["error"] == code and body["detail"]


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"url": 5}', b'{"nourl": "x"}', b'{"url": ""}', b'{"url": "ftp://x/y.mp3"}',
     b'{"url": "file:///etc/passwd"}'],
)
async def test_post_bad_bodies(make_gateway: Any, body: bytes) -> None:
    client = await make_gateway()
    r = await client.post("/v1/tracks", data=body, headers={"Content-Type": "application/json"})
    assert r.status == 400
    assert (await r.json())["error"] in {"bad_json", "bad_request", "bad_url"}


@pytest.mark.parametrize(
    "url", ["https://soundcloud.com/artist/track", "https://on.soundcloud.com/abc", "soundcloud:tracks:123"]
)
async def test_soundcloud_urls_need_soundcloud_configured(make_gateway: Any, url: str) -> None:
    """Without credentials a SoundCloud URL is refused, never fetched as a web page."""
    client = await make_gateway()
    r = await post_url(client, url)
    assert r.status == 403 and (await r.json())["error"] == "soundcloud_disabled"


async def test_cors_follows_embed_origins(make_gateway: Any, audio_dir: Path) -> None:
    client = await make_gateway(server={"embed_origins": ["http://allowed.test"]})
    tid = track_id_for("local", str((audio_dir / "short.flac").resolve()))
    ok = await client.get(f"/v1/tracks/{tid}", headers={"Origin": "http://allowed.test"})
    assert ok.headers.get("Access-Control-Allow-Origin") == "http://allowed.test"
    other = await client.get(f"/v1/tracks/{tid}", headers={"Origin": "http://evil.test"})
    assert "Access-Control-Allow-Origin" not in other.headers
    pre = await client.options("/v1/tracks", headers={"Origin": "http://evil.test", "Access-Control-Request-Method": "POST"})
    assert pre.status == 403


# -- URL upstreams ------------------------------------------------------------------


async def test_url_track_registers_idempotently_and_plays(make_gateway: Any, upstream: Any) -> None:
    client = await make_gateway(**{"sources.url": {"allow_hosts": [f"127.0.0.1:{upstream.port}"]}})
    r1 = await post_url(client, f"{upstream.base}/audio/song.mp3")
    assert r1.status == 201
    r2 = await post_url(client, f"{upstream.base}/audio/song.mp3#ignored")
    assert r2.status == 200
    t1, t2 = await r1.json(), await r2.json()
    assert t1["id"] == t2["id"] and t1["source"] == "url" and t1["title"] == "song"
    manifest, init, chunks = await fetch_all(client, t1["id"])
    assert abs(decoded_seconds(init + b"".join(chunks)) - 12.0) < 0.3
    assert upstream.hits["song.mp3"] == 1
    # One look at the headers when the URL was new (a station or a file?), none when it was known.
    assert upstream.probes["song.mp3"] == 1
    listed = {t["id"] for t in (await (await client.get("/v1/tracks")).json())["tracks"]}
    assert t1["id"] in listed


async def test_same_input_twice_gives_identical_chunks(make_gateway: Any, upstream: Any, tmp_path: Path) -> None:
    allow = {"sources.url": {"allow_hosts": [f"127.0.0.1:{upstream.port}"]}}
    a = await make_gateway(**allow)
    b = await make_gateway(**allow, cache={"dir": str(tmp_path / "other-cache")})
    hashes = []
    for client in (a, b):
        tid = (await (await post_url(client, f"{upstream.base}/audio/other.mp3")).json())["id"]
        manifest, _, _ = await fetch_all(client, tid)
        hashes.append([manifest["init"]["sha256"]] + [c["sha256"] for c in manifest["chunks"]])
    assert upstream.hits["other.mp3"] == 2  # two separate caches: two real transcodes
    assert hashes[0] == hashes[1] and len(hashes[0]) > 3


async def test_concurrent_cold_requests_share_one_fetch_and_one_ffmpeg(
    make_gateway: Any, upstream: Any, ffmpeg_counter: tuple[str, Path]
) -> None:
    wrapper, spawns = ffmpeg_counter
    client = await make_gateway(
        transcode={"ffmpeg": wrapper}, **{"sources.url": {"allow_hosts": [f"127.0.0.1:{upstream.port}"]}}
    )
    tid = (await (await post_url(client, f"{upstream.base}/audio/song.mp3")).json())["id"]
    upstream.gate = asyncio.Event()  # hold the upstream so every request arrives cold

    async def get(path: str) -> tuple[int, bytes]:
        r = await client.get(f"/v1/tracks/{tid}/{path}")
        return r.status, await r.read()

    paths = ["init", "chunks/0", "chunks/3", "stream"] * 8 + ["chunks/5"] * 4
    tasks = [asyncio.create_task(get(p)) for p in paths]
    await asyncio.sleep(0.5)
    upstream.gate.set()
    results = await asyncio.gather(*tasks)
    assert all(status == 200 for status, _ in results), [s for s, _ in results]
    by_path: dict[str, set[bytes]] = {}
    for path, (_, body) in zip(paths, results, strict=True):
        by_path.setdefault(path, set()).add(body)
    assert all(len(bodies) == 1 for bodies in by_path.values())
    assert upstream.hits["song.mp3"] == 1
    assert len(spawns.read_text().split()) == 1
    manifest, init, chunks = await fetch_all(client, tid)
    assert by_path["stream"] == {init + b"".join(chunks)}


async def test_broken_upstreams_give_clear_errors_and_cache_nothing(make_gateway: Any, upstream: Any) -> None:
    client = await make_gateway(
        **{"sources.url": {"allow_hosts": [f"127.0.0.1:{upstream.port}"], "max_bytes": 2_000_000}}
    )
    cases = {
        "/html": (415, "upstream_not_audio"),
        "/random": (415, "upstream_not_audio"),
        "/short/song.mp3": (502, None),
        "/audio/big.wav": (413, "upstream_too_large"),  # Content-Length over max_bytes
        "/chunked/big.wav": (413, "upstream_too_large"),  # found while streaming
        "/missing": (404, None),
    }
    store = client.server.app[STORE]
    rendition = client.server.app[MEDIA].rendition.id
    for path, (status, code) in cases.items():
        r = await post_url(client, upstream.base + path)
        assert r.status == 201, (path, await r.text())
        tid = (await r.json())["id"]
        # chunks/99 waits for the transcode's end: the limit on a chunked
        # body trips only after the first chunks (a live manifest is fine).
        for what in ("chunks/99", "manifest", "init"):
            r = await client.get(f"/v1/tracks/{tid}/{what}")
            body = await r.json()
            assert r.status == status, (path, what, body)
            assert body["detail"]
            if code:
                assert body["error"] == code
        assert store.get_manifest(tid, rendition) is None, path
    # Errors are remembered briefly: one fetch answered three requests.
    assert upstream.hits["html"] == 1 and upstream.hits["missing"] == 1
    good = (await (await post_url(client, f"{upstream.base}/audio/other.mp3")).json())["id"]
    manifest, _, _ = await fetch_all(client, good)
    assert manifest["complete"]


async def test_a_registered_url_is_listed_only_once_its_transcode_completed(make_gateway: Any, upstream: Any) -> None:
    client = await make_gateway(**{"sources.url": {"allow_hosts": [f"127.0.0.1:{upstream.port}"]}})

    async def listed() -> set[str]:
        return {t["id"] for t in (await (await client.get("/v1/tracks")).json())["tracks"] if t["source"] == "url"}

    broken = {}
    for path in ("/missing", "/html", "/random"):
        r = await post_url(client, upstream.base + path)
        assert r.status == 201
        broken[path] = (await r.json())["id"]
    good = (await (await post_url(client, f"{upstream.base}/audio/song.mp3")).json())["id"]
    # Registered (each answers GET /v1/tracks/{id}), but nothing has played: nothing listed.
    for tid in [*broken.values(), good]:
        assert (await client.get(f"/v1/tracks/{tid}")).status == 200
    assert await listed() == set()
    for path, tid in broken.items():
        r = await client.get(f"/v1/tracks/{tid}/manifest")
        assert r.status in (404, 415), (path, await r.text())
    assert await listed() == set()
    # The first chunk is not enough: listed once the transcode completed.
    upstream.gate = asyncio.Event()
    first = asyncio.create_task(client.get(f"/v1/tracks/{good}/manifest"))
    while not upstream.hits["song.mp3"]:
        await asyncio.sleep(0.02)
    assert await listed() == set()
    upstream.gate.set()
    assert (await first).status == 200
    manifest, _, _ = await fetch_all(client, good)
    assert manifest["complete"]
    assert await listed() == {good}


async def test_duration_limit(make_gateway: Any, audio_dir: Path) -> None:
    client = await make_gateway(**{"sources.url": {"max_duration_seconds": 5}})
    tid = track_id_for("local", str((audio_dir / "tone_a.flac").resolve()))
    r = await client.get(f"/v1/tracks/{tid}/chunks/5")
    assert r.status == 413 and (await r.json())["error"] == "upstream_too_large"
    assert client.server.app[STORE].get_manifest(tid, client.server.app[MEDIA].rendition.id) is None


async def test_restart_with_upstream_gone_serves_from_store(
    make_gateway: Any, upstream: Any, make_config: Any
) -> None:
    allow = {"sources.url": {"allow_hosts": [f"127.0.0.1:{upstream.port}"]}}
    first = await make_gateway(**allow)
    tid = (await (await post_url(first, f"{upstream.base}/audio/song.mp3")).json())["id"]
    manifest, init, chunks = await fetch_all(first, tid)
    await first.close()
    await upstream.server.close()
    second = await make_gateway(**allow)
    again = await fetch_all(second, tid)
    assert again == (manifest, init, chunks)


async def test_partial_transcode_is_never_complete_after_a_crash(make_gateway: Any, upstream: Any) -> None:
    """Chunks on disk without a manifest (a crash midway) are transcoded again, not served as done."""
    allow = {"sources.url": {"allow_hosts": [f"127.0.0.1:{upstream.port}"]}}
    client = await make_gateway(**allow)
    app = client.server.app
    tid = (await (await post_url(client, f"{upstream.base}/audio/song.mp3")).json())["id"]
    rid = app[MEDIA].rendition.id
    app[STORE].put_init(tid, rid, b"stale")
    app[STORE].put_chunk(tid, rid, 0, b"stale chunk")
    manifest, init, chunks = await fetch_all(client, tid)
    assert init != b"stale" and chunks[0] != b"stale chunk"
    assert manifest["init"]["sha256"] == hashlib.sha256(init).hexdigest()
    assert upstream.hits["song.mp3"] == 1


async def test_live_manifest_then_complete(make_gateway: Any, upstream: Any) -> None:
    client = await make_gateway(**{"sources.url": {"allow_hosts": [f"127.0.0.1:{upstream.port}"]}})
    tid = (await (await post_url(client, f"{upstream.base}/audio/song.mp3")).json())["id"]
    r = await client.get(f"/v1/tracks/{tid}/manifest")
    live = await r.json()
    assert live["chunks"] and live["init"]["size"] > 0
    if not live["complete"]:
        assert live["duration"] is None and r.headers["Cache-Control"] == "no-cache"
    manifest, _, _ = await fetch_all(client, tid)
    assert manifest["chunks"][: len(live["chunks"])] == live["chunks"]
