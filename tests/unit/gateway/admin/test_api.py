"""The admin API: authentication, sources (secrets write-only), live reloads, purge, stats.

In-process gateways here are built the way ``ztream serve`` builds them: from
a TOML file (``load_config``) with ``create_app(config, config_path=...)``, so
the overlay next to the file and reloads of it are the real ones. SIGHUP and
start-up errors use real ``ztream serve`` subprocesses.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.admin import LIVE_CONFIG
from gateway.admin.api import Attempts, sources_view
from gateway.admin.overlay import dump_toml, edit_toml
from gateway.config import (
    Config,
    ConfigError,
    SoundCloudConfig,
    load_config,
    overlay_path,
)
from gateway.media import MEDIA, STORE
from gateway.media.catalog import track_id_for
from gateway.sources import FETCH_SOURCES, LOCAL_SOURCE
from gateway.sources.soundcloud import SoundCloudDisabled, SoundCloudSource
from gateway.sources.url import UrlSource
from tests.support.audio import make_audio
from tests.support.gateway import ROOT, ZTREAM, base_config, to_toml
from tests.support.upstream import Upstream

pytestmark = [pytest.mark.timeout(60)]

TOKEN = "admin-token-Zq8v"
SECRET = "sc-secret-Pp41xYz"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def upstream_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("admin-upstream")
    return {"song.mp3": make_audio(d / "song.mp3", 6, freq=440, fmt="mp3")}


@pytest.fixture
async def upstream(upstream_files: dict[str, Path]) -> Any:
    up = Upstream(upstream_files)
    server = TestServer(up.app, host="127.0.0.1")
    await server.start_server()
    up.port = server.port  # type: ignore[attr-defined]
    up.host = f"127.0.0.1:{server.port}"  # type: ignore[attr-defined]
    up.song = f"http://127.0.0.1:{server.port}/audio/song.mp3"  # type: ignore[attr-defined]
    yield up
    await server.close()


class Gateway:
    """An in-process gateway started from its own TOML file."""

    def __init__(self, client: TestClient, path: Path, tables: dict[str, dict[str, Any]]) -> None:
        self.client = client
        self.path = path
        self.tables = tables
        self.app = client.server.app

    @property
    def overlay(self) -> Path:
        return overlay_path(self.path, Path(self.tables["cache"]["dir"]))

    def write(self, text: str | None = None) -> None:
        self.path.write_text(to_toml(self.tables) if text is None else text)

    async def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        r = await self.client.get(path, **kw)
        return r.status, await r.json()

    async def admin(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        r = await self.client.request(method, path, json=body, headers=AUTH if headers is None else headers)
        return r.status, await r.json()


@pytest.fixture
def admin_gateway(make_gateway: Any, tmp_path: Path, audio_dir: Path) -> Any:
    """``admin_gateway(token=..., **sections)``: an in-process gateway started from its
    own TOML file (so the admin API can rewrite and reload it), over the generated library."""
    count = 0

    async def make(*, token: str = TOKEN, **sections: dict[str, Any]) -> Gateway:
        nonlocal count
        n, count = count, count + 1
        tables = base_config(tmp_path / f"gw{n}")
        tables["sources.local"]["dirs"] = [str(audio_dir)]
        tables["admin"] = {"token": token}
        for name, values in sections.items():
            tables.setdefault(name.replace("__", "."), {}).update(values)
        path = tmp_path / f"gw{n}.toml"
        path.write_text(to_toml(tables))
        client = await make_gateway(config_path=path)
        return Gateway(client, path, tables)

    return make


async def post_url(gw: Gateway, url: str) -> tuple[int, Any]:
    r = await gw.client.post("/v1/tracks", json={"url": url})
    return r.status, await r.json()


async def fetch_all(gw: Gateway, track_id: str) -> dict[str, Any]:
    r = await gw.client.get(f"/v1/tracks/{track_id}/manifest")
    assert r.status == 200, await r.text()
    manifest = await r.json()
    while not manifest["complete"]:
        await asyncio.sleep(0.05)
        manifest = await (await gw.client.get(f"/v1/tracks/{track_id}/manifest")).json()
    for c in manifest["chunks"]:
        assert (await gw.client.get(f"/v1/tracks/{track_id}/chunks/{c['index']}")).status == 200
    return manifest


# -- authentication -------------------------------------------------------------------


async def test_admin_is_off_without_a_token(admin_gateway: Any) -> None:
    gw = await admin_gateway(token="")
    for method, path in [("GET", "/v1/admin/sources"), ("GET", "/v1/admin/stats"), ("POST", "/v1/admin/reload"),
                         ("PUT", "/v1/admin/sources"), ("DELETE", "/v1/admin/tracks/x"), ("GET", "/admin")]:
        r = await gw.client.request(method, path, headers={"Authorization": "Bearer "})
        assert r.status == 404, (method, path)
        assert (await r.json())["error"] == "not_found"


async def test_no_token_401_wrong_token_403_right_token_200(admin_gateway: Any) -> None:
    gw = await admin_gateway()
    for headers in ({}, {"Authorization": "Basic YWRtaW46eA=="}, {"Authorization": "Bearer "}):
        r = await gw.client.get("/v1/admin/sources", headers=headers)
        assert r.status == 401 and (await r.json())["error"] == "unauthorized"
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
    for wrong in (TOKEN[:-1], TOKEN + "x", TOKEN.upper(), "x"):
        status, body = await gw.admin("GET", "/v1/admin/stats", headers={"Authorization": f"Bearer {wrong}"})
        assert status == 403 and body["error"] == "forbidden"
    r = await gw.client.get("/v1/admin/sources", headers=AUTH)
    assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
    assert "Access-Control-Allow-Origin" not in r.headers
    # The same-origin page: strict CSP, never framed, no token inside.
    page = await gw.client.get("/admin")
    text = await page.text()
    assert page.status == 200 and "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert TOKEN not in text and 'src="client/admin.js"' in text


async def test_repeated_wrong_tokens_are_rate_limited(admin_gateway: Any) -> None:
    gw = await admin_gateway()
    wrong = {"Authorization": "Bearer nope"}
    for _ in range(10):
        assert (await gw.admin("GET", "/v1/admin/stats", headers=wrong))[0] == 403
    r = await gw.client.get("/v1/admin/stats", headers=AUTH)  # even the right token waits now
    assert r.status == 429 and (await r.json())["error"] == "rate_limited"
    assert 0 < int(r.headers["Retry-After"]) <= 60
    assert (await gw.client.get("/healthz")).status == 200  # nothing else is affected


def test_attempts_window() -> None:
    a = Attempts(limit=3, window=10.0, max_clients=2)
    for t in (0.0, 1.0, 2.0):
        assert a.blocked_for("x", t) == 0
        a.fail("x", t)
    assert a.blocked_for("x", 3.0) == pytest.approx(7.0)
    assert a.blocked_for("y", 3.0) == 0
    assert a.blocked_for("x", 10.5) == 0  # the first failure left the window
    a.fail("y", 11.0)
    a.fail("z", 11.0)  # over max_clients: the oldest client is forgotten
    assert a.blocked_for("x", 11.0) == 0 and len(a._failures) == 2


# -- sources: reading, validating, writing ------------------------------------------------


async def test_secrets_are_never_returned_or_logged(
    admin_gateway: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    gw = await admin_gateway(**{"sources.soundcloud": {"client_id": "cid-1", "client_secret": SECRET}})
    status, body = await gw.admin("GET", "/v1/admin/sources")
    assert status == 200
    assert body["soundcloud"]["client_id"] == "cid-1"
    assert body["soundcloud"]["client_secret"] == {"set": True}
    assert set(body) >= {"url", "local", "soundcloud", "saved_to"}
    assert body["url"]["allow_hosts"] == [] and body["local"]["dirs"]

    new_secret = "sc-secret-NEW-77"
    status, body = await gw.admin("PUT", "/v1/admin/sources", {"soundcloud": {"client_secret": new_secret}})
    assert status == 200, body
    assert body["soundcloud"]["client_secret"] == {"set": True} and "sources.soundcloud.client_secret" in body["changed"]
    # A mistyped secret is refused without being echoed.
    status, bad = await gw.admin("PUT", "/v1/admin/sources", {"soundcloud": {"client_secret": ["not-echoed-42"]}})
    assert status == 400 and "sources.soundcloud.client_secret" in bad["detail"] and "not-echoed-42" not in bad["detail"]

    answers = [json.dumps(body), json.dumps(bad)]
    for path in ("/v1/admin/sources", "/v1/admin/stats", "/metrics", "/v1/tracks"):
        r = await gw.client.get(path, headers=AUTH)
        answers.append(await r.text())
    for text in answers + [caplog.text]:
        assert SECRET not in text and new_secret not in text and TOKEN not in text and "not-echoed-42" not in text
    assert "sources.soundcloud.client_secret" in caplog.text  # the change is logged by key name
    # The secret is kept where it must be: in the overlay, readable by its owner only.
    assert new_secret in gw.overlay.read_text()
    assert stat.S_IMODE(gw.overlay.stat().st_mode) == 0o600
    live = gw.app[LIVE_CONFIG].current
    assert live.soundcloud.client_secret == new_secret
    assert sources_view(live)["soundcloud"]["client_secret"] == {"set": True}


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({"urls": {}}, "sources.urls"),
        ({"url": []}, "sources.url"),
        ({"url": {"allowhosts": ["a.example"]}}, "sources.url.allowhosts"),
        ({"url": {"allow_hosts": "a.example"}}, "sources.url.allow_hosts"),
        ({"url": {"allow_hosts": ["exa mple.org"]}}, "sources.url.allow_hosts"),
        ({"url": {"allow_hosts": ["a.example:99999"]}}, "sources.url.allow_hosts"),
        ({"url": {"max_bytes": "big"}}, "sources.url.max_bytes"),
        ({"url": {"max_bytes": 1.5}}, "sources.url.max_bytes"),
        ({"url": {"max_duration_seconds": -1}}, "sources.url.max_duration_seconds"),
        ({"local": {"dirs": [1]}}, "sources.local.dirs"),
        ({"soundcloud": {"api_base": "ftp://api.example"}}, "sources.soundcloud.api_base"),
        ({"soundcloud": {"client_id": "auto", "client_secret": "x"}}, "sources.soundcloud"),
    ],
)
async def test_put_invalid_names_the_key_and_changes_nothing(admin_gateway: Any, body: Any, key: str) -> None:
    gw = await admin_gateway()
    before = await gw.admin("GET", "/v1/admin/sources")
    fetch_sources = list(gw.app[FETCH_SOURCES])
    # A valid part next to the invalid one is not applied either.
    status, answer = await gw.admin("PUT", "/v1/admin/sources", {**body, "local": body.get("local", {"dirs": []})})
    assert status == 400, answer
    assert answer["error"] == "invalid_config" and key in answer["detail"]
    assert await gw.admin("GET", "/v1/admin/sources") == before
    assert gw.app[FETCH_SOURCES] == fetch_sources
    assert not gw.overlay.exists()


async def test_put_bad_bodies(admin_gateway: Any) -> None:
    gw = await admin_gateway()
    for raw in (b"nope", b"[]", b"{}", b'"x"'):
        r = await gw.client.put("/v1/admin/sources", data=raw, headers={**AUTH, "Content-Type": "application/json"})
        assert r.status == 400 and (await r.json())["error"] in {"bad_json", "bad_request"}
    r = await gw.client.put("/v1/admin/sources", data=b"{" + b" " * 20000 + b"}", headers=AUTH)
    assert r.status in (400, 413)


async def test_allow_hosts_change_takes_effect_live_and_persists(admin_gateway: Any, upstream: Any) -> None:
    gw = await admin_gateway()
    status, body = await post_url(gw, upstream.song)
    assert status == 403, body  # a loopback upstream is not a public host
    ws = await gw.client.ws_connect("/v1/ws")  # a listener stays connected throughout
    await ws.receive_json(timeout=5)

    status, answer = await gw.admin("PUT", "/v1/admin/sources", {"url": {"allow_hosts": [upstream.host]}})
    assert status == 200, answer
    assert answer["url"]["allow_hosts"] == [upstream.host] and answer["changed"] == ["sources.url.allow_hosts"]
    assert answer["local"]["dirs"] == gw.tables["sources.local"]["dirs"]  # partial update: the rest stays
    status, track = await post_url(gw, upstream.song)
    assert status == 201, track
    manifest = await fetch_all(gw, track["id"])
    assert manifest["complete"] and len(manifest["chunks"]) >= 3
    assert not ws.closed
    await ws.close()

    # Written next to the config file, merged over it by load_config: a restart keeps it.
    assert gw.overlay == gw.path.with_suffix(".admin.toml")
    assert load_config(gw.path).url.allow_hosts == (upstream.host,)
    assert "127.0.0.1" not in gw.path.read_text().split("[sources.url]")[1].split("[")[0]
    # And a reload of the unchanged file keeps it too.
    status, result = await gw.admin("POST", "/v1/admin/reload")
    assert status == 200 and result["changed"] == [] and result["restart_required"] == []
    assert gw.app[LIVE_CONFIG].current.url.allow_hosts == (upstream.host,)


async def test_transcode_running_during_a_change_completes(admin_gateway: Any, upstream: Any) -> None:
    gw = await admin_gateway(**{"sources.url": {"allow_hosts": [upstream.host]}})
    status, track = await post_url(gw, upstream.song)
    assert status == 201
    upstream.gate = asyncio.Event()  # the upstream holds its answer
    manifest_task = asyncio.create_task(gw.client.get(f"/v1/tracks/{track['id']}/manifest"))
    for _ in range(100):
        if upstream.hits["song.mp3"]:
            break
        await asyncio.sleep(0.02)
    assert upstream.hits["song.mp3"] == 1
    old_fetcher = gw.app[LIVE_CONFIG].sources.fetcher
    status, _ = await gw.admin(
        "PUT", "/v1/admin/sources", {"url": {"allow_hosts": [upstream.host, "other.example"], "read_timeout": 20}}
    )
    assert status == 200
    assert gw.app[LIVE_CONFIG].sources.fetcher is not old_fetcher
    status, _ = await gw.admin("POST", "/v1/admin/reload")
    assert status == 200
    upstream.gate.set()
    r = await manifest_task
    assert r.status == 200
    manifest = await fetch_all(gw, track["id"])
    assert manifest["complete"] and upstream.hits["song.mp3"] == 1
    stats = (await gw.admin("GET", "/v1/admin/stats"))[1]
    assert stats["transcodes_total"] == 1 and stats["transcodes_running"] == 0


async def test_local_dirs_and_soundcloud_apply_live(admin_gateway: Any, tmp_path: Path) -> None:
    gw = await admin_gateway()
    library = tmp_path / "new-library"
    library.mkdir()
    make_audio(library / "fresh_tone.flac", 3, freq=500)
    tid = track_id_for("local", str((library / "fresh_tone.flac").resolve()))
    assert (await gw.client.get(f"/v1/tracks/{tid}")).status == 404
    status, _ = await gw.admin("PUT", "/v1/admin/sources", {"local": {"dirs": [str(library)]}})
    assert status == 200
    status, track = await gw.get(f"/v1/tracks/{tid}")  # registered at once
    assert status == 200 and track["title"] == "fresh tone"
    assert gw.app[LOCAL_SOURCE].dirs == [library.resolve()]
    assert (await fetch_all(gw, tid))["complete"]

    assert "soundcloud" not in gw.app[MEDIA].sources
    status, answer = await gw.admin("PUT", "/v1/admin/sources", {"soundcloud": {"client_id": "cid-2"}})
    assert status == 200 and answer["soundcloud"]["client_secret"] == {"set": False}
    assert isinstance(gw.app[FETCH_SOURCES][0], SoundCloudSource)
    assert isinstance(gw.app[MEDIA].sources["soundcloud"], SoundCloudSource)
    status, _ = await gw.admin("PUT", "/v1/admin/sources", {"soundcloud": {"client_id": ""}})
    assert status == 200 and "soundcloud" not in gw.app[MEDIA].sources
    # Back to the stand-in that refuses SoundCloud URLs instead of fetching pages.
    assert [type(s) for s in gw.app[FETCH_SOURCES]] == [SoundCloudDisabled, UrlSource]


# -- reloads -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[sources.url]\nalow_hosts = []\n", "sources.url.alow_hosts"),
        ("[sources.url]\nmax_bytes = \"lots\"\n", "sources.url.max_bytes"),
        ("[sources.url]\nallow_hosts = [\"bad host\"]\n", "sources.url.allow_hosts"),
        ("[server]\nport = 70000\n", "server.port"),
        ("[sourcez]\n", "sourcez"),
        ("[server\nport = 1\n", "line 1"),
    ],
)
async def test_reload_with_a_broken_file_keeps_serving(admin_gateway: Any, text: str, key: str) -> None:
    gw = await admin_gateway()
    before = gw.app[LIVE_CONFIG].current
    gw.write(text)
    status, body = await gw.admin("POST", "/v1/admin/reload")
    assert status == 400 and body["error"] == "invalid_config" and key in body["detail"], body
    assert gw.app[LIVE_CONFIG].current is before
    assert (await gw.client.get("/healthz")).status == 200
    assert (await gw.get("/v1/tracks"))[0] == 200
    assert (await gw.admin("GET", "/v1/admin/sources"))[0] == 200


async def test_reload_applies_sources_and_reports_restart_required(admin_gateway: Any, upstream: Any) -> None:
    gw = await admin_gateway()
    port = gw.tables["server"]["port"]
    gw.tables["sources.url"]["allow_hosts"] = [upstream.host]
    gw.tables["server"]["port"] = 12345
    gw.tables["transcode"] = {"bitrate": 64000}
    gw.write()
    status, body = await gw.admin("POST", "/v1/admin/reload")
    assert status == 200, body
    assert body["changed"] == ["sources.url.allow_hosts"]
    assert body["restart_required"] == ["server.port", "transcode.bitrate"]
    current = gw.app[LIVE_CONFIG].current
    assert current.server.port == port and current.transcode.bitrate == 96000  # running values kept
    assert (await post_url(gw, upstream.song))[0] == 201
    # The overlay wins over the file, key by key; an invalid overlay is named.
    gw.overlay.write_text('[sources.url]\nallow_hosts = []\n')
    assert (await gw.admin("POST", "/v1/admin/reload"))[1]["changed"] == ["sources.url.allow_hosts"]
    assert (await post_url(gw, upstream.song))[0] == 403
    gw.overlay.write_text("[sources.url]\nmax_bytes = -1\n")
    status, body = await gw.admin("POST", "/v1/admin/reload")
    assert status == 400 and str(gw.overlay) in body["detail"] and "sources.url.max_bytes" in body["detail"]


async def test_the_overlay_holds_only_what_the_admin_changed(admin_gateway: Any, upstream: Any) -> None:
    gw = await admin_gateway()
    # The admin page sends every field of the form, secrets left out: only the
    # one the admin edited may reach the overlay.
    status, view = await gw.admin("GET", "/v1/admin/sources")
    body = {section: {k: v for k, v in view[section].items() if not isinstance(v, dict)}
            for section in ("url", "local", "soundcloud")}
    body["url"]["allow_hosts"] = [upstream.host]
    status, answer = await gw.admin("PUT", "/v1/admin/sources", body)
    assert status == 200 and answer["changed"] == ["sources.url.allow_hosts"], answer
    assert load_overlay(gw) == {"sources": {"url": {"allow_hosts": [upstream.host]}}}
    # The operator's file stays in charge of every other key: a change there
    # is applied by a reload and reported.
    gw.tables["sources.url"]["read_timeout"] = 7.0
    gw.write()
    status, answer = await gw.admin("POST", "/v1/admin/reload")
    assert status == 200, answer
    assert answer["changed"] == ["sources.url.read_timeout"] and answer["overridden_by_overlay"] == []
    assert gw.app[LIVE_CONFIG].current.url.read_timeout == 7.0
    # A key the overlay sets: a change in the file is reported as overridden, the overlay's value stays.
    gw.tables["sources.url"]["allow_hosts"] = ["other.example"]
    gw.write()
    status, answer = await gw.admin("POST", "/v1/admin/reload")
    assert answer["changed"] == [] and answer["overridden_by_overlay"] == ["sources.url.allow_hosts"], answer
    assert gw.app[LIVE_CONFIG].current.url.allow_hosts == (upstream.host,)
    # Set back to the file's value, the key leaves the overlay: the file decides it again.
    status, answer = await gw.admin("PUT", "/v1/admin/sources", {"url": {"allow_hosts": ["other.example"]}})
    assert status == 200 and answer["changed"] == ["sources.url.allow_hosts"], answer
    assert load_overlay(gw) == {}
    gw.tables["sources.url"]["allow_hosts"] = ["third.example"]
    gw.write()
    status, answer = await gw.admin("POST", "/v1/admin/reload")
    assert answer["changed"] == ["sources.url.allow_hosts"] and answer["overridden_by_overlay"] == [], answer
    # A PUT that changes nothing writes nothing.
    gw.overlay.unlink()
    status, answer = await gw.admin("PUT", "/v1/admin/sources", {"url": {"max_bytes": 50_000_000}})
    assert status == 200 and answer["changed"] == [] and not gw.overlay.exists()


def load_overlay(gw: Any) -> dict[str, Any]:
    import tomllib

    return tomllib.loads(gw.overlay.read_text()) if gw.overlay.exists() else {}


async def test_token_change_by_reload(admin_gateway: Any) -> None:
    gw = await admin_gateway()
    gw.tables["admin"]["token"] = "the-new-token"
    gw.write()
    assert (await gw.admin("POST", "/v1/admin/reload"))[0] == 200
    assert (await gw.admin("GET", "/v1/admin/stats"))[0] == 403
    assert (await gw.admin("GET", "/v1/admin/stats", headers={"Authorization": "Bearer the-new-token"}))[0] == 200


# -- purge and stats -----------------------------------------------------------------------------


async def test_purge_then_refetch(admin_gateway: Any, upstream: Any) -> None:
    gw = await admin_gateway(**{"sources.url": {"allow_hosts": [upstream.host]}})
    status, track = await post_url(gw, upstream.song)
    tid = track["id"]
    first = await fetch_all(gw, tid)
    rid = gw.app[MEDIA].rendition.id
    assert gw.app[STORE].get_manifest(tid, rid) is not None
    before = (await gw.admin("GET", "/v1/admin/stats"))[1]

    status, body = await gw.admin("DELETE", f"/v1/admin/tracks/{tid}")
    assert status == 200 and body == {"id": tid, "purged": True}
    assert gw.app[STORE].get_manifest(tid, rid) is None
    assert gw.app[STORE].get_chunk(tid, rid, 0, first["chunks"][0]["sha256"]) is None
    assert (await gw.client.get(f"/v1/tracks/{tid}")).status == 404
    after = (await gw.admin("GET", "/v1/admin/stats"))[1]
    assert after["tracks"] == before["tracks"] - 1
    assert (await gw.admin("DELETE", f"/v1/admin/tracks/{tid}"))[0] == 404

    status, again = await post_url(gw, upstream.song)
    assert status == 201 and again["id"] == tid  # same URL, same id
    second = await fetch_all(gw, tid)
    assert upstream.hits["song.mp3"] == 2  # fetched and transcoded anew
    assert [c["sha256"] for c in second["chunks"]] == [c["sha256"] for c in first["chunks"]]


async def test_purge_refuses_a_running_transcode(admin_gateway: Any, upstream: Any) -> None:
    gw = await admin_gateway(**{"sources.url": {"allow_hosts": [upstream.host]}})
    tid = (await post_url(gw, upstream.song))[1]["id"]
    upstream.gate = asyncio.Event()
    task = asyncio.create_task(gw.client.get(f"/v1/tracks/{tid}/manifest"))
    while not upstream.hits["song.mp3"]:
        await asyncio.sleep(0.02)
    status, body = await gw.admin("DELETE", f"/v1/admin/tracks/{tid}")
    assert status == 409 and body["error"] == "transcode_running"
    upstream.gate.set()
    assert (await task).status == 200
    await fetch_all(gw, tid)  # let it end: a transcode cut short at shutdown is another test's subject
    assert (await gw.admin("DELETE", f"/v1/admin/tracks/{tid}"))[0] == 200


async def test_stats(admin_gateway: Any, audio_dir: Path) -> None:
    gw = await admin_gateway(**{"sources.soundcloud": {"client_id": "cid", "client_secret": SECRET}})
    status, stats = await gw.admin("GET", "/v1/admin/stats")
    assert status == 200
    assert set(stats) >= {"peers_connected", "transcodes_running", "transcodes_total", "cache_bytes",
                          "server_bytes", "peer_bytes", "offload", "tracks"}
    assert stats["peers_connected"] == 0 and stats["offload"] is None and stats["tracks"] == 3
    ws = await gw.client.ws_connect("/v1/ws")
    await ws.receive_json(timeout=5)
    tid = track_id_for("local", str((audio_dir / "short.flac").resolve()))
    await fetch_all(gw, tid)
    await ws.send_json({"type": "stats", "p2p_down_bytes": 1000, "p2p_up_bytes": 0, "http_down_bytes": 0,
                        "stalls": 0, "startup_seconds": None})
    for _ in range(50):
        status, stats = await gw.admin("GET", "/v1/admin/stats")
        if stats["peer_bytes"]:
            break
        await asyncio.sleep(0.05)
    assert stats["peers_connected"] == 1 and stats["transcodes_total"] == 1
    assert stats["cache_bytes"] > 0 and stats["server_bytes"] > 0 and stats["peer_bytes"] == 1000
    assert stats["offload"] == pytest.approx(1000 / (1000 + stats["server_bytes"]), abs=1e-4)
    # No source named: where those bytes came from is not known.
    assert stats["p2p"]["peer_bytes_by_scope"] == {"same_lan": 0, "same_network": 0, "other": 0, "unknown": 1000}
    assert SECRET not in json.dumps(stats)
    await ws.close()


async def test_track_list_states_errors_search_and_counts_match_the_listing(
    admin_gateway: Any, upstream: Any
) -> None:
    gw = await admin_gateway(**{"sources.url": {"allow_hosts": [upstream.host]}})
    base = f"http://{upstream.host}"
    missing = (await post_url(gw, f"{base}/missing"))[1]["id"]
    html = (await post_url(gw, f"{base}/html"))[1]["id"]
    song = (await post_url(gw, upstream.song))[1]["id"]

    async def public() -> list[str]:
        return [t["id"] for t in (await gw.get("/v1/tracks"))[1]["tracks"]]

    async def tracks(query: str = "") -> dict[str, Any]:
        status, body = await gw.admin("GET", f"/v1/admin/tracks{query}")
        assert status == 200, body
        return dict(body)

    # Registered but never played: in the admin's list, not in the public one; the counts agree.
    body = await tracks()
    rows = {t["id"]: t for t in body["tracks"]}
    assert {rows[t]["state"] for t in (missing, html, song)} == {"never_played"}
    assert not any(rows[t]["listed"] for t in (missing, html, song))
    assert body["registered"] == 6 and body["listed"] == len(await public()) == 3
    stats = (await gw.admin("GET", "/v1/admin/stats"))[1]
    assert stats["tracks"] == len(await public()) == 3 and stats["tracks_registered"] == 6

    assert (await gw.client.get(f"/v1/tracks/{missing}/manifest")).status == 404
    assert (await gw.client.get(f"/v1/tracks/{html}/manifest")).status == 415
    await fetch_all(gw, song)
    body = await tracks()
    rows = {t["id"]: t for t in body["tracks"]}
    assert rows[missing]["state"] == "failed" and rows[missing]["error"]["error"] == "upstream_not_found"
    assert "HTTP 404" in rows[missing]["error"]["detail"]
    assert rows[html]["state"] == "failed" and rows[html]["error"]["error"] == "upstream_not_audio"
    assert rows[song]["state"] == "ready" and rows[song]["error"] is None and rows[song]["listed"]
    assert rows[song]["locator"] == upstream.song
    assert body["states"] == {"ready": 1, "transcoding": 0, "failed": 2, "never_played": 3}
    assert body["listed"] == len(await public()) == 4 == (await gw.admin("GET", "/v1/admin/stats"))[1]["tracks"]

    # Search (every word, any field) and the state filter.
    assert [t["id"] for t in (await tracks("?q=SONG"))["tracks"]] == [song]
    assert [t["id"] for t in (await tracks(f"?q={missing[:6]}"))["tracks"]] == [missing]
    assert {t["id"] for t in (await tracks("?state=failed"))["tracks"]} == {missing, html}
    limited = await tracks("?limit=2")
    assert len(limited["tracks"]) == 2 and limited["matching"] == 6
    for bad in ("?state=gone", "?limit=0", "?limit=x", "?limit=201"):
        status, err = await gw.admin("GET", f"/v1/admin/tracks{bad}")
        assert status == 400 and err["error"] == "bad_request", bad
    assert (await gw.admin("GET", "/v1/admin/tracks", headers={}))[0] == 401

    # A transcode running shows as such; purging a failed one removes it from the list.
    upstream.gate = asyncio.Event()
    other = (await post_url(gw, upstream.song + "?again"))[1]["id"]
    task = asyncio.create_task(gw.client.get(f"/v1/tracks/{other}/manifest"))
    while upstream.hits["song.mp3"] < 2:
        await asyncio.sleep(0.02)
    assert {t["id"]: t["state"] for t in (await tracks())["tracks"]}[other] == "transcoding"
    upstream.gate.set()
    assert (await task).status == 200
    assert (await gw.admin("DELETE", f"/v1/admin/tracks/{missing}"))[0] == 200
    assert missing not in {t["id"] for t in (await tracks())["tracks"]}


# -- TOML written by the admin API ------------------------------------------------------------


def test_dump_toml_round_trips() -> None:
    import tomllib

    tables = {"sources": {"url": {"allow_hosts": ['we"ird\\host', "ü.example", "tab\there\x7f"], "max_bytes": 5,
                                  "max_duration_seconds": 1.5},
                          "soundcloud": {"client_secret": "a\nb"}},
              "p2p": {"ice_servers": [{"urls": "stun:x", "username": "u"}]}}
    assert tomllib.loads(dump_toml(tables, header="two\nlines")) == tables
    for bad in ({"x": 1}, {"s": {"k": float("nan")}}, {"s": {"k": "\ud800"}}):
        with pytest.raises(ValueError):
            dump_toml(bad)


OPERATOR_OVERLAY = """\
# Hand-edited by the operator: these notes must survive the admin API.

[sources.url]
# hosts of our own CDN, private addresses
allow_hosts = ["cdn.internal.example"]   # ticket OPS-12
max_bytes    = 10_000_000                # aligned by hand

[sources.local]
dirs = []   # nothing local on this box
"""


def test_edit_toml_keeps_comments_and_layout() -> None:
    import tomllib

    out = edit_toml(OPERATOR_OVERLAY, {"sources": {"url": {"allow_hosts": ["a.example", "b.example"]},
                                                   "soundcloud": {"client_id": "cid"}}})
    # Every line but the changed value is byte for byte where it was (its comment too); new tables follow.
    before = OPERATOR_OVERLAY.splitlines()
    assert out.splitlines()[: len(before)] == [
        'allow_hosts = ["a.example", "b.example"]   # ticket OPS-12' if line.startswith("allow_hosts") else line
        for line in before
    ]
    assert tomllib.loads(out) == {"sources": {"url": {"allow_hosts": ["a.example", "b.example"], "max_bytes": 10_000_000},
                                              "local": {"dirs": []}, "soundcloud": {"client_id": "cid"}}}
    assert "[sources.soundcloud]" in out and "[sources]" not in out
    # A new file starts with the header; what is written is what is read.
    fresh = edit_toml("", {"sources": {"url": {"max_bytes": 5}}}, header="one\ntwo")
    assert fresh.startswith("# one\n# two\n") and tomllib.loads(fresh) == {"sources": {"url": {"max_bytes": 5}}}
    with pytest.raises(ValueError):
        edit_toml("[sources\n", {"sources": {"url": {"max_bytes": 5}}})


async def test_put_keeps_the_operators_comments_in_the_overlay(admin_gateway: Any, upstream: Any) -> None:
    gw = await admin_gateway()
    gw.overlay.write_text(OPERATOR_OVERLAY)
    assert (await gw.admin("POST", "/v1/admin/reload"))[0] == 200
    status, answer = await gw.admin("PUT", "/v1/admin/sources", {"url": {"allow_hosts": [upstream.host]}})
    assert status == 200, answer
    assert answer["changed"] == ["sources.url.allow_hosts"]
    text = gw.overlay.read_text()
    for kept in ("# Hand-edited by the operator: these notes must survive the admin API.",
                 "# hosts of our own CDN, private addresses", "# ticket OPS-12",
                 "max_bytes    = 10_000_000                # aligned by hand", "dirs = []   # nothing local on this box"):
        assert kept in text, text
    assert "cdn.internal.example" not in text and f'allow_hosts = ["{upstream.host}"]' in text
    assert "Written by the Ztream admin API" not in text  # the operator's file, not a new one
    assert stat.S_IMODE(gw.overlay.stat().st_mode) == 0o600
    # What was written is what a restart reads.
    config = load_config(gw.path)
    assert config.url.allow_hosts == (upstream.host,) and config.url.max_bytes == 10_000_000
    assert config.local.dirs == ()
    assert (await post_url(gw, upstream.song))[0] == 201


def test_load_config_merges_the_overlay(tmp_path: Path) -> None:
    path = tmp_path / "z.toml"
    path.write_text('[sources.url]\nallow_hosts = ["a.example"]\nmax_bytes = 10\n')
    assert overlay_path(path, tmp_path) == tmp_path / "z.admin.toml"
    (tmp_path / "z.admin.toml").write_text('[sources.url]\nallow_hosts = ["b.example"]\n')
    config = load_config(path)
    assert config.url.allow_hosts == ("b.example",) and config.url.max_bytes == 10
    (tmp_path / "z.admin.toml").write_text('[sources.url]\nallow_host = ["b.example"]\n')
    with pytest.raises(ConfigError, match=r"z\.admin\.toml: sources\.url\.allow_host: unknown key"):
        load_config(path)
    assert sources_view(Config(soundcloud=SoundCloudConfig(client_secret="s")))["soundcloud"]["client_secret"] == {
        "set": True}


# -- ztream serve: start-up errors and SIGHUP ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[sources.url]\nallow_hosts = [\"no such host!\"]\n", "sources.url.allow_hosts"),
        ("[server]\nprot = 1\n", "server.prot: unknown key"),
        ("[cache]\nmax_bytes = \"x\"\n", "cache.max_bytes: expected an integer"),
        ("[admin]\ntoken = 5\n", "admin.token: expected a string"),
    ],
)
def test_invalid_config_at_start_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    done = subprocess.run([*ZTREAM, "serve", "--config", str(path)], capture_output=True, text=True,
                          timeout=30, cwd=ROOT, env=env)
    assert done.returncode == 2
    assert message in done.stderr and "invalid configuration" in done.stderr


async def test_sighup_reloads_and_a_broken_file_keeps_the_old_config(gateway_factory: Any, upstream: Any) -> None:
    gw = await asyncio.to_thread(
        gateway_factory, admin={"token": TOKEN},
        **{"sources.soundcloud": {"client_id": "cid", "client_secret": SECRET}},
    )
    assert gw.proc is not None

    async with aiohttp.ClientSession() as session:

        async def post(url: str) -> int:
            async with session.post(f"{gw.url}/v1/tracks", json={"url": url}) as r:
                return r.status

        async def log_has(text: str, timeout: float = 10.0) -> None:
            deadline = time.monotonic() + timeout
            while text not in gw.log():
                assert time.monotonic() < deadline, f"{text!r} not logged:\n{gw.log()[-3000:]}"
                await asyncio.sleep(0.05)

        assert await post(upstream.song) == 403
        ws = await session.ws_connect(gw.url.replace("http", "ws") + "/v1/ws")
        await ws.receive_json(timeout=5)

        gw.config["sources.url"]["allow_hosts"] = [upstream.host]
        gw.config_path.write_text(to_toml(gw.config))
        os.kill(gw.proc.pid, signal.SIGHUP)
        await log_has("SIGHUP: changed sources.url.allow_hosts")
        assert await post(upstream.song) == 201
        async with session.get(f"{gw.url}/v1/tracks", params={}) as r:
            assert r.status == 200

        broken = {**gw.config, "server": {**gw.config["server"], "bogus": 1}}
        gw.config_path.write_text(to_toml(broken))
        os.kill(gw.proc.pid, signal.SIGHUP)
        await log_has("server.bogus")
        assert "failed, the running configuration stays" in gw.log()
        assert gw.proc.poll() is None
        assert await post(upstream.song) == 200  # the allow-list from before still holds
        async with session.get(f"{gw.url}/v1/admin/sources", headers=AUTH) as r:
            assert r.status == 200 and (await r.json())["url"]["allow_hosts"] == [upstream.host]
        assert not ws.closed
        await ws.close()
    assert SECRET not in gw.log() and TOKEN not in gw.log()
