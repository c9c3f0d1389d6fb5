"""Gateways for tests: real ``ztream serve`` subprocesses and in-process apps.

``GatewayProcess`` (bench/harness.py, shared with the benchmarks) runs the
real command on a free loopback port. ``InProcessGateways`` starts
``create_app`` under aiohttp's ``TestServer``; the ``make_gateway`` fixture
(tests/conftest.py) is its one entry point, parameterised by what tests differ
in: the library (the generated one, another, or none), the config sections, or
a TOML file loaded the way ``ztream serve --config`` loads it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bench.harness import ROOT, ZTREAM, GatewayProcess, base_config, free_port, to_toml
from gateway.app import create_app
from gateway.config import Config, config_from_dict, load_config

__all__ = [
    "ROOT", "ZTREAM", "Client", "GatewayProcess", "InProcessGateways", "base_config", "config_of", "fetch_all",
    "free_port", "post_url", "to_toml",
]

Client = TestClient[web.Request, web.Application]


def config_of(tmp_path: Path, **sections: dict[str, Any]) -> Config:
    """The test defaults (``base_config``) with ``sections`` merged in, validated."""
    merged = base_config(tmp_path)
    for name, values in sections.items():
        merged.setdefault(name, {}).update(values)
    tables: dict[str, Any] = {}
    for name, values in merged.items():
        node = tables
        parts = name.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = values
    return config_from_dict(tables)


class InProcessGateways:
    """Starts in-process gateways on loopback and closes them all at the end."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.clients: list[Client] = []

    async def start(self, *, library: Path | None, config_path: Path | None = None,
                    **sections: dict[str, Any]) -> Client:
        """A gateway serving ``library`` (none: no local directory) with ``sections``
        over the test defaults; or, with ``config_path``, the gateway that TOML file
        describes (loaded and remembered as ``ztream serve --config`` does)."""
        if config_path is not None:
            assert not sections and library is None, "a config file says everything itself"
            app = create_app(load_config(config_path), config_path=config_path)
        else:
            if library is not None:
                sections.setdefault("sources.local", {"dirs": [str(library)]})
            app = create_app(config_of(self.tmp_path, **sections))
        client: Client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        self.clients.append(client)
        return client

    async def close(self) -> None:
        for client in self.clients:
            await client.close()


async def fetch_all(client: Client, track_id: str) -> tuple[dict[str, Any], bytes, list[bytes]]:
    r = await client.get(f"/v1/tracks/{track_id}/manifest")
    assert r.status == 200, await r.text()
    manifest = await r.json()
    while not manifest["complete"]:
        await asyncio.sleep(0.1)
        manifest = await (await client.get(f"/v1/tracks/{track_id}/manifest")).json()
    init = await (await client.get(f"/v1/tracks/{track_id}/init")).read()
    chunks = []
    for c in manifest["chunks"]:
        r = await client.get(f"/v1/tracks/{track_id}/chunks/{c['index']}")
        assert r.status == 200
        chunks.append(await r.read())
    return manifest, init, chunks


async def post_url(client: Client, url: str) -> Any:
    return await client.post("/v1/tracks", json={"url": url})
