"""Configuration errors name their key; defaults need nothing from apt."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from gateway.config import ConfigError, config_from_dict, config_to_dict, load_config
from tests.support.gateway import ROOT, free_port
from transcode.ffmpeg import find_ffmpeg, make_rendition


def test_example_config_is_valid_and_equals_the_defaults() -> None:
    example = load_config(ROOT / "config.example.toml")
    defaults = config_from_dict({})
    assert example == defaults


def test_no_file_means_defaults_with_the_demo_library() -> None:
    config = load_config(None)
    assert config.local.demo and config.server.port == 8000 and config.public_url == "http://127.0.0.1:8000"


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"server": {"prot": 1}}, "server.prot"),
        ({"server": {"port": "80"}}, "server.port"),
        ({"server": {"port": 70000}}, "server.port"),
        ({"server": {"embed_origins": ["example.org"]}}, "server.embed_origins"),
        ({"cache": {"max_bytes": -1}}, "cache.max_bytes"),
        ({"transcode": {"bitrate": 1}}, "transcode.bitrate"),
        ({"transcode": {"chunk_seconds": True}}, "transcode.chunk_seconds"),
        ({"sources": {"url": {"allow_hosts": "host"}}}, "sources.url.allow_hosts"),
        ({"sources": {"url": {"allow_hosts": ["a:notaport"]}}}, "sources.url.allow_hosts"),
        ({"sources": {"ftp": {}}}, "sources.ftp"),
        ({"nonsense": {}}, "nonsense"),
        ({"p2p": {"ice_servers": [{"url": "x"}]}}, "p2p.ice_servers"),
        ({"p2p": {"upload": "optin"}}, "p2p.upload"),
        ({"p2p": {"upload": True}}, "p2p.upload"),
        ({"p2p": {"upload_kbps": -1}}, "p2p.upload_kbps"),
        ({"p2p": {"upload_kbps": 1.5}}, "p2p.upload_kbps"),
        ({"live": {"chunk_seconds": 0.1}}, "live.chunk_seconds"),
        ({"live": {"window_seconds": 5.0, "chunk_seconds": 2.0}}, "live"),
        ({"live": {"start_behind_seconds": 60.0}}, "live"),
        ({"live": {"stations": [{"name": "a", "url": "ftp://x/"}]}}, "live.stations[0].url"),
        ({"live": {"stations": [{"name": "a", "url": "http://x/", "mode": "sometimes"}]}}, "live.stations[0].mode"),
        ({"live": {"max_stations": 1, "stations": [{"name": "a", "url": "http://x/"},
                                                   {"name": "b", "url": "http://y/"}]}}, "live"),
    ],
)
def test_bad_values_name_their_key(data: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    assert str(info.value).startswith(key)


def test_live_stations_are_typed() -> None:
    config = config_from_dict({"live": {"stations": [
        {"name": "One", "url": "http://radio.example/one.mp3", "mode": "always"},
        {"name": "Two", "url": "https://radio.example/two.ogg"},
    ]}})
    assert [(s.name, s.mode) for s in config.live.stations] == [("One", "always"), ("Two", "on-demand")]
    assert config.live.chunk_seconds == 1.0 and config.live.window_seconds == 60.0


def test_every_bad_key_is_named_and_list_items_by_index() -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict({"server": {"port": True}, "sources": {"local": {"dirs": ["/a", 7]}},
                          "p2p": {"ice_servers": [{"urls": "stun:x"}, {"url": "y"}], "upload_slots": 0}})
    assert str(info.value).split("; ") == [
        "server.port: expected an integer, got True",
        "sources.local.dirs[1]: expected a string, got 7",
        "p2p.ice_servers[1]: expected a table with 'urls'",
        "p2p.upload_slots: must be at least 1",
    ]


@pytest.mark.parametrize("data", [
    {"admin": {"token": ["tok-Secret-91"]}},
    {"sources": {"soundcloud": {"client_secret": {"v": "tok-Secret-91"}}}},
])
def test_a_mistyped_secret_is_not_echoed(data: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    assert "expected a string" in str(info.value) and "tok-Secret-91" not in str(info.value)
    assert "tok-Secret-91" not in repr(config_from_dict({"admin": {"token": "tok-Secret-91"}}))


def test_config_is_typed_and_frozen() -> None:
    config = config_from_dict({"sources": {"url": {"max_duration_seconds": 60, "allow_hosts": ["a.example"]}}})
    assert config.url.max_duration_seconds == 60.0 and isinstance(config.url.max_duration_seconds, float)
    assert config.url.allow_hosts == ("a.example",)
    with pytest.raises(ValueError):
        config.url.max_bytes = 1  # type: ignore[misc]
    assert config_from_dict(config_to_dict(config)) == config


def test_serve_refuses_a_bad_file_with_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nport = 'eighty'\n")
    result = subprocess.run([sys.executable, "-m", "gateway.cli", "serve", "--config", str(bad)],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 2
    assert "server.port" in result.stderr


def test_imageio_ffmpeg_when_there_is_none_on_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`make run` must work without apt's ffmpeg: the PyPI one encodes Opus WebM."""
    monkeypatch.setenv("PATH", str(tmp_path))
    binary = find_ffmpeg("")
    assert "imageio_ffmpeg" in binary
    rendition = make_rendition(binary, bitrate=96000, chunk_seconds=2.0)
    tone = subprocess.run(
        [binary, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=3",
         "-f", "wav", "pipe:1"], capture_output=True, check=True, timeout=60).stdout
    webm = subprocess.run(list(rendition.argv), input=tone, capture_output=True, check=True, timeout=60).stdout
    assert webm[:4] == b"\x1a\x45\xdf\xa3" and b"A_OPUS" in webm


def test_demo_library_plays_with_no_library_configured(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "demo.toml"
    # A file that only moves the port and the cache (no source, no demo key):
    # the demo library is on; the port on the command line wins over the file's.
    config.write_text(f'[server]\nport = {free_port()}\n[cache]\ndir = "{tmp_path / "cache"}"\n')
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--config", str(config),
                             "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(base + "/v1/tracks", timeout=2) as r:
                    tracks = json.load(r)["tracks"]
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
        assert len(tracks) == 3 and all(t["title"].startswith("Demo - ") for t in tracks)
        with urllib.request.urlopen(f"{base}/v1/tracks/{tracks[0]['id']}/chunks/0", timeout=30) as r:
            assert r.status == 200 and len(r.read()) > 1000
        with urllib.request.urlopen(base + "/", timeout=10) as r:
            assert b"<html" in r.read().lower()
    finally:
        proc.terminate()
        out = proc.communicate(timeout=20)[0].decode()
    assert "serving on" in out
