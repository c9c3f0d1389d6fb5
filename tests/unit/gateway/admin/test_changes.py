"""The admin API's change signal (``LiveConfig.on_admin_change``) and its extra stats sections.

What a cluster node hears from the admin API, without a cluster: a subscriber
records what was sent. The cluster's side (the broadcast reaching the other
nodes) is tests/test_cluster.py's ``test_admin_changes_reach_every_node``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.admin import LIVE_CONFIG, AdminChange, AdminChanges, Purged, Reloaded
from gateway.admin.api import STATS_SECTIONS
from gateway.app import create_app
from gateway.cluster.admin import payload_of
from gateway.config import load_config
from gateway.media.catalog import track_id_for

from .conftest import base_config, to_toml

pytestmark = [pytest.mark.timeout(60)]

TOKEN = "admin-token-Ch4n"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def test_subscribers_are_awaited_in_order_until_unsubscribed() -> None:
    changes = AdminChanges()
    heard: list[tuple[str, AdminChange]] = []

    async def first(change: AdminChange) -> None:
        heard.append(("first", change))

    async def second(change: AdminChange) -> None:
        heard.append(("second", change))

    changes.subscribe(first)
    changes.subscribe(second)
    await changes.send(Reloaded())
    changes.unsubscribe(first)
    await changes.send(Purged("abc"))
    assert heard == [("first", Reloaded()), ("second", Reloaded()), ("second", Purged("abc"))]
    assert len(changes) == 1


def test_broadcast_payloads() -> None:
    assert payload_of(Reloaded()) == {"t": "reload"}
    assert payload_of(Purged("t1")) == {"t": "purge", "id": "t1"}


@pytest.fixture
async def gateway(tmp_path: Path, audio_dir: Path) -> AsyncIterator[tuple[TestClient, list[AdminChange]]]:
    tables = base_config(tmp_path)
    tables["sources.local"]["dirs"] = [str(audio_dir)]
    tables["admin"] = {"token": TOKEN}
    path = tmp_path / "gw.toml"
    path.write_text(to_toml(tables))
    app = create_app(load_config(path), config_path=path)
    heard: list[AdminChange] = []

    async def record(change: AdminChange) -> None:
        heard.append(change)

    app[LIVE_CONFIG].on_admin_change.subscribe(record)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    yield client, heard
    await client.close()


async def test_admin_api_changes_are_sent_and_other_reloads_are_not(
    gateway: tuple[TestClient, list[AdminChange]], audio_dir: Path, tmp_path: Path
) -> None:
    client, heard = gateway
    app = client.server.app
    assert app[STATS_SECTIONS] == {}  # one node alone: no cluster section

    r = await client.post("/v1/admin/reload", headers=AUTH)
    assert r.status == 200, await r.text()
    assert heard == [Reloaded()]

    r = await client.put("/v1/admin/sources", json={"url": {"max_bytes": 1_000_000}}, headers=AUTH)
    assert r.status == 200, await r.text()
    assert heard == [Reloaded(), Reloaded()]

    # Refused changes and reloads for other reasons (SIGHUP, another node's word) send nothing.
    r = await client.put("/v1/admin/sources", json={"url": {"max_bytes": -1}}, headers=AUTH)
    assert r.status == 400
    await app[LIVE_CONFIG].reload("SIGHUP")
    r = await client.post("/v1/admin/reload", headers={"Authorization": "Bearer wrong"})
    assert r.status == 403
    assert heard == [Reloaded(), Reloaded()]

    tid = track_id_for("local", str((audio_dir / "short.flac").resolve()))
    r = await client.delete(f"/v1/admin/tracks/{tid}", headers=AUTH)
    assert r.status == 200, await r.text()
    assert heard == [Reloaded(), Reloaded(), Purged(tid)]
    r = await client.delete(f"/v1/admin/tracks/{tid}", headers=AUTH)
    assert r.status == 404
    assert heard == [Reloaded(), Reloaded(), Purged(tid)]

    r = await client.get("/v1/admin/stats", headers=AUTH)
    assert r.status == 200 and "cluster" not in await r.json()


async def test_stats_sections_are_added_to_admin_stats(tmp_path: Path) -> None:
    tables = base_config(tmp_path)
    tables["admin"] = {"token": TOKEN}
    app = create_app(load_config_text(tmp_path, tables))
    calls: list[int] = []

    def section() -> dict[str, Any]:
        calls.append(1)
        return {"nodes": 7, "calls": len(calls)}

    # What setup_admin(app, stats={"cluster": cluster.stats}) leaves for a cluster node.
    app[STATS_SECTIONS]["cluster"] = section
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        for n in (1, 2):
            r = await client.get("/v1/admin/stats", headers=AUTH)
            assert r.status == 200
            stats = await r.json()
            assert stats["cluster"] == {"nodes": 7, "calls": n}  # asked on every request
            assert list(stats)[-1] == "cluster" and stats["tracks"] == 0
    finally:
        await client.close()


def load_config_text(tmp_path: Path, tables: dict[str, Any]) -> Any:
    path = tmp_path / "stats.toml"
    path.write_text(to_toml(tables))
    return load_config(path)
