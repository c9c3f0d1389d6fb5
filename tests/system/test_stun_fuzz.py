"""10,000 fuzzed STUN datagrams against a real gateway's UDP responder: counted, dropped, no traceback."""

from __future__ import annotations

import asyncio
import os
import random
import re
import socket
import struct
import urllib.request
from typing import Any

from aioice import stun

from gateway.nat.stun import StunResponder
from tests.support.gateway import GatewayProcess

COOKIE = 0x2112A442
# Attribute types the parser knows (it decodes their values), plus a few it does not.
TYPES = [0x0001, 0x0006, 0x0008, 0x0020, 0x0024, 0x0025, 0x8022, 0x8028, 0x8029, 0x802A, 0x0013, 0x000D, 0x7777]


def fuzzed(rng: random.Random) -> bytes:
    """A datagram whose header passes the cheap checks (mostly), with attributes of random lengths."""
    kind = rng.random()
    if kind < 0.15:  # a real request, mutated anywhere
        message = stun.Message(stun.Method.BINDING, stun.Class.REQUEST,
                               attributes={"PRIORITY": rng.getrandbits(32), "USERNAME": "a:b",
                                           "ICE-CONTROLLING": rng.getrandbits(64)})
        message.add_fingerprint()
        data = bytearray(bytes(message))
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(20, len(data))] = rng.getrandbits(8)
        return bytes(data)
    if kind < 0.2:  # junk of any length
        return os.urandom(rng.randint(0, 600))
    body = bytearray()
    for _ in range(rng.randint(1, 6)):
        length = rng.choice([0, 1, 2, 3, 4, 5, 7, 8, 12, 20, rng.randint(0, 64)])
        value = os.urandom(length)
        body += struct.pack("!HH", rng.choice(TYPES), length) + value + bytes(-length % 4)
    if rng.random() < 0.3:  # an attribute header that claims more than is there
        body += struct.pack("!HH", rng.choice(TYPES), rng.randint(4, 200))
        body += bytes(-len(body) % 4)
    return struct.pack("!HHI", 0x0001, len(body), COOKIE) + os.urandom(12) + bytes(body)


def test_the_pure_responder_never_raises_on_fuzz() -> None:
    rng = random.Random(26)
    responder = StunResponder(rate=1e9, burst=1e9)
    results = {responder.handle(fuzzed(rng), ("198.18.0.7", 1), now=0.0).result for _ in range(20_000)}
    assert "malformed" in results


def stun_counts(url: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {m[1]: float(m[2]) for m in re.finditer(r'^ztream_stun_requests_total\{result="(\w+)"\} ([0-9.e+]+)$', text, re.MULTILINE)}


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_10000_fuzzed_datagrams_are_counted_and_never_logged(gateway_factory: Any) -> None:
    port = free_udp_port()
    gw: GatewayProcess = gateway_factory(library=None, p2p={"stun_port": port})
    rng = random.Random(2026)
    before = stun_counts(gw.url)
    # 250 source addresses x 40 datagrams: within each source's burst, so the
    # parser, not the rate limit, meets every one of them.
    sources = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(250)]
    try:
        for i, s in enumerate(sources):
            s.bind((f"127.0.1.{i + 1}", 0))
        sent = 0
        for s in sources:
            for _ in range(40):
                s.sendto(fuzzed(rng), ("127.0.0.1", port))
                sent += 1
            await asyncio.sleep(0.005)  # let the loopback buffer drain
    finally:
        for s in sources:
            s.close()
    counted: dict[str, float] = {}
    for _ in range(100):
        after = stun_counts(gw.url)
        counted = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        if sum(counted.values()) >= sent:
            break
        await asyncio.sleep(0.1)
    print(f"{sent} fuzzed datagrams: {counted}")
    assert sum(counted.values()) == sent == 10_000, counted
    assert counted["malformed"] > 1000, counted
    log = gw.log()
    assert "Traceback" not in log and "struct.error" not in log, log[-3000:]
    assert len(log.splitlines()) < 20, log[-3000:]  # start-up lines only
    # Still answering a real request afterwards.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.bind(("127.0.0.1", 0))
        client.settimeout(5)
        client.sendto(bytes(stun.Message(stun.Method.BINDING, stun.Class.REQUEST)), ("127.0.0.1", port))
        reply = stun.parse_message(client.recv(100))
        assert reply.attributes["XOR-MAPPED-ADDRESS"] == client.getsockname()
