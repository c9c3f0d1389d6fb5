"""Connections from outside against a real gateway process: caps per client and per process, slowloris, ulimit."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from tests.support.gateway import GatewayProcess

ATTACKER = "127.0.0.2"
BYSTANDER = "127.0.0.3"
UPGRADE = (
    "GET /v1/ws HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        self.writer.close()


async def open_conn(port: int, source: str) -> Conn:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    return Conn(reader, writer)


async def read_answer(conn: Conn, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and (for a non-101 answer) body of the next HTTP answer."""
    async with asyncio.timeout(timeout):
        head = await conn.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        body = b""
        if status != 101 and "content-length" in headers:
            body = await conn.reader.readexactly(int(headers["content-length"]))
        return status, headers, body


async def request(conn: Conn, text: str) -> tuple[int, dict[str, str], bytes]:
    conn.writer.write(text.encode())
    await conn.writer.drain()
    return await read_answer(conn)


async def open_socket(port: int, source: str) -> tuple[Conn, int, dict[str, str], bytes]:
    conn = await open_conn(port, source)
    status, headers, body = await request(conn, UPGRADE)
    return conn, status, headers, body


async def healthz(port: int, source: str) -> float:
    started = time.monotonic()
    conn = await open_conn(port, source)
    try:
        status, _, _ = await request(conn, "GET /healthz HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
        assert status == 200
    finally:
        conn.close()
    return time.monotonic() - started


async def test_2000_control_sockets_from_one_address_most_refused_cleanly_another_address_served(
    gateway_factory: Any,
) -> None:
    gw: GatewayProcess = gateway_factory(library=None)
    kept: list[Conn] = []
    refusals: dict[tuple[int, str], int] = {}
    unclean = 0
    gate = asyncio.Semaphore(100)

    async def attempt() -> None:
        nonlocal unclean
        async with gate:
            try:
                conn, status, headers, body = await open_socket(gw.port, ATTACKER)
            except (OSError, asyncio.IncompleteReadError, TimeoutError):
                unclean += 1
                return
            if status == 101:
                kept.append(conn)
                return
            code = json.loads(body)["error"]
            assert headers.get("content-type", "").startswith("application/json")
            assert int(headers["retry-after"]) > 0
            refusals[(status, code)] = refusals.get((status, code), 0) + 1
            conn.close()

    try:
        started = time.monotonic()
        await asyncio.gather(*(attempt() for _ in range(2000)))
        elapsed = time.monotonic() - started
        # The per-address cap holds, every other attempt got a JSON refusal.
        assert len(kept) == 64, (len(kept), refusals, unclean)
        assert unclean == 0, (unclean, refusals)
        assert set(refusals) <= {(429, "too_many_sockets"), (429, "too_many_connections")}, refusals
        assert sum(refusals.values()) == 2000 - 64
        # Another address is served normally meanwhile: a socket and its welcome, and /healthz.
        conn, status, _, _ = await open_socket(gw.port, BYSTANDER)
        assert status == 101
        conn.close()
        assert await healthz(gw.port, BYSTANDER) < 1.0
        print(f"2000 upgrades from one address in {elapsed:.1f} s: {len(kept)} kept, refused {refusals}")
        # Refusals are not a log line each: an attacker cannot flood the log.
        assert len(gw.log().splitlines()) < 30, gw.log()[-2000:]
    finally:
        for c in kept:
            c.close()


async def test_connections_over_the_per_client_cap_get_429_too_many_connections(gateway_factory: Any) -> None:
    gw: GatewayProcess = gateway_factory(library=None, server={"max_connections_per_client": 20})
    idle = [await open_conn(gw.port, ATTACKER) for _ in range(20)]
    try:
        await asyncio.sleep(0.2)
        extra = await open_conn(gw.port, ATTACKER)
        status, headers, body = await request(extra, "GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
        assert (status, json.loads(body)["error"]) == (429, "too_many_connections")
        assert headers.get("connection", "").lower() == "close" and int(headers["retry-after"]) > 0
        assert await extra.reader.read() == b""  # then closed
        extra.close()
        assert await healthz(gw.port, BYSTANDER) < 1.0  # another address: served
        idle.pop().close()  # a slot freed is a slot usable
        await asyncio.sleep(0.3)
        assert await healthz(gw.port, ATTACKER) < 1.0
    finally:
        for c in idle:
            c.close()


async def test_the_process_wide_cap_refuses_with_503_then_drops(gateway_factory: Any) -> None:
    gw: GatewayProcess = gateway_factory(library=None, server={"max_connections": 30})
    held = [await open_conn(gw.port, f"127.0.0.{10 + i % 5}") for i in range(30)]
    try:
        await asyncio.sleep(0.3)
        extra = await open_conn(gw.port, BYSTANDER)
        status, _, body = await request(extra, "GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
        assert (status, json.loads(body)["error"]) == (503, "too_many_connections")
        extra.close()
        for c in held[:5]:
            c.close()
        await asyncio.sleep(0.3)
        assert await healthz(gw.port, BYSTANDER) < 1.0
    finally:
        for c in held:
            c.close()


async def test_200_slowloris_connections_are_closed_within_the_idle_timeout(gateway_factory: Any) -> None:
    timeout = 3.0
    gw: GatewayProcess = gateway_factory(library=None, server={"idle_timeout_seconds": timeout})
    conns = [await open_conn(gw.port, ATTACKER) for _ in range(200)]
    started = time.monotonic()
    closed_after: list[float] = []

    async def trickle(conn: Conn) -> None:
        conn.writer.write(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n")
        try:
            for i in range(60):  # one more header byte a second, never the blank line
                conn.writer.write(b"X-a: b\r\n"[i % 8 : i % 8 + 1])
                await conn.writer.drain()
                try:
                    async with asyncio.timeout(1.0):
                        if await conn.reader.read(1024) == b"":
                            break
                except TimeoutError:
                    continue
        except (ConnectionError, OSError):
            pass
        closed_after.append(time.monotonic() - started)
        conn.close()

    tasks = [asyncio.create_task(trickle(c)) for c in conns]
    latency = await healthz(gw.port, BYSTANDER)  # served meanwhile
    await asyncio.gather(*tasks)
    print(f"200 slowloris connections closed after {min(closed_after):.1f}..{max(closed_after):.1f} s "
          f"(idle_timeout_seconds {timeout}); /healthz meanwhile {latency * 1000:.0f} ms")
    assert len(closed_after) == 200
    assert max(closed_after) < timeout + 3.0, max(closed_after)
    assert latency < 1.0


@pytest.fixture
def low_fd_limit() -> Any:
    saved = GatewayProcess.command_prefix
    GatewayProcess.command_prefix = ["prlimit", "--nofile=600:600", "--"]
    yield
    GatewayProcess.command_prefix = saved


async def test_a_low_open_file_limit_lowers_the_cap_with_a_warning(gateway_factory: Any, low_fd_limit: None) -> None:
    gw: GatewayProcess = gateway_factory(library=None)
    log = gw.log()
    assert "open-file limit (ulimit -n) is 600" in log and "lowered from 10000 to 344" in log, log[-2000:]
    # 344 connections fit; the 345th is refused in JSON, not with EMFILE.
    held = [await open_conn(gw.port, f"127.0.0.{10 + i % 8}") for i in range(344)]
    try:
        await asyncio.sleep(0.5)
        extra = await open_conn(gw.port, BYSTANDER)
        status, _, body = await request(extra, "GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
        assert (status, json.loads(body)["error"]) == (503, "too_many_connections")
        extra.close()
    finally:
        for c in held:
            c.close()
