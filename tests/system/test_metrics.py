"""Metrics that operators can trust: counters against bytes really sent, the
shipped Prometheus files through promtool, and every dashboard query through a
real Prometheus scraping a real gateway."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from tests.support.gateway import ROOT, fetch_all, free_port

DASHBOARD = ROOT / "grafana" / "dashboards" / "ztream.json"
PROM_DIR = ROOT / "grafana" / "prometheus"


def parse_metrics(text: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


async def scrape(client: TestClient) -> dict[str, float]:
    r = await client.get("/metrics")
    assert r.status == 200
    return parse_metrics(await r.text())


def dashboard_exprs() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in dash["panels"] if p["type"] != "row" for t in p["targets"]]


def substitute(expr: str) -> str:
    """Grafana's variables as Grafana would expand them with "All" selected."""
    return expr.replace("$__rate_interval", "20s").replace('"$instance"', '".*"')


# -- counters against the truth -------------------------------------------------


async def test_server_bytes_match_bytes_received(make_gateway: Any, audio_dir: Path) -> None:
    client = await make_gateway()
    from gateway.media.catalog import track_id_for

    tid = track_id_for("local", str((audio_dir / "short.flac").resolve()))
    before = await scrape(client)
    manifest, init, chunks = await fetch_all(client, tid)
    stream = await (await client.get(f"/v1/tracks/{tid}/stream")).read()
    head = await client.head(f"/v1/tracks/{tid}/chunks/0")  # a HEAD sends no audio
    assert head.status == 200
    not_modified = await client.get(
        f"/v1/tracks/{tid}/chunks/0", headers={"If-None-Match": f'"{manifest["chunks"][0]["sha256"]}"'}
    )
    assert not_modified.status == 304
    after = await scrape(client)

    def grew(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    assert grew('ztream_server_bytes_total{kind="init"}') == len(init)
    assert grew('ztream_server_bytes_total{kind="chunk"}') == sum(len(c) for c in chunks)
    assert grew('ztream_server_bytes_total{kind="stream"}') == len(stream)
    assert grew('ztream_upstream_bytes_total{source="local"}') == (audio_dir / "short.flac").stat().st_size
    assert grew('ztream_transcodes_total{result="ok"}') == 1
    assert after["ztream_transcodes_running"] == 0
    assert grew("ztream_transcode_seconds_count") == 1
    assert grew("ztream_cache_hits_total") >= len(chunks)
    assert after["ztream_cache_bytes"] > 0


async def test_disconnect_halfway_counts_only_what_was_written(make_gateway: Any, tmp_path: Path) -> None:
    """A reader that leaves after 64 KiB of a ~7 MB stream is not billed the rest."""
    from tests.support.audio import make_audio

    library = tmp_path / "lib"
    library.mkdir()
    make_audio(library / "long.flac", 300, freq=300)
    client = await make_gateway(**{"sources.local": {"dirs": [str(library)]}}, transcode={"bitrate": 192000})
    tid = (await (await client.get("/v1/tracks")).json())["tracks"][0]["id"]
    manifest, init, chunks = await fetch_all(client, tid)
    total = len(init) + sum(len(c) for c in chunks)
    before = await scrape(client)
    # The gateway runs in this event loop: the slow reader must be async too.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", client.port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(f"GET /v1/tracks/{tid}/stream HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    received = 0
    while received < 65536:
        piece = await asyncio.wait_for(reader.read(8192), 10)
        assert piece
        received += len(piece)
    writer.transport.abort()
    await asyncio.sleep(1.0)  # let the handler notice the disconnect
    after = await scrape(client)
    counted = after['ztream_server_bytes_total{kind="stream"}'] - before['ztream_server_bytes_total{kind="stream"}']
    assert counted >= received - 1024  # headers are not audio
    # Socket buffers hold a few MB at most; the stream was far longer.
    assert counted < total * 0.8, (counted, total)


# -- the shipped files ------------------------------------------------------------


def test_dashboard_is_well_formed() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "ztream-overview" and dash["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    provisioned = (ROOT / "grafana/provisioning/datasources/prometheus.yaml").read_text()
    uid = re.search(r"uid:\s*(\S+)", provisioned).group(1)  # type: ignore[union-attr]
    assert variables["datasource"]["current"]["value"] == uid
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for needed in ("offload", "server vs peers", "upstream", "hit ratio", "store size", "transcodes per second",
                   "transcodes running", "transcode duration", "peers connected", "stalls", "start-up",
                   "verification failures"):
        assert needed in titles, needed
    for panel in dash["panels"]:
        if panel["type"] == "row":  # a heading, no query
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"]
        for target in panel["targets"]:
            assert target["expr"].strip()
            assert target["datasource"]["uid"] == "${datasource}"
            if "rate(" in target["expr"]:
                assert "[$__rate_interval]" in target["expr"]
    kinds = {p["type"] for p in dash["panels"] if "offload" in p["title"].lower() and p["type"] != "row"}
    assert kinds == {"stat", "timeseries"}


def test_promtool_accepts_config_and_rules() -> None:
    subprocess.run(["promtool", "check", "config", str(PROM_DIR / "prometheus.yml")], check=True, capture_output=True)
    out = subprocess.run(["promtool", "check", "rules", str(PROM_DIR / "alerts.yml")], check=True,
                         capture_output=True, text=True).stdout
    assert "6 rules found" in out


async def test_promtool_accepts_live_metrics(make_gateway: Any, audio_dir: Path) -> None:
    client = await make_gateway()
    from gateway.media.catalog import track_id_for

    await fetch_all(client, track_id_for("local", str((audio_dir / "short.flac").resolve())))
    text = await (await client.get("/metrics")).text()
    for name in ("ztream_server_bytes_total", "ztream_peer_bytes_total", "ztream_upstream_bytes_total",
                 "ztream_cache_hits_total", "ztream_cache_misses_total", "ztream_cache_bytes",
                 "ztream_transcodes_total", "ztream_transcodes_running", "ztream_transcode_seconds_bucket",
                 "ztream_peers_connected", "ztream_chunk_verify_failures_total", "ztream_playback_stalls_total",
                 "ztream_startup_seconds_bucket", "process_resident_memory_bytes"):
        assert f"\n{name}" in text, name
    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "track" not in re.sub(r"#.*", "", text).replace("ztream_", "")  # no track ids as labels


# -- the dashboard against a real Prometheus ------------------------------------------


def http_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def stun_binding(port: int) -> None:
    """One STUN Binding request to the gateway's built-in responder (UDP, the HTTP port's number)."""
    import os
    import socket

    from aioice import stun

    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST,
                           transaction_id=os.urandom(12))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(bytes(request), ("127.0.0.1", port))
        assert stun.parse_message(s.recv(2048)).transaction_id == request.transaction_id


async def report_peer_stats(base: str) -> None:
    """Two listeners: a holder, and one introduced to it whose validated stats
    report names it as the source of part of its peer bytes."""
    url = base.replace("http", "ws") + "/v1/ws"
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url) as holder, session.ws_connect(url) as ws:
            source = (await holder.receive_json(timeout=10))["peer_id"]
            welcome = await ws.receive_json(timeout=10)
            assert welcome["type"] == "welcome"
            await holder.send_json({"type": "have", "track": "t", "rendition": "r", "complete": True})
            await ws.send_json({"type": "want", "track": "t", "rendition": "r", "chunks": [0]})
            answer = await ws.receive_json(timeout=10)
            assert [p["peer_id"] for p in answer["peers"]] == [source], answer
            await ws.send_json({"type": "stats", "p2p_down_bytes": 3_000_000, "p2p_up_bytes": 1_000_000,
                                "http_down_bytes": 500_000, "stalls": 2, "startup_seconds": 0.12,
                                "verify_failures": 1, "p2p_relay_down_bytes": 1_000_000, "neighbours": 0,
                                "connections": {"srflx": 2, "relay": 1, "timeout": 1},
                                "sources": {source: 2_000_000}})
            with pytest.raises(asyncio.TimeoutError):
                msg = await ws.receive_json(timeout=1.0)  # no error comes back
                raise AssertionError(msg)


@pytest.fixture
def prometheus(tmp_path: Path, gateway: Any) -> Any:
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: ztream\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{gateway.port}']\n"
    )
    with (tmp_path / "prometheus.log").open("wb") as log:
        proc = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=log,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(base + "/-/ready", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        assert time.monotonic() < deadline, (tmp_path / "prometheus.log").read_text()
        time.sleep(0.2)
    yield base
    proc.terminate()
    proc.wait(timeout=10)


def test_every_dashboard_query_runs_on_real_prometheus(gateway: Any, prometheus: str) -> None:
    base = gateway.url
    # rate() needs a sample before the traffic and one after it.
    deadline = time.monotonic() + 30
    while not http_json(f"{prometheus}/api/v1/query?query=up")["data"]["result"]:
        assert time.monotonic() < deadline, "Prometheus never scraped the gateway"
        time.sleep(0.3)
    time.sleep(1.5)
    # Traffic: a STUN request, a cold transcode, every chunk, a stream, repeat hits.
    stun_binding(gateway.port)
    for tid in gateway.library_ids[:2]:
        while True:
            manifest = http_json(f"{base}/v1/tracks/{tid}/manifest")
            if manifest["complete"]:
                break
            time.sleep(0.2)
        for c in manifest["chunks"]:
            urllib.request.urlopen(f"{base}/v1/tracks/{tid}/chunks/{c['index']}", timeout=10).read()
    asyncio.run(report_peer_stats(base))
    # Wait until Prometheus has seen the traffic in a few scrapes.
    deadline = time.monotonic() + 40
    while True:
        q = urllib.parse.quote('sum(rate(ztream_server_bytes_total[20s])) > 0')
        if http_json(f"{prometheus}/api/v1/query?query={q}")["data"]["result"]:
            break
        assert time.monotonic() < deadline, "Prometheus never saw the traffic"
        time.sleep(0.5)
    # Every panel but the two instantaneous gauges (nothing runs any more)
    # must show the traffic above.
    # The live row shows nothing without a live station (tests/system/test_live_icecast.py has one).
    quiet = {"Transcodes running", "Peers connected", "Listeners with no neighbour", "Live listeners by station",
             "Live ingests by state", "Live reconnects per minute", "Live latency (upstream to playback)",
             "Live egress: server vs peers"}
    values: dict[str, list[float]] = {}
    for title, expr in dashboard_exprs():
        q = urllib.parse.quote(substitute(expr))
        answer = http_json(f"{prometheus}/api/v1/query?query={q}")
        assert answer["status"] == "success", (title, expr, answer)
        result = answer["data"]["result"]
        assert result, f"no data for {title}: {expr}"
        values.setdefault(title, []).extend(float(r["value"][1]) for r in result)
    for title, seen in values.items():
        if title not in quiet:
            assert any(v > 0 for v in seen), (title, seen)
    offload = values["Offload share (peers / all audio)"][0]
    assert 0 < offload < 1
    # The instance variable's own query works too.
    label = http_json(f"{prometheus}/api/v1/label/instance/values")
    assert f"127.0.0.1:{gateway.port}" in label["data"]
