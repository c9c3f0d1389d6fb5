"""The fMP4 renditions over HTTP: ``?rendition=`` on a track's URLs, the manifest's
``renditions`` list, fragments with their SHA-256, Range and /stream, single flight."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gateway.media import RENDITIONS
from gateway.media.catalog import track_id_for
from tests.support.audio import decoded_seconds, ffmpeg_bin

EXPECTED = [
    {"name": "webm", "mime": 'audio/webm; codecs="opus"'},
    {"name": "fmp4-opus", "mime": 'audio/mp4; codecs="Opus"'},
    {"name": "fmp4-aac", "mime": 'audio/mp4; codecs="mp4a.40.2"'},
]


async def fetch(client: Any, tid: str, rendition: str) -> tuple[dict[str, Any], bytes, list[bytes]]:
    q = f"?rendition={rendition}"
    manifest = await (await client.get(f"/v1/tracks/{tid}/manifest{q}")).json()
    while not manifest["complete"]:
        await asyncio.sleep(0.1)
        manifest = await (await client.get(f"/v1/tracks/{tid}/manifest{q}")).json()
    init = await (await client.get(f"/v1/tracks/{tid}/init{q}")).read()
    chunks = [await (await client.get(f"/v1/tracks/{tid}/chunks/{c['index']}{q}")).read() for c in manifest["chunks"]]
    return manifest, init, chunks


@pytest.mark.parametrize(("rendition", "mime"), [(r["name"], r["mime"]) for r in EXPECTED[1:]])
async def test_fmp4_rendition_contract(make_gateway: Any, audio_dir: Path, rendition: str, mime: str) -> None:
    client = await make_gateway()
    tid = track_id_for("local", str((audio_dir / "short.flac").resolve()))
    manifest, init, chunks = await fetch(client, tid, rendition)
    assert manifest["mime"] == mime and manifest["renditions"] == EXPECTED
    assert init[4:8] == b"ftyp" and all(c[4:8] == b"moof" for c in chunks)
    assert manifest["init"] == {"size": len(init), "sha256": hashlib.sha256(init).hexdigest()}
    for i, (meta, data) in enumerate(zip(manifest["chunks"], chunks, strict=True)):
        assert meta["index"] == i and meta["size"] == len(data)
        assert meta["sha256"] == hashlib.sha256(data).hexdigest()
    assert len(chunks) == 4  # 7 s in 2 s fragments
    assert abs(manifest["duration"] - 7.0) < 0.1
    whole = init + b"".join(chunks)
    decoded = subprocess.run(
        [ffmpeg_bin(), "-hide_banner", "-loglevel", "error", "-xerror", "-i", "pipe:0", "-f", "null", "-"],
        input=whole, capture_output=True, timeout=60,
    )  # fmt: skip
    assert decoded.returncode == 0 and decoded.stderr == b"", decoded.stderr
    assert abs(decoded_seconds(whole) - 7.0) < 0.1

    q = f"?rendition={rendition}"
    r = await client.get(f"/v1/tracks/{tid}/chunks/1{q}")
    assert r.headers["Content-Type"] == "audio/mp4"
    assert r.headers["ETag"] == f'"{manifest["chunks"][1]["sha256"]}"'
    assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    ranged = await client.get(f"/v1/tracks/{tid}/chunks/1{q}", headers={"Range": "bytes=8-15"})
    assert ranged.status == 206 and await ranged.read() == chunks[1][8:16]
    stream = await client.get(f"/v1/tracks/{tid}/stream{q}")
    assert stream.status == 200 and stream.headers["Content-Type"] == "audio/mp4"
    assert await stream.read() == whole
    part = await client.get(f"/v1/tracks/{tid}/stream{q}", headers={"Range": f"bytes={len(init) - 4}-{len(init) + 9}"})
    assert part.status == 206 and await part.read() == whole[len(init) - 4 : len(init) + 10]

    # The default rendition is untouched and lists the same renditions.
    default = await (await client.get(f"/v1/tracks/{tid}/manifest")).json()
    assert default["mime"] == 'audio/webm; codecs="opus"' and default["renditions"] == EXPECTED
    assert default["rendition"] != manifest["rendition"]
    assert (await client.get(f"/v1/tracks/{tid}/chunks/0")).headers["Content-Type"] == "audio/webm"
    # The fMP4 manifest borrows the loudness the default's transcode measured.
    assert manifest["loudness_lufs"] is None or manifest["loudness_lufs"] == default["loudness_lufs"]
    again = await (await client.get(f"/v1/tracks/{tid}/manifest{q}")).json()
    assert again["loudness_lufs"] == default["loudness_lufs"] and again["true_peak_db"] == default["true_peak_db"]


async def test_fmp4_is_bit_exact_after_eviction(make_gateway: Any, audio_dir: Path) -> None:
    client = await make_gateway()
    tid = track_id_for("local", str((audio_dir / "short.flac").resolve()))
    first = await fetch(client, tid, "fmp4-opus")
    client.server.app[RENDITIONS].default.store.purge(tid)
    second = await fetch(client, tid, "fmp4-opus")
    assert first == second


async def test_made_only_when_asked_and_single_flight(
    make_gateway: Any, audio_dir: Path, ffmpeg_counter: tuple[str, Path]
) -> None:
    wrapper, spawns = ffmpeg_counter
    client = await make_gateway(transcode={"ffmpeg": wrapper})
    tid = track_id_for("local", str((audio_dir / "tone_a.flac").resolve()))
    manifest = await (await client.get(f"/v1/tracks/{tid}/manifest")).json()
    while not manifest["complete"]:
        await asyncio.sleep(0.1)
        manifest = await (await client.get(f"/v1/tracks/{tid}/manifest")).json()
    renditions = client.server.app[RENDITIONS]
    assert len(renditions.made()) == 1  # WebM only: nobody asked for fMP4
    assert len(spawns.read_text().split()) == 1
    paths = [f"/v1/tracks/{tid}/{p}?rendition=fmp4-opus" for p in ("init", "chunks/0", "chunks/1", "stream")] * 4
    responses = await asyncio.gather(*(client.get(p) for p in paths))
    assert all(r.status == 200 for r in responses)
    bodies: dict[str, set[bytes]] = {}
    for path, r in zip(paths, responses, strict=True):
        bodies.setdefault(path, set()).add(await r.read())
    assert all(len(b) == 1 for b in bodies.values())
    assert len(renditions.made()) == 2
    assert len(spawns.read_text().split()) == 2  # one transcode for sixteen cold requests
    _, init, chunks = await fetch(client, tid, "fmp4-opus")
    assert len(spawns.read_text().split()) == 2  # then served from the store
    stream_path = f"/v1/tracks/{tid}/stream?rendition=fmp4-opus"
    assert bodies[stream_path] == {init + b"".join(chunks)}


@pytest.mark.parametrize("path", ["manifest", "init", "chunks/0", "stream"])
async def test_unknown_rendition(make_gateway: Any, audio_dir: Path, path: str) -> None:
    client = await make_gateway()
    tid = track_id_for("local", str((audio_dir / "short.flac").resolve()))
    r = await client.get(f"/v1/tracks/{tid}/{path}?rendition=flac")
    assert r.status == 404
    assert (await r.json())["error"] == "rendition_not_found"
