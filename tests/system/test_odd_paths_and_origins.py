"""Paths with NUL and newlines, origins spelled like an operator writes them, error texts without addresses."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from gateway.errors import NotAudio, without_addresses
from gateway.http.origins import OriginPolicy, normalize_origin
from tests.support.gateway import GatewayProcess

PATHS = [
    "/client/x.js%00.css",
    "/client/%00",
    "/client/ztream-player.js%00",
    "/client/x%0a.js",
    "/client/%0d%0aSet-Cookie:%20a=b",
    "/v1/tracks/abc%00/manifest",
    "/v1/tracks/abc%0a/chunks/0",
    "/v1/tracks/%0a",
    "/v1/ws%0a",
    "/embed/x%0ay",
    "/%0a",
    "/x%0a/y",
    "/admin%0a",
    "/oembed%00",
    "/player/%0a",
]


async def raw(port: int, method: str, path: str) -> tuple[int, str, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        async with asyncio.timeout(10):
            data = await reader.read()
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers.get("content-type", ""), body


async def test_nul_and_newline_paths_get_json_4xx(gateway_factory: Any) -> None:
    gw: GatewayProcess = gateway_factory(library=None)
    bad = []
    for path in PATHS:
        for method in ("GET", "POST", "PUT", "DELETE", "HEAD"):
            status, content_type, body = await raw(gw.port, method, path)
            ok = 400 <= status < 500 and content_type.startswith("application/json")
            if ok and method != "HEAD":
                ok = "error" in json.loads(body)
            if not ok:
                bad.append((method, path, status, content_type, body[:80]))
    assert not bad, bad
    assert "Traceback" not in gw.log()


# -- one origin normalisation ------------------------------------------------------------


class _Req:
    """What the policy reads of a request."""

    def __init__(self, path: str, origin: str) -> None:
        self.path = path
        self.headers = {"Origin": origin}


@pytest.mark.parametrize("configured", ["https://Good.Example/", "https://good.example", "HTTPS://GOOD.EXAMPLE:443"])
def test_cors_and_the_socket_agree_on_an_origin_however_configured(configured: str) -> None:
    policy = OriginPolicy([configured], "https://gw.example")
    for sent in ("https://good.example", "https://Good.Example"):
        cors = policy.cors_headers(_Req("/v1/tracks", sent))  # type: ignore[arg-type]
        socket = policy.websocket_allowed(sent, "gw.example")
        assert socket and cors.get("Access-Control-Allow-Origin") == sent, (configured, sent, cors)
    for other in ("https://evil.example", "http://good.example", "https://good.example:8443", "null"):
        assert not policy.websocket_allowed(other, "gw.example")
        assert "Access-Control-Allow-Origin" not in policy.cors_headers(_Req("/v1/tracks", other))  # type: ignore[arg-type]


def test_normalize_origin() -> None:
    assert normalize_origin("https://Good.Example/") == "https://good.example"
    assert normalize_origin("HTTP://a.example:80") == "http://a.example"
    assert normalize_origin("http://a.example:8080/") == "http://a.example:8080"
    assert normalize_origin("http://[2001:DB8::1]:8000") == "http://[2001:db8::1]:8000"
    assert normalize_origin(" null ") == "null"


async def test_a_configured_origin_with_capitals_and_slash_reads_the_api_and_opens_the_socket(
    gateway_factory: Any,
) -> None:
    gw: GatewayProcess = gateway_factory(library=None, server={"embed_origins": ["https://Good.Example/"]})
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"GET /v1/tracks HTTP/1.1\r\nHost: gw\r\nOrigin: https://good.example\r\nConnection: close\r\n\r\n")
    data = await reader.read()
    writer.close()
    assert b"\r\naccess-control-allow-origin: https://good.example\r\n" in data.lower(), data[:400]
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(
        b"GET /v1/ws HTTP/1.1\r\nHost: gw\r\nOrigin: https://good.example\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    line = await reader.readline()
    writer.close()
    assert line.startswith(b"HTTP/1.1 101"), line


# -- error texts -------------------------------------------------------------------------------


def test_error_texts_lose_memory_addresses() -> None:
    text = "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x562d1c0a2b40] moov atom not found\n[aac @ 0x7f3a00001234] error"
    assert without_addresses(text) == "[mov,mp4,m4a,3gp,3g2,mj2] moov atom not found\n[aac] error"
    assert without_addresses("object at 0x7ffd5e8c9a10 failed") == "object failed"
    assert without_addresses("port 0x1F") == "port 0x1F"  # short hex numbers are not addresses
    # Every answer's detail goes through it.
    error = NotAudio(f"the upstream is not audio ffmpeg can decode: {text.splitlines()[0]}")
    assert error.to_json()["detail"] == "the upstream is not audio ffmpeg can decode: [mov,mp4,m4a,3gp,3g2,mj2] moov atom not found"
