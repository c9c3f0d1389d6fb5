"""SoundCloud through the public contract: a real app, real ffmpeg, a fake SoundCloud on loopback.

Every test ends in a playable track whose decoded length matches the medium
the fake served, or in the right JSON error, and checks what was asked of
SoundCloud (the fake counts every request).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.errors import ZtreamError
from gateway.media import CATALOG, MEDIA
from gateway.media.catalog import track_id_for
from gateway.sources.soundcloud import (
    MAX_SET_TRACKS,
    SiteEndpoints,
    SoundCloudRef,
    SoundCloudSource,
    choose_official_stream,
    choose_transcoding,
    parse_soundcloud_set_url,
    parse_soundcloud_url,
    playlist_info,
    retry_after_seconds,
)
from tests.support.audio import decoded_seconds
from tests.support.fake_soundcloud import (
    CLIENT_ID,
    LONG_SET_IDS,
    MP3_PROGRESSIVE,
    OFFICIAL_ID,
    OFFICIAL_SECRET,
    ROTATED_CLIENT_ID,
    SECONDS,
    TRACK_BATCH_LIMIT,
    FakeSet,
    FakeSoundCloud,
    FakeTrack,
    build_media,
)
from tests.support.gateway import fetch_all

TOLERANCE = 0.3


@pytest.fixture(scope="session")
def sc_media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_media(tmp_path_factory.mktemp("soundcloud-media"))


@pytest.fixture
async def fake(sc_media: Path) -> AsyncIterator[FakeSoundCloud]:
    sc = FakeSoundCloud(sc_media)
    server = TestServer(sc.app, host="127.0.0.1")
    await server.start_server()
    sc.base = f"http://127.0.0.1:{server.port}"
    sc.port = server.port  # type: ignore[attr-defined]
    yield sc
    await server.close()


@pytest.fixture
def soundcloud_gateway(fake: FakeSoundCloud, make_gateway: Any) -> Any:
    """``soundcloud_gateway(mode, client_id)``: an in-process gateway whose SoundCloud
    source talks to the fake (api-v2 by default, ``mode="official"`` the official API)."""

    async def make(mode: str = "v2", client_id: str = CLIENT_ID) -> TestClient:
        soundcloud = {"client_id": client_id, "api_base": f"{fake.base}/v2", "auth_base": fake.base}
        if mode == "official":
            soundcloud.update(client_id=OFFICIAL_ID, client_secret=OFFICIAL_SECRET, api_base=f"{fake.base}/api")
        client: TestClient = await make_gateway(library=None, **{
            "sources.soundcloud": soundcloud,
            # SoundCloud's hosts obey the same address rules as any upstream.
            "sources.url": {"allow_hosts": [f"127.0.0.1:{fake.port}"]},  # type: ignore[attr-defined]
        })
        source(client).site = SiteEndpoints(page=f"{fake.base}/", assets=f"{fake.base}/assets/",
                                            short=f"{fake.base}/on/")
        return client

    return make


def source(client: TestClient) -> SoundCloudSource:
    found = client.server.app[MEDIA].sources["soundcloud"]
    assert isinstance(found, SoundCloudSource)
    return found


async def post(client: TestClient, url: str) -> tuple[int, dict[str, Any], Any]:
    r = await client.post("/v1/tracks", json={"url": url})
    return r.status, await r.json(), r.headers


async def soundcloud_bytes(client: TestClient) -> float:
    text = await (await client.get("/metrics")).text()
    match = re.search(r'^ztream_upstream_bytes_total\{source="soundcloud"\} (\S+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def play(client: TestClient, track_id: str) -> float:
    """Transcode the track through the API; the decoded seconds of init + all chunks."""
    manifest, init, chunks = await fetch_all(client, track_id)
    assert manifest["complete"]
    return decoded_seconds(init + b"".join(chunks))


def sc_id(numeric: int) -> str:
    return track_id_for("soundcloud", f"tracks:{numeric}")


def served(fake: FakeSoundCloud, track_id: int) -> list[tuple[str, int]]:
    """(file, status) of every media request for the track, in order."""
    return [(name, status) for tid, _, name, _, status in fake.media_log if tid == track_id]


# -- api-v2 -----------------------------------------------------------------------------------


async def test_progressive_mp3_with_metadata(soundcloud_gateway: Any, fake: FakeSoundCloud) -> None:
    client = await soundcloud_gateway()
    status, track, _ = await post(client, "https://soundcloud.com/artist-one/progressive-song")
    assert status == 201, track
    assert track["id"] == sc_id(101) and track["source"] == "soundcloud"
    assert track["title"] == "Progressive Song" and track["artist"] == "artist-one"
    assert track["duration"] == SECONDS["progressive"]
    assert track["artwork"] == "https://i1.sndcdn.com/artworks-101-t500x500.jpg"
    assert track["permalink"] == "https://soundcloud.com/artist-one/progressive-song"
    assert track["url"] == "soundcloud:tracks:101" and "preview" not in track
    # Registering resolved the metadata only; the media URL waits for a transcode.
    assert fake.hits["v2/resolve"] == 1 and fake.hits["v2/media"] == 0
    assert abs(await play(client, track["id"]) - SECONDS["progressive"]) < TOLERANCE
    assert fake.hits["v2/media/mp3_1_0"] == 1  # progressive MP3 won over HLS MP3 and AAC
    assert await soundcloud_bytes(client) > (fake.media_dir / "progressive.mp3").stat().st_size
    again, same, _ = await post(client, "https://soundcloud.com/artist-one/progressive-song")
    assert again == 200 and same["id"] == track["id"]
    assert fake.hits["v2/resolve"] == 1  # the metadata is cached


async def test_hls_mp3_segments_one_resolution_for_many_listeners(soundcloud_gateway: Any, fake: FakeSoundCloud) -> None:
    client = await soundcloud_gateway()
    status, track, _ = await post(client, "https://soundcloud.com/artist-one/hls-mp3-song")
    assert status == 201
    before = await soundcloud_bytes(client)

    async def listen() -> bytes:
        r = await client.get(f"/v1/tracks/{track['id']}/stream")
        assert r.status == 200
        return await r.read()

    bodies = await asyncio.gather(*(listen() for _ in range(6)))
    assert len(set(bodies)) == 1
    assert abs(decoded_seconds(bodies[0]) - SECONDS["hls_mp3"]) < TOLERANCE
    # One stream resolution per transcode, never one per listener.
    assert fake.hits["v2/media"] == 1 and fake.hits["v2/media/mp3_0_0"] == 1
    files = [name for name, _ in served(fake, 102)]
    assert files[0] == "playlist.m3u8"
    segments = files[1:]
    assert len(segments) >= 4 and segments == [f"mp3_{i}.ts" for i in range(len(segments))]
    sizes = sum((fake.media_dir / "hls_mp3" / name).stat().st_size for name in segments)
    assert await soundcloud_bytes(client) - before >= sizes


async def test_hls_fmp4_aac_with_map_and_relative_uris(soundcloud_gateway: Any, fake: FakeSoundCloud) -> None:
    client = await soundcloud_gateway()
    status, track, _ = await post(client, "https://soundcloud.com/artist-two/aac-song")
    assert status == 201 and "preview" not in track  # the snippet is skipped, the encrypted stream too
    assert abs(await play(client, track["id"]) - SECONDS["hls_aac"]) < TOLERANCE
    assert fake.hits["v2/media/aac_160k"] == 1
    files = [name for name, _ in served(fake, 103)]
    assert files[:2] == ["playlist.m3u8", "init.mp4"]  # the init section goes first
    assert files[2:] == [f"aac_{i}.m4s" for i in range(len(files) - 2)] and len(files) > 5
    assert await soundcloud_bytes(client) > 0


@pytest.mark.parametrize(("numeric", "page", "expire_at", "seconds"), [
    (102, "https://soundcloud.com/artist-one/hls-mp3-song", 2, SECONDS["hls_mp3"]),
    (103, "https://soundcloud.com/artist-two/aac-song", 3, SECONDS["hls_aac"]),
])
async def test_signature_expiring_midway_resumes_at_that_segment(
    soundcloud_gateway: Any, fake: FakeSoundCloud, numeric: int, page: str, expire_at: int, seconds: float
) -> None:
    client = await soundcloud_gateway()
    fake.expire_at[numeric] = expire_at
    status, track, _ = await post(client, page)
    assert status == 201
    assert abs(await play(client, track["id"]) - seconds) < TOLERANCE
    log = served(fake, numeric)
    refused = [name for name, code in log if code == 403]
    assert len(refused) == 1 and refused[0].endswith(f"_{expire_at}.{refused[0].rsplit('.', 1)[1]}")
    ok = [name for name, code in log if code == 200 and name.endswith((".ts", ".m4s"))]
    # Each segment went downstream once, in order: the refused one came again after re-resolving.
    assert ok == sorted(ok, key=lambda n: int(n.rsplit("_", 1)[1].split(".")[0])) and len(ok) == len(set(ok))
    assert [n for n, _ in log].count("init.mp4") == (1 if numeric == 103 else 0)
    assert fake.hits["v2/media"] == 2 and source(client).requests["stream_url"] == 2
    assert await soundcloud_bytes(client) > 0


async def test_snipped_preview_is_marked(soundcloud_gateway: Any, fake: FakeSoundCloud) -> None:
    client = await soundcloud_gateway()
    status, track, _ = await post(client, "https://soundcloud.com/artist-two/go-plus-song")
    assert status == 201
    assert track["preview"] is True and track["title"] == "Go+ Song (preview)"
    assert track["duration"] == SECONDS["preview"]  # the snippet's length, not the full 240 s
    assert abs(await play(client, track["id"]) - SECONDS["preview"]) < TOLERANCE
    assert fake.hits["v2/media/mp3_snip"] == 1


async def test_rate_limit_answers_503_with_retry_after_and_backs_off(soundcloud_gateway: Any, fake: FakeSoundCloud) -> None:
    client = await soundcloud_gateway()
    fake.rate_limit["resolve"] = 7
    status, body, headers = await post(client, "https://soundcloud.com/artist-one/progressive-song")
    assert status == 503 and body["error"] == "soundcloud_rate_limited" and body["detail"]
    assert 6 <= int(headers["Retry-After"]) <= 7
    del fake.rate_limit["resolve"]
    hits = fake.hits["v2/resolve"]
    status, body, headers = await post(client, "https://soundcloud.com/artist-one/hls-mp3-song")
    assert status == 503 and int(headers["Retry-After"]) >= 1
    assert fake.hits["v2/resolve"] == hits  # backing off: SoundCloud was not asked
    assert client.server.app[CATALOG].get(sc_id(101)) is None

    # A 429 while resolving the stream reaches the listener the same way.
    other = await soundcloud_gateway()
    status, track, _ = await post(other, "https://soundcloud.com/artist-one/hls-mp3-song")
    assert status == 201
    fake.rate_limit["stream_url"] = 30
    r = await other.get(f"/v1/tracks/{track['id']}/manifest")
    assert r.status == 503 and (await r.json())["error"] == "soundcloud_rate_limited"
    assert 29 <= int(r.headers["Retry-After"]) <= 30


@pytest.mark.parametrize(("page", "status", "code"), [
    ("https://soundcloud.com/artist-three/secret-song", 404, "soundcloud_not_found"),  # private
    ("https://soundcloud.com/artist-three/deleted-song", 404, "soundcloud_not_found"),  # removed
    ("https://soundcloud.com/artist-three/blocked-song", 451, "soundcloud_geo_blocked"),
    ("https://soundcloud.com/artist-three/no-stream-song", 403, "soundcloud_not_streamable"),
    ("https://soundcloud.com/artist-three", 400, "bad_url"),  # a profile, not a track
    ("soundcloud:tracks:12x", 400, "bad_url"),
])
async def test_unavailable_tracks_give_clear_errors_and_cache_nothing(
    soundcloud_gateway: Any, fake: FakeSoundCloud, page: str, status: int, code: str
) -> None:
    client = await soundcloud_gateway()
    for attempt in range(2):
        got, body, _ = await post(client, page)
        assert (got, body["error"]) == (status, code), body
        assert body["detail"]
    if status != 400:
        assert fake.hits["v2/resolve"] == 2  # nothing cached: asked again
    tracks = (await (await client.get("/v1/tracks")).json())["tracks"]
    assert not [t for t in tracks if t["source"] == "soundcloud"]
    assert fake.hits["v2/media"] == 0


async def test_url_forms_share_one_track_id(soundcloud_gateway: Any, fake: FakeSoundCloud) -> None:
    client = await soundcloud_gateway()
    forms = [
        "https://soundcloud.com/artist-one/hls-mp3-song",
        "https://m.soundcloud.com/artist-one/hls-mp3-song",
        "https://www.soundcloud.com/artist-one/hls-mp3-song?in=artist-one/sets/mix&si=abc#t=0:10",
        "https://on.soundcloud.com/AbCd3",
        "soundcloud:tracks:102",
        "https://api.soundcloud.com/tracks/102",
    ]
    statuses = []
    for url in forms:
        status, track, _ = await post(client, url)
        assert track["id"] == sc_id(102), (url, track)
        statuses.append(status)
    assert statuses == [201] + [200] * (len(forms) - 1)
    assert fake.hits["short"] == 1
    # The short link led to the page URL already resolved, the id form to its cached JSON.
    assert fake.hits["v2/resolve"] == 1 and fake.hits["v2/track"] == 0
    assert abs(await play(client, sc_id(102)) - SECONDS["hls_mp3"]) < TOLERANCE
    status, body, _ = await post(client, "https://on.soundcloud.com/Nope1")
    assert status == 404 and body["error"] == "soundcloud_not_found"


async def test_client_id_discovery_and_rediscovery(soundcloud_gateway: Any, fake: FakeSoundCloud) -> None:
    client = await soundcloud_gateway(client_id="auto")
    status, track, _ = await post(client, "https://soundcloud.com/artist-one/progressive-song")
    assert status == 201
    assert fake.hits["page"] == 1 and fake.hits["script/49-5e6f.js"] == 1
    assert fake.hits["script/vendor-1a2b.js"] == 0  # bundles are tried from the last
    # SoundCloud rotates its public client id: the cached one gets 401.
    fake.valid_client_ids = {ROTATED_CLIENT_ID}
    fake.site_client_id = ROTATED_CLIENT_ID
    assert abs(await play(client, track["id"]) - SECONDS["progressive"]) < TOLERANCE
    assert fake.hits["v2/401"] == 1 and fake.hits["page"] == 2
    status, track, _ = await post(client, "https://soundcloud.com/artist-one/hls-mp3-song")
    assert status == 201 and fake.hits["page"] == 2  # the new id is cached in turn
    assert await soundcloud_bytes(client) > 0


# -- the official API ----------------------------------------------------------------------------


async def test_official_api_hls_aac_and_one_token(soundcloud_gateway: Any, fake: FakeSoundCloud) -> None:
    client = await soundcloud_gateway("official")
    status, track, _ = await post(client, "https://soundcloud.com/artist-two/aac-song")
    assert status == 201 and track["id"] == sc_id(103) and track["artist"] == "artist-two"
    status, other, _ = await post(client, "https://soundcloud.com/artist-one/hls-mp3-song")
    assert status == 201
    assert abs(await play(client, track["id"]) - SECONDS["hls_aac"]) < TOLERANCE
    files = [name for name, _ in served(fake, 103)]
    assert files[:2] == ["playlist.m3u8", "init.mp4"]
    assert fake.hits["token"] == 1  # one token for every request so far
    assert fake.hits["api/resolve"] == 2 and fake.hits["api/streams"] == 1

    # SoundCloud expires the token early: one 401, one new token, and on.
    fake.revoke_tokens()
    status, _, _ = await post(client, "soundcloud:tracks:101")
    assert status == 201
    assert fake.hits["api/401"] == 1 and fake.hits["token"] == 2
    assert abs(await play(client, other["id"]) - SECONDS["hls_aac"]) < TOLERANCE
    assert fake.hits["token"] == 2

    # Near its expiry the token is renewed before SoundCloud would refuse it.
    sc = source(client)
    sc.clock = lambda: time.monotonic() + 3590
    status, _, _ = await post(client, "soundcloud:tracks:102")  # registered above: 200
    assert status == 200 and fake.hits["token"] == 3 and fake.hits["api/401"] == 1
    assert await soundcloud_bytes(client) > 0


async def test_official_api_errors_and_preview(soundcloud_gateway: Any, fake: FakeSoundCloud) -> None:
    client = await soundcloud_gateway("official")
    cases = [
        ("https://soundcloud.com/artist-three/secret-song", 403, "soundcloud_private"),
        ("https://soundcloud.com/artist-three/blocked-song", 451, "soundcloud_geo_blocked"),
        ("https://soundcloud.com/artist-three/no-stream-song", 403, "soundcloud_not_streamable"),
        ("https://soundcloud.com/nobody/nothing", 404, "soundcloud_not_found"),
    ]
    for page, status, code in cases:
        got, body, _ = await post(client, page)
        assert (got, body["error"]) == (status, code), (page, body)
    status, track, _ = await post(client, "https://soundcloud.com/artist-two/go-plus-song")
    assert status == 201 and track["preview"] is True and track["title"].endswith("(preview)")
    assert abs(await play(client, track["id"]) - SECONDS["preview"]) < TOLERANCE
    assert fake.hits["token"] == 1


# -- sets -----------------------------------------------------------------------------------------

# "A Mix" lists 101, private 105, 102, geo-blocked 106, 103, preview-only 104, not streamable 107,
# 101 again, and an unknown 999: what plays, in the set's order.
MIX_PLAYABLE = [101, 102, 103, 104]


async def set_error(client: TestClient, url: str) -> tuple[int, str]:
    with pytest.raises(ZtreamError) as info:
        await source(client).register_set(url)
    body = info.value.to_json()
    return info.value.status, str(body["error"])


@pytest.mark.parametrize("mode", ["v2", "official"])
async def test_set_gives_every_playable_track_in_order(soundcloud_gateway: Any, fake: FakeSoundCloud, mode: str) -> None:
    client = await soundcloud_gateway(mode)
    sc = source(client)
    title, permalink, tracks = await sc.register_set("https://m.soundcloud.com/artist-one/sets/a-mix?si=x")
    assert (title, permalink) == ("A Mix", "https://soundcloud.com/artist-one/sets/a-mix")
    assert [t.id for t in tracks] == [sc_id(n) for n in MIX_PLAYABLE]
    assert [t.locator for t in tracks] == [f"soundcloud:tracks:{n}" for n in MIX_PLAYABLE]
    assert [t.preview for t in tracks] == [False, False, False, True]
    assert tracks[0].title == "Progressive Song" and tracks[0].artist == "artist-one"
    assert tracks[3].title == "Go+ Song (preview)"
    # Three whole tracks at the head (private 105 is an id only there), the rest fetched in one batch:
    # one request for the set, one for the stubs.
    assert fake.batches == [[105, 106, 103, 104, 107, 999]]
    assert sc.requests["resolve"] == 2
    # The API URL SoundCloud's embed codes carry names the same set.
    _, _, again = await sc.register_set("https://api.soundcloud.com/playlists/201")
    assert [t.id for t in again] == [t.id for t in tracks]
    # A set's track is the track its own URL registers, and plays with no further resolution.
    resolves = sc.requests["resolve"]
    client.server.app[CATALOG].add(tracks[2])
    assert abs(await play(client, tracks[2].id) - SECONDS["hls_aac"]) < TOLERANCE
    assert sc.requests["resolve"] == resolves
    status, track, _ = await post(client, "https://soundcloud.com/artist-two/aac-song")
    assert status in (200, 201) and track["id"] == tracks[2].id


@pytest.mark.parametrize("mode", ["v2", "official"])
async def test_long_set_is_completed_in_bounded_batches(soundcloud_gateway: Any, fake: FakeSoundCloud, mode: str) -> None:
    client = await soundcloud_gateway(mode)
    _, _, tracks = await source(client).register_set("https://soundcloud.com/artist-two/sets/long-set")
    assert [t.locator for t in tracks] == [f"soundcloud:tracks:{n}" for n in LONG_SET_IDS]
    stubs = list(LONG_SET_IDS[fake.set_full:])
    assert [n for batch in fake.batches for n in batch] == stubs
    assert all(len(batch) <= TRACK_BATCH_LIMIT for batch in fake.batches) and len(fake.batches) == 3

    # A set longer than the bound gives its first MAX_SET_TRACKS tracks, and asks only for those.
    huge = tuple(range(5000, 5000 + MAX_SET_TRACKS + 200))
    fake.tracks.update({n: FakeTrack(n, "artist-four", f"huge-{n}", f"Huge {n}", (MP3_PROGRESSIVE,)) for n in huge})
    fake.sets[205] = FakeSet(205, "artist-four", "huge", "Huge", huge)
    fake.batches.clear()
    _, _, tracks = await source(client).register_set("https://soundcloud.com/artist-four/sets/huge")
    assert [t.locator for t in tracks] == [f"soundcloud:tracks:{n}" for n in huge[:MAX_SET_TRACKS]]
    assert len(fake.batches) == -(-(MAX_SET_TRACKS - fake.set_full) // TRACK_BATCH_LIMIT)
    assert max(n for batch in fake.batches for n in batch) == huge[MAX_SET_TRACKS - 1]


@pytest.mark.parametrize(("mode", "url", "status", "code"), [
    ("v2", "https://soundcloud.com/artist-three/sets/hidden-set", 404, "soundcloud_not_found"),
    ("official", "https://soundcloud.com/artist-three/sets/hidden-set", 403, "soundcloud_private"),
    ("v2", "https://soundcloud.com/artist-three/sets/no-such-set", 404, "soundcloud_not_found"),
    ("v2", "https://api.soundcloud.com/playlists/777", 404, "soundcloud_not_found"),
    ("official", "https://api.soundcloud.com/playlists/777", 404, "soundcloud_not_found"),
    ("v2", "https://soundcloud.com/artist-three/sets/nothing-plays", 404, "soundcloud_not_found"),
    ("official", "https://soundcloud.com/artist-three/sets/nothing-plays", 404, "soundcloud_not_found"),
    ("v2", "https://soundcloud.com/artist-one/progressive-song", 400, "bad_url"),
])
async def test_set_errors(soundcloud_gateway: Any, fake: FakeSoundCloud, mode: str, url: str, status: int,
                          code: str) -> None:
    client = await soundcloud_gateway(mode)
    assert await set_error(client, url) == (status, code)
    # A set URL is not a track: POST /v1/tracks still says so.
    got, body, _ = await post(client, "https://soundcloud.com/artist-one/sets/a-mix")
    assert (got, body["error"]) == (400, "soundcloud_not_a_track")


async def test_set_rate_limited_midway_is_503(soundcloud_gateway: Any, fake: FakeSoundCloud) -> None:
    client = await soundcloud_gateway()
    fake.set_full = 0  # every track is a stub: the batch is what gets the 429
    fake.rate_limit["resolve"] = 30
    status, code = await set_error(client, "https://soundcloud.com/artist-one/sets/a-mix")
    assert (status, code) == (503, "soundcloud_rate_limited")


def test_set_parsing() -> None:
    assert parse_soundcloud_set_url("https://www.SoundCloud.com/u/sets/n/?in=x") == \
        SoundCloudRef("page", "https://soundcloud.com/u/sets/n")
    assert parse_soundcloud_set_url("https://api.soundcloud.com/playlists/42") == SoundCloudRef("id", "42")
    assert parse_soundcloud_set_url("https://api-v2.soundcloud.com/playlists/soundcloud:playlists:7").value == "7"
    for bad in ("https://soundcloud.com/u/n", "https://soundcloud.com/u/sets", "https://evil.com/u/sets/n",
                "https://api.soundcloud.com/tracks/1", "https://soundcloud.com:1/u/sets/n", "soundcloud:playlists:1"):
        with pytest.raises(ZtreamError) as info:
            parse_soundcloud_set_url(bad)
        assert info.value.to_json()["error"] == "bad_url", bad

    whole = {"kind": "track", "id": 1, "title": "One"}
    info = playlist_info({"kind": "playlist", "urn": "soundcloud:playlists:9", "title": "", "tracks": [
        whole, {"id": 2, "kind": "track"}, "junk", {"kind": "track"}, {"id": 1}, {"urn": "soundcloud:tracks:3"}]})
    assert info.id == 9 and info.title == "SoundCloud set 9" and info.permalink is None
    assert [(e.id, e.data is not None) for e in info.entries] == [(1, True), (2, False), (3, False)]
    stubs = [{"id": n} for n in range(1, 2000)]
    assert len(playlist_info({"kind": "playlist", "id": 1, "tracks": stubs}).entries) == MAX_SET_TRACKS
    for data, code in ((whole, "soundcloud_not_a_set"), ({"kind": "user", "id": 1}, "soundcloud_not_a_set"),
                       ([], "soundcloud_bad_answer"), ({"kind": "playlist"}, "soundcloud_bad_answer")):
        with pytest.raises(ZtreamError) as failed:
            playlist_info(data)
        assert failed.value.to_json()["error"] == code


# -- pure helpers ------------------------------------------------------------------------------


def test_url_classification() -> None:
    ref = parse_soundcloud_url("https://M.SoundCloud.com/a/b/s-SeCrEt?x=1")
    assert ref == SoundCloudRef("page", "https://soundcloud.com/a/b/s-SeCrEt")
    assert parse_soundcloud_url("soundcloud:tracks:42").kind == "id"
    assert parse_soundcloud_url("https://on.soundcloud.com/XyZ12").kind == "short"
    for bad in ("https://soundcloud.com/", "https://evil.com/a/b", "https://soundcloud.com:8443/a/b",
                "https://user@soundcloud.com/a/b", "soundcloud:users:1", "https://api.soundcloud.com/users/1"):
        with pytest.raises(Exception) as info:
            parse_soundcloud_url(bad)
        assert getattr(info.value, "code", None) == "bad_url", bad


def test_transcoding_and_stream_choice() -> None:
    def t(protocol: str, mime: str, snipped: bool = False) -> dict[str, Any]:
        return {"url": f"u/{protocol}/{mime}/{snipped}", "snipped": snipped,
                "format": {"protocol": protocol, "mime_type": mime}}

    opus, aac = t("hls", 'audio/ogg; codecs="opus"'), t("hls", 'audio/mp4; codecs="mp4a.40.2"')
    assert choose_transcoding([opus, aac]) == (aac, False)
    assert choose_transcoding([t("progressive", "audio/mpeg", True), opus]) == (opus, False)
    assert choose_transcoding([t("ctr-encrypted-hls", "audio/mp4"), t("progressive", "audio/mpeg", True)])[1] is True
    with pytest.raises(Exception, match="no stream"):
        choose_transcoding([t("ctr-encrypted-hls", "audio/mp4")])
    assert choose_official_stream({"hls_aac_96_url": "a", "preview_mp3_128_url": "p"}) == ("a", "hls", False)
    assert choose_official_stream({"hls_aac_160_url": None, "preview_mp3_128_url": "p"}) == ("p", "auto", True)


def test_retry_after_parsing() -> None:
    assert retry_after_seconds("120", 0) == 120
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470.0) == 10
    assert retry_after_seconds("soon", 0) is None and retry_after_seconds(None, 0) is None


def test_package_exports_what_importers_use() -> None:
    import gateway.sources.soundcloud as package

    assert sorted(package.__all__) == sorted(n for n in package.__all__ if hasattr(package, n))
    # gateway's source builder and the admin tests import these two by this path.
    assert {"SoundCloudSource", "SoundCloudDisabled"} <= set(package.__all__)
