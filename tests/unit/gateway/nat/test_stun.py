"""The STUN Binding responder: byte-level rules, and a real STUN client over UDP."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import struct

import pytest
from aioice import stun

from gateway.nat.stun import MAX_REQUEST_BYTES, StunResponder
from gateway.nat.turn import turn_credentials
from gateway.nat.udp import start_stun

SOURCE = ("198.18.0.7", 40123)


def binding_request(*, fingerprint: bool = False, **attributes: object) -> bytes:
    message = stun.Message(stun.Method.BINDING, stun.Class.REQUEST, attributes=dict(attributes))
    if fingerprint:
        message.add_fingerprint()
    return bytes(message)


def test_answers_a_browser_style_request_with_the_source_address() -> None:
    request = binding_request()
    assert len(request) == 20  # what Chromium sends for a server-reflexive candidate
    answer = StunResponder().handle(request, SOURCE, now=0.0)
    assert answer.result == "ok" and answer.reply is not None
    reply = stun.parse_message(answer.reply)
    assert reply.message_method == stun.Method.BINDING
    assert reply.message_class == stun.Class.RESPONSE
    assert reply.transaction_id == request[8:20]
    assert reply.attributes["XOR-MAPPED-ADDRESS"] == SOURCE
    # The smallest answer the RFC allows: header + one XOR-MAPPED-ADDRESS.
    assert len(answer.reply) == 32
    assert set(reply.attributes) == {"XOR-MAPPED-ADDRESS"}


def test_ipv6_and_v4_mapped_sources() -> None:
    r = StunResponder()
    six = r.handle(binding_request(), ("2001:db8::5", 9), now=0.0)
    assert six.reply is not None and len(six.reply) == 44
    assert stun.parse_message(six.reply).attributes["XOR-MAPPED-ADDRESS"] == ("2001:db8::5", 9)
    mapped = r.handle(binding_request(), ("::ffff:198.18.0.9", 9), now=0.0)
    assert mapped.reply is not None
    assert stun.parse_message(mapped.reply).attributes["XOR-MAPPED-ADDRESS"] == ("198.18.0.9", 9)


def test_fingerprint_only_when_asked_and_never_more_than_the_address_grows_it() -> None:
    request = binding_request(fingerprint=True)
    answer = StunResponder().handle(request, SOURCE, now=0.0)
    assert answer.reply is not None
    assert "FINGERPRINT" in stun.parse_message(answer.reply).attributes
    assert len(answer.reply) - len(request) == 12


def test_ice_connectivity_check_is_answered_without_echoing_its_attributes() -> None:
    request = binding_request(fingerprint=True, USERNAME="a" * 64, PRIORITY=12345)
    answer = StunResponder().handle(request, SOURCE, now=0.0)
    assert answer.result == "ok" and answer.reply is not None
    assert len(answer.reply) < len(request)
    assert set(stun.parse_message(answer.reply).attributes) == {"XOR-MAPPED-ADDRESS", "FINGERPRINT"}


@pytest.mark.parametrize(
    "datagram",
    [
        b"",
        b"\x00" * 19,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        # RFC 3489 (no magic cookie)
        struct.pack("!HHI12s", 0x0001, 0, 0x01020304, b"x" * 12),
        # Binding indication and success response: never answered
        bytes(stun.Message(stun.Method.BINDING, stun.Class.INDICATION)),
        bytes(stun.Message(stun.Method.BINDING, stun.Class.RESPONSE)),
        # Allocate (a TURN method)
        bytes(stun.Message(stun.Method.ALLOCATE, stun.Class.REQUEST)),
        # length field that lies, and one that is not a multiple of 4
        struct.pack("!HHI12s", 0x0001, 8, 0x2112A442, b"x" * 12),
        struct.pack("!HHI12s", 0x0001, 2, 0x2112A442, b"x" * 12) + b"ab",
        # oversized
        struct.pack("!HHI12s", 0x0001, MAX_REQUEST_BYTES, 0x2112A442, b"x" * 12) + b"\0" * MAX_REQUEST_BYTES,
    ],
)
def test_everything_else_gets_no_answer(datagram: bytes) -> None:
    assert StunResponder().handle(datagram, SOURCE, now=0.0).reply is None


def test_bad_fingerprint_gets_no_answer() -> None:
    request = bytearray(binding_request(fingerprint=True))
    request[-1] ^= 0xFF
    answer = StunResponder().handle(bytes(request), SOURCE, now=0.0)
    assert answer.result == "ignored" and answer.reply is None


def test_rate_limited_per_source_ip_across_ports_and_refilled_over_time() -> None:
    r = StunResponder(rate=2.0, burst=5.0)
    results = [r.handle(binding_request(), ("198.18.0.7", 1000 + i), now=0.0).result for i in range(8)]
    assert results == ["ok"] * 5 + ["rate_limited"] * 3
    # another source is not affected
    assert r.handle(binding_request(), ("198.18.0.8", 1), now=0.0).result == "ok"
    # two tokens a second come back
    assert r.handle(binding_request(), SOURCE, now=1.0).result == "ok"
    assert r.handle(binding_request(), SOURCE, now=1.0).result == "ok"
    assert r.handle(binding_request(), SOURCE, now=1.0).result == "rate_limited"


def test_source_table_is_bounded() -> None:
    r = StunResponder(rate=0.0, burst=1.0, max_sources=100)
    for i in range(1000):
        assert r.handle(binding_request(), (f"198.18.{i // 250}.{i % 250}", 1), now=0.0).result == "ok"
    assert len(r._sources) == 100


def test_turn_credentials_are_what_coturn_recomputes() -> None:
    entry = turn_credentials(["turn:198.18.0.1:3478"], "s3cret", "peerA", now=1_700_000_000.5, ttl_seconds=600)
    assert entry["username"] == "1700000600:peerA"
    expected = base64.b64encode(hmac.new(b"s3cret", b"1700000600:peerA", hashlib.sha1).digest()).decode()
    assert entry["credential"] == expected
    assert entry["urls"] == ["turn:198.18.0.1:3478"]


async def test_a_real_stun_client_learns_its_address_over_udp() -> None:
    results: list[str] = []
    transport = await start_stun("127.0.0.1", 0, results.append)
    port = transport.get_extra_info("sockname")[1]
    loop = asyncio.get_running_loop()
    got: asyncio.Future[bytes] = loop.create_future()

    class Receiver(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: object) -> None:
            if not got.done():
                got.set_result(data)

    client, _ = await loop.create_datagram_endpoint(Receiver, local_addr=("127.0.0.1", 0))
    try:
        request = binding_request()
        client.sendto(b"junk", ("127.0.0.1", port))
        client.sendto(request, ("127.0.0.1", port))
        reply = stun.parse_message(await asyncio.wait_for(got, 5))
        assert reply.attributes["XOR-MAPPED-ADDRESS"] == client.get_extra_info("sockname")
        assert results == ["ignored", "ok"]
    finally:
        client.close()
        transport.close()
