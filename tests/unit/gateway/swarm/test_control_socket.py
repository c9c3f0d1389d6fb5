"""The control WebSocket /v1/ws through a real app on loopback.

Every abuse test also keeps a pair of well-behaved peers connected and checks
that they notice nothing: their signals still pass promptly, they receive no
error, their sockets stay open.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from gateway.http.origins import OriginPolicy
from gateway.internals.aiohttp import NO_REQUESTS
from gateway.swarm import HUB, SOCKETS, TRACKER
from gateway.swarm import socket as swarm_socket
from gateway.swarm.bucket import TokenBucket
from protocol.codec import parse as parse_message
from protocol.limits import IDLE_TIMEOUT, STATS_BURST
from protocol.messages import ProtocolError
from tests.support.paths import TESTS

VECTORS = TESTS / "vectors" / "control"
T, R = "track1", "rend1"
PROMPT = 2.0  # seconds a well-behaved peer may wait for what it is owed (loopback)


@pytest.fixture
async def gw(make_gateway: Any) -> TestClient:
    return await make_gateway(library=None)  # type: ignore[no-any-return]


class Peer:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, welcome: dict[str, Any]) -> None:
        self.ws = ws
        self.welcome = welcome
        self.id: str = welcome["peer_id"]

    async def send(self, message: dict[str, Any] | str) -> None:
        await self.ws.send_str(message if isinstance(message, str) else json.dumps(message))

    async def recv(self, timeout: float = PROMPT) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=timeout)
        assert msg.type == aiohttp.WSMsgType.TEXT, (msg.type, msg.data, msg.extra)
        return json.loads(msg.data)  # type: ignore[no-any-return]

    async def ask(self, message: dict[str, Any] | str) -> dict[str, Any]:
        await self.send(message)
        return await self.recv()

    async def silent(self, within: float = 0.2) -> None:
        """Nothing arrives within ``within`` seconds."""
        with pytest.raises(asyncio.TimeoutError):
            msg = await self.ws.receive(timeout=within)
            pytest.fail(f"unexpected {msg.type}: {msg.data!r}")

    async def closed_with(self, timeout: float = 5.0) -> int | None:
        """Read until the server closes; the close code."""
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.ws.receive()
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    return self.ws.close_code


async def connect(client: TestClient, **kwargs: Any) -> Peer:
    ws = await client.ws_connect("/v1/ws", **kwargs)
    msg = await ws.receive(timeout=PROMPT)
    welcome = json.loads(msg.data)
    assert welcome["type"] == "welcome"
    return Peer(ws, welcome)


async def introduce(holder: Peer, asker: Peer, track: str = T) -> None:
    await holder.send({"type": "have", "track": track, "rendition": R, "chunks": [0]})
    answer = await asker.ask({"type": "want", "track": track, "rendition": R, "chunks": [0]})
    assert holder.id in [p["peer_id"] for p in answer["peers"]]


@pytest.fixture
async def bystanders(gw: TestClient) -> tuple[Peer, Peer]:
    """Two peers introduced to each other, on their own track."""
    x, y = await connect(gw), await connect(gw)
    await introduce(x, y, track="bystander-track")
    return x, y


async def check_bystanders(x: Peer, y: Peer) -> None:
    for a, b in ((x, y), (y, x)):
        await a.send({"type": "signal", "to": b.id, "data": {"candidate": "c", "n": 1}})
        # The very next frame is the signal: no error, nothing else queued before it.
        assert await b.recv() == {"type": "signal", "from": a.id, "data": {"candidate": "c", "n": 1}}
    assert not x.ws.closed and not y.ws.closed
    assert await x.ask({"type": "ping"}) == {"type": "pong"}
    await y.silent(0.05)


async def metrics(client: TestClient) -> dict[str, float]:
    """Each ``ztream_`` sample name with the sum of its series (``ztream_peer_bytes_total``: every ``scope``)."""
    text = await (await client.get("/metrics")).text()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("ztream_") and not sample.labels.get("le"):
                out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


async def wait_for_gauge(client: TestClient, value: float) -> None:
    async with asyncio.timeout(PROMPT):
        while (await metrics(client))["ztream_peers_connected"] != value:
            await asyncio.sleep(0.02)


# -- welcome, have/want, signal ------------------------------------------------------


async def test_welcome(make_gateway: Any) -> None:
    ice = [{"urls": "stun:127.0.0.1:3478"}]
    gw = await make_gateway(library=None, p2p={"ice_servers": ice, "upload_slots": 3, "upload": "opt-in", "upload_kbps": 640})
    a, b = await connect(gw), await connect(gw)
    assert set(a.welcome) == {"type", "peer_id", "ice_servers", "limits", "upload"}
    # the listeners' upload policy and cap (p2p.upload, p2p.upload_kbps)
    assert a.welcome["upload"] == "opt-in" and a.welcome["limits"]["upload_kbps"] == 640
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", a.id) and a.id != b.id
    assert a.welcome["ice_servers"] == ice
    limits = a.welcome["limits"]
    assert limits["max_message_bytes"] == 65536 and limits["upload_slots"] == 3
    assert limits["stats_interval"] == 5 and limits["max_candidates"] == 5
    assert {"max_tracks", "messages_per_second", "burst", "max_chunks", "max_ranges", "max_want",
            "max_signal_bytes", "idle_timeout"} <= set(limits)
    assert gw.server.app[TRACKER].upload_slots == 3
    assert set(gw.server.app[HUB].peers) == {a.id, b.id}


async def test_peers_connected_goes_up_and_down(gw: TestClient) -> None:
    assert (await metrics(gw))["ztream_peers_connected"] == 0
    a, b = await connect(gw), await connect(gw)
    await wait_for_gauge(gw, 2)
    await a.ws.close()
    await wait_for_gauge(gw, 1)
    assert a.id not in gw.server.app[TRACKER] and b.id in gw.server.app[TRACKER]
    await b.ws.close()
    await wait_for_gauge(gw, 0)
    assert len(gw.server.app[TRACKER]) == 0


async def test_have_want_peers(make_gateway: Any) -> None:
    gw = await make_gateway(library=None, p2p={"upload_slots": 2})
    early, late, asker = await connect(gw), await connect(gw), await connect(gw)
    await early.send({"type": "have", "track": T, "rendition": R, "ranges": [[0, 4]]})
    await asyncio.sleep(0.01)  # distinct "last seen" times
    await late.send({"type": "have", "track": T, "rendition": R, "chunks": [3, 4, 5, 6]})
    await asyncio.sleep(0.01)
    answer = await asker.ask({"type": "want", "track": T, "rendition": R, "chunks": [4, 5]})
    assert answer == {"type": "peers", "track": T, "rendition": R, "peers": [
        {"peer_id": late.id, "chunks": [4, 5], "complete": False},
        {"peer_id": early.id, "chunks": [4], "complete": False},
    ]}
    # Never the asker; another rendition is another swarm.
    answer = await late.ask({"type": "want", "track": T, "rendition": R, "chunks": [3]})
    assert [p["peer_id"] for p in answer["peers"]] == [early.id]
    assert (await asker.ask({"type": "want", "track": T, "rendition": "other", "chunks": [3]}))["peers"] == []
    # All slots in use: not offered.
    await late.send({"type": "slots", "in_use": 2})
    answer = await asker.ask({"type": "want", "track": T, "rendition": R, "chunks": [4, 5]})
    assert [p["peer_id"] for p in answer["peers"]] == [early.id]
    # Leaving the track: not offered either.
    await early.send({"type": "leave", "track": T})
    assert (await asker.ask({"type": "want", "track": T, "rendition": R, "chunks": [4]}))["peers"] == []
    # A holder that leaves the socket leaves the swarm.
    await late.send({"type": "slots", "in_use": 0})
    await late.ws.close()
    await asyncio.sleep(0.05)
    assert (await asker.ask({"type": "want", "track": T, "rendition": R, "chunks": [4]}))["peers"] == []
    for p in (early, asker):
        await p.silent(0.05)  # no errors anywhere along the way


async def test_signal_carries_the_real_sender(gw: TestClient) -> None:
    holder, asker = await connect(gw), await connect(gw)
    await introduce(holder, asker)
    offer = {"kind": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"}
    await asker.send({"type": "signal", "to": holder.id, "from": holder.id, "data": offer})
    assert await holder.recv() == {"type": "signal", "from": asker.id, "data": offer}
    await holder.send({"type": "signal", "to": asker.id, "from": "forged-id", "data": {"kind": "answer"}})
    assert await asker.recv() == {"type": "signal", "from": holder.id, "data": {"kind": "answer"}}
    await asker.silent(0.05)
    await holder.silent(0.05)


async def test_signal_to_a_stranger_is_refused(gw: TestClient, bystanders: tuple[Peer, Peer]) -> None:
    holder, asker, stranger = await connect(gw), await connect(gw), await connect(gw)
    await introduce(holder, asker)
    # The stranger knows the holder's id (somehow) but was never introduced.
    error = await stranger.ask({"type": "signal", "to": holder.id, "data": {"kind": "offer"}})
    assert error["type"] == "error" and error["error"] == "not_introduced" and error["for"] == "signal"
    error = await stranger.ask({"type": "signal", "to": "no-such-peer", "data": {}})
    assert error["error"] == "not_introduced"
    # Nor may it pose as the asker.
    error = await stranger.ask({"type": "signal", "to": holder.id, "from": asker.id, "data": {}})
    assert error["error"] == "not_introduced"
    await holder.silent()
    # An introduced peer that has left: unknown_peer.
    await holder.ws.close()
    await asyncio.sleep(0.05)
    error = await asker.ask({"type": "signal", "to": holder.id, "data": {}})
    assert error["error"] in ("unknown_peer", "not_introduced")
    assert not stranger.ws.closed
    await check_bystanders(*bystanders)


# -- malformed input, sizes, rates ---------------------------------------------------


async def test_malformed_messages_get_errors_and_the_socket_stays(
    gw: TestClient, bystanders: tuple[Peer, Peer]
) -> None:
    p = await connect(gw)
    cases = [
        ("garbage", "bad_json"),
        ('{"type": "have"', "bad_json"),
        ("[1, 2, 3]", "not_an_object"),
        ("42", "not_an_object"),
        ('"have"', "not_an_object"),
        ("{}", "bad_field"),
        ('{"type": "teleport"}', "unknown_type"),
        ('{"type": "have", "rendition": "r"}', "bad_field"),
        ('{"type": "want", "track": "t"}', "bad_field"),
        ('{"type": "have", "track": "t", "rendition": "r", "chunks": [-1]}', "bad_field"),
        ('{"type": "signal", "to": "x", "data": "sdp"}', "bad_field"),
        ('{"type": "slots"}', "bad_field"),
        ("[" * 60000, "bad_json"),  # nested deeper than the decoder's stack, under 64 KiB
    ]
    for text, code in cases:
        error = await p.ask(text)
        assert error["type"] == "error" and error["error"] == code, (text[:40], error)
        assert isinstance(error["detail"], str) and error["detail"]
    await p.ws.send_bytes(b"\x00\x01")
    assert (await p.recv())["error"] == "bad_json"
    assert not p.ws.closed
    assert await p.ask({"type": "ping"}) == {"type": "pong"}
    await check_bystanders(*bystanders)


async def test_oversized_message_closes_the_offender(gw: TestClient, bystanders: tuple[Peer, Peer]) -> None:
    p = await connect(gw)
    # Exactly at the cap is read (unknown fields are ignored).
    at_cap = '{"type":"ping","pad":"' + "x" * (65536 - 24) + '"}'
    assert len(at_cap) == 65536
    assert await p.ask(at_cap) == {"type": "pong"}
    await p.send('{"type":"ping","pad":"' + "x" * (1 << 20) + '"}')
    assert await p.closed_with() == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    q = await connect(gw)
    await q.send(at_cap.replace('"pad"', '"pad1"'))  # one byte over
    assert await q.closed_with() == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    await check_bystanders(*bystanders)
    await wait_for_gauge(gw, 2)


async def test_a_burst_is_rate_limited_then_closed(gw: TestClient, bystanders: tuple[Peer, Peer]) -> None:
    p = await connect(gw)
    frame = json.dumps({"type": "want", "track": T, "rendition": R, "chunks": [0]})
    for _ in range(2000):
        try:
            await p.ws.send_str(frame)
        except ConnectionError:
            break
    answers: list[str] = []
    code = None
    async with asyncio.timeout(10):
        while True:
            msg = await p.ws.receive()
            if msg.type != aiohttp.WSMsgType.TEXT:
                code = p.ws.close_code
                break
            body = json.loads(msg.data)
            answers.append(body["type"] if body["type"] != "error" else body["error"])
    assert code == aiohttp.WSCloseCode.POLICY_VIOLATION
    # The burst allowance, then the rate (generous: a loaded machine reads slowly).
    assert 100 <= answers.count("peers") < 1000
    assert answers.count("rate_limited") >= 40
    assert set(answers) == {"peers", "rate_limited"}
    await check_bystanders(*bystanders)


async def test_stats_are_rate_limited_separately(gw: TestClient) -> None:
    p = await connect(gw)
    codes = []
    for _ in range(6):
        await p.send({"type": "stats", "p2p_down_bytes": 1000})
    await p.send({"type": "ping"})
    while (body := await p.recv())["type"] != "pong":
        codes.append(body["error"])
    assert codes == ["rate_limited", "rate_limited"]  # a burst of 4, then about one per 2 s
    assert (await metrics(gw))["ztream_peer_bytes_total"] == 4000


# -- Origin --------------------------------------------------------------------


async def test_origin_checked_against_embed_origins(make_gateway: Any) -> None:
    gw = await make_gateway(library=None, server={"embed_origins": ["https://blog.example"]})
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await gw.ws_connect("/v1/ws", origin="https://evil.example")
    assert refused.value.status == 403
    r = await gw.get("/v1/ws", headers={"Origin": "https://evil.example", "Connection": "Upgrade",
                                         "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                                         "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert r.status == 403 and (await r.json())["error"] == "origin_forbidden"
    assert (await metrics(gw))["ztream_peers_connected"] == 0
    await connect(gw, origin="https://blog.example")
    await connect(gw)  # no Origin: not a browser (the Python peer)
    await connect(gw, origin=f"http://{gw.host}:{gw.port}")  # same origin: the gateway's own /embed page
    # Anyone may connect when embed_origins is "*".
    open_gw = await make_gateway(library=None)
    await connect(open_gw, origin="https://evil.example")


def test_origin_allowed() -> None:
    listed = ("https://blog.example",)
    ok = lambda o, host="gw.example:8000": OriginPolicy(  # noqa: E731
        listed, "https://cdn.example").websocket_allowed(o, host)
    assert ok("https://blog.example") and ok("HTTPS://Blog.Example/")
    assert ok("https://cdn.example") and ok("http://gw.example:8000")
    assert not ok("https://blog.example.evil") and not ok("null") and not ok("https://gw.example")
    assert not ok("https://x.example", host=None)
    assert OriginPolicy(("*",), "").websocket_allowed("null", None)


async def test_plain_get_is_not_upgraded(gw: TestClient) -> None:
    r = await gw.get("/v1/ws")
    assert r.status == 400 and (await r.json())["error"] == "bad_request"


# -- stats ---------------------------------------------------------------------


async def test_valid_stats_change_the_metrics(gw: TestClient) -> None:
    p = await connect(gw)
    before = await metrics(gw)
    await p.send({"type": "stats", "p2p_down_bytes": 123456, "p2p_up_bytes": 999, "http_down_bytes": 5000,
                  "stalls": 2, "startup_seconds": 0.3, "verify_failures": 1, "live_latency_seconds": 3.5})
    await p.send({"type": "stats", "p2p_down_bytes": 44, "stalls": 0, "startup_seconds": None,
                  "live_latency_seconds": None})
    assert await p.ask({"type": "ping"}) == {"type": "pong"}  # both handled, no error
    after = await metrics(gw)
    assert after["ztream_peer_bytes_total"] - before["ztream_peer_bytes_total"] == 123500
    assert after["ztream_playback_stalls_total"] - before["ztream_playback_stalls_total"] == 2
    assert after["ztream_chunk_verify_failures_total"] - before["ztream_chunk_verify_failures_total"] == 1
    assert after["ztream_startup_seconds_count"] - before["ztream_startup_seconds_count"] == 1
    assert after["ztream_startup_seconds_sum"] - before["ztream_startup_seconds_sum"] == pytest.approx(0.3)
    assert after["ztream_live_latency_seconds_count"] - before["ztream_live_latency_seconds_count"] == 1
    assert after["ztream_live_latency_seconds_sum"] - before["ztream_live_latency_seconds_sum"] == pytest.approx(3.5)
    # Upload and HTTP bytes are validated but counted server-side, not from reports.
    assert after["ztream_server_bytes_total"] == before["ztream_server_bytes_total"]


# (field, raw JSON value): each is sent after valid values for every field;
# JSON's last duplicate key wins, so the bad value is the one read, and none
# of the valid values that ride along may count.
BAD_STATS = [
    ("p2p_down_bytes", "-1"),
    ("p2p_down_bytes", "NaN"),
    ("p2p_down_bytes", "Infinity"),
    ("p2p_down_bytes", "-Infinity"),
    ("p2p_down_bytes", '"1000"'),
    ("p2p_down_bytes", "true"),
    ("p2p_down_bytes", "1e3"),
    ("p2p_down_bytes", "2000000000"),
    ("p2p_up_bytes", "-5"),
    ("http_down_bytes", "[1]"),
    ("stalls", "1001"),
    ("stalls", "false"),
    ("startup_seconds", "NaN"),
    ("startup_seconds", "Infinity"),
    ("startup_seconds", "601"),
    ("startup_seconds", "-1"),
    ("startup_seconds", '"0.5"'),
    ("startup_seconds", "true"),
    ("live_latency_seconds", "-0.5"),
    ("live_latency_seconds", "601"),
    ("verify_failures", "-1"),
    ("verify_failures", "1.5"),
]
VALID_STATS = (
    '"p2p_down_bytes":7,"p2p_up_bytes":1,"http_down_bytes":2,"stalls":3,"startup_seconds":1.0,"verify_failures":2'
)


async def test_bad_stats_are_refused_whole(gw: TestClient, bystanders: tuple[Peer, Peer]) -> None:
    p = await connect(gw)
    before = await metrics(gw)
    for key, raw in BAD_STATS:
        text = f'{{"type":"stats",{VALID_STATS},"{key}":{raw}}}'
        error = await p.ask(text)
        assert error["type"] == "error" and error["error"] == "bad_stats" and error["for"] == "stats", text
        assert key in error["detail"]
    assert not p.ws.closed
    assert await metrics(gw) == before
    # The same connection may still report: the refusals cost it nothing else.
    await p.send(f'{{"type":"stats",{VALID_STATS}}}')
    assert await p.ask({"type": "ping"}) == {"type": "pong"}
    assert (await metrics(gw))["ztream_peer_bytes_total"] == before["ztream_peer_bytes_total"] + 7
    await check_bystanders(*bystanders)


# -- lifetime --------------------------------------------------------------------


async def test_idle_peers_are_closed(gw: TestClient, bystanders: tuple[Peer, Peer]) -> None:
    p = await connect(gw)
    loop = asyncio.get_running_loop()
    sockets = gw.server.app[SOCKETS]
    for peer in bystanders:
        gw.server.app[TRACKER].touch(peer.id, loop.time() + IDLE_TIMEOUT)
    sockets.sweep(loop.time() + IDLE_TIMEOUT + 1)
    assert await p.closed_with() == 4000
    assert p.id not in gw.server.app[TRACKER]
    await check_bystanders(*bystanders)


async def test_shutdown_closes_every_socket(make_gateway: Any) -> None:
    gw = await make_gateway(library=None)
    a, b = await connect(gw), await connect(gw)
    # The server side only: TestClient.close would close these sockets itself.
    closing = asyncio.ensure_future(gw.server.close())
    try:
        assert await a.closed_with() == aiohttp.WSCloseCode.GOING_AWAY
        assert await b.closed_with() == aiohttp.WSCloseCode.GOING_AWAY
    finally:
        async with asyncio.timeout(10):
            await closing


# -- pure pieces and shared vectors -------------------------------------------------


def test_token_bucket() -> None:
    b = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [b.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert b.take(0.5) and not b.take(0.5)
    assert b.take(10.0, cost=3) and not b.take(10.0)
    assert not b.take(5.0)  # time going backwards refills nothing


def load_vectors() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []
    for path in sorted(VECTORS.glob("*.json")):
        cases.extend(json.loads(path.read_text())["cases"])
    return cases


@pytest.mark.parametrize("case", load_vectors(), ids=lambda c: c["name"])
def test_vectors(case: dict[str, Any]) -> None:
    if case["ok"]:
        message = parse_message(case["text"])
        assert type(message).__name__.lower() == case["type"]
    else:
        with pytest.raises(ProtocolError) as refused:
            parse_message(case["text"])
        assert refused.value.code == case["error"]
        assert refused.value.for_type == case.get("for")


async def test_vectors_over_the_socket(gw: TestClient) -> None:
    """The same verdicts from the live server, paced under the rate limits."""
    cases = load_vectors()
    # A fresh connection per batch: at most 20 cases, so the refusals stay well
    # under the strikes allowed, and at most STATS_BURST stats frames, so the
    # valid ones stay under their own rate.
    batches: list[list[dict[str, Any]]] = [[]]
    for case in cases:
        stats = [c for c in batches[-1] if '"stats"' in c["text"]]
        if len(batches[-1]) == 20 or ('"stats"' in case["text"] and len(stats) == STATS_BURST):
            batches.append([])
        batches[-1].append(case)
    for batch in batches:
        p = await connect(gw)
        for case in batch:
            await p.send(case["text"])
            # A barrier: the answer to this want comes after any answer to the case.
            await p.send({"type": "want", "track": "barrier", "rendition": "barrier"})
            answers = []
            while (body := await p.recv()).get("track") != "barrier":
                answers.append(body)
            if case["ok"]:
                # A valid frame may draw an answer of its own (peers, pong), or
                # a refusal by the tracker (a signal to a stranger) or for want
                # of a TURN server (this gateway has none); never a protocol error.
                assert all(a["type"] in ("peers", "pong") or a.get("error") in ("not_introduced", "no_turn")
                           for a in answers), case
            else:
                assert [a["error"] for a in answers] == [case["error"]], case["name"]
        await p.ws.close()


# -- a receiver too slow to keep up --------------------------------------------------


class _StuckSocket:
    """A WebSocket whose peer never reads: every send and the close hang."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.close_code: int | None = None
        self.gate = asyncio.Event()  # never set

    async def send_str(self, text: str) -> None:
        self.sent.append(text)
        await self.gate.wait()

    async def close(self, *, code: int, message: bytes) -> bool:
        self.close_code = code
        await self.gate.wait()
        return True


class _Transport:
    aborted = False

    def abort(self) -> None:
        self.aborted = True


class _Request:
    def __init__(self) -> None:
        self.transport = _Transport()


async def test_a_slow_receiver_is_closed_and_nobody_waits_for_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(swarm_socket, "CLOSE_TIMEOUT", 0.05)
    ws, request = _StuckSocket(), _Request()
    conn = swarm_socket.Connection("slow", ws, request)  # type: ignore[arg-type]
    conn.send('{"n":"first"}')
    await asyncio.sleep(0.01)  # the writer takes it and hangs in the socket
    assert ws.sent == ['{"n":"first"}']
    loop = asyncio.get_running_loop()
    started = loop.time()
    for i in range(swarm_socket.SEND_QUEUE_MESSAGES + 10):
        conn.send(f'{{"n":{i}}}')  # synchronous: a relay never awaits the target
    assert loop.time() - started < 0.5
    assert conn.closing
    await conn.finish()
    assert ws.close_code == aiohttp.WSCloseCode.TRY_AGAIN_LATER
    assert request.transport.aborted  # it did not even take the close frame
    assert len(ws.sent) == 1  # the first frame, stuck in the socket; the rest dropped
    conn.send("late")  # after closing: ignored, no error
    assert len(ws.sent) == 1


# -- what an idle socket holds (its RSS, with tens of thousands open) ----------------


class _Socket:
    """A WebSocket whose peer reads as fast as it is sent to; each send yields once."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.close_code: int | None = None

    async def send_str(self, text: str) -> None:
        await asyncio.sleep(0)
        self.sent.append(text)

    async def close(self, *, code: int, message: bytes) -> bool:
        self.close_code = code
        return True


async def _drained(conn: swarm_socket.Connection) -> None:
    async with asyncio.timeout(PROMPT):
        while conn._writer is not None:
            await asyncio.sleep(0.001)


async def test_an_idle_connection_holds_no_queue_and_no_writer() -> None:
    ws = _Socket()
    conn = swarm_socket.Connection("idle", ws, _Request())  # type: ignore[arg-type]
    assert conn._queue is None and conn._writer is None
    conn.send("a0")
    await asyncio.sleep(0)  # the writer has taken a0 and is in the socket
    conn.send("a1")  # queued behind it, to the same writer
    conn.send("a2")
    await _drained(conn)
    assert ws.sent == ["a0", "a1", "a2"]
    assert conn._queue is None and conn._queued_bytes == 0  # idle again: nothing held
    conn.send("b0")  # a new burst, a new writer, the same order
    conn.close(1008, "bye")
    conn.send("b1")  # after the close: dropped
    await conn.finish()
    assert ws.sent == ["a0", "a1", "a2", "b0"]
    assert ws.close_code == 1008


async def test_an_idle_connection_that_ends_is_closed_1000() -> None:
    ws = _Socket()
    conn = swarm_socket.Connection("idle", ws, _Request())  # type: ignore[arg-type]
    await conn.finish()
    assert ws.close_code == aiohttp.WSCloseCode.OK


async def test_an_open_control_socket_holds_no_http_parser_and_no_writer(gw: TestClient) -> None:
    p = await connect(gw)
    conn = gw.server.app[SOCKETS].connections[p.id]
    await _drained(conn)  # the welcome is out: the writer has ended
    assert conn._queue is None
    # aiohttp's HTTP parser and request queue of the upgraded connection were
    # let go (if this fails after an aiohttp upgrade, see gateway/internals/aiohttp.py)
    protocol = conn.request.protocol
    assert protocol._parser is None
    assert protocol._messages is NO_REQUESTS and protocol._messages.maxlen == 0
    assert len(gw.server.app[SOCKETS].heartbeats) == 1  # its heartbeat: a place on the wheel
    # ... and the socket works as before: messages, the peer's own pings, big frames
    assert await p.ask({"type": "ping"}) == {"type": "pong"}
    await p.ws.ping()
    assert await p.ask({"type": "ping"}) == {"type": "pong"}
    await p.send("x" * (64 * 1024 + 1))
    assert await p.closed_with() == aiohttp.WSCloseCode.MESSAGE_TOO_BIG


# -- heartbeats (one wheel for every socket: gateway/swarm/heartbeat.py) -------------


async def test_a_peer_that_answers_pings_stays_and_one_that_does_not_is_dropped(
    make_gateway: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(swarm_socket, "HEARTBEAT", 0.4)  # pinged every 0.4-0.6 s, 0.2-0.3 s to answer
    gw = await make_gateway(library=None)
    answers = await connect(gw)  # aiohttp's client answers pings itself
    deaf = await connect(gw, autoping=False)  # reads, and never answers
    pinged = 0

    async def read_deaf() -> int | None:
        nonlocal pinged
        while True:
            msg = await deaf.ws.receive()
            if msg.type == aiohttp.WSMsgType.PING:
                pinged += 1
            elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                return deaf.ws.close_code

    async def read_answers() -> None:
        # aiohttp's client answers a ping when its application reads.
        with pytest.raises(asyncio.TimeoutError):
            async with asyncio.timeout(2.0):  # several periods
                msg = await answers.ws.receive()
                pytest.fail(f"unexpected {msg.type}: {msg.data!r}")

    async with asyncio.timeout(5):
        await asyncio.gather(read_deaf(), read_answers())
    assert pinged == 1  # one ping, no answer, dropped (no close frame: nobody reads it)
    await wait_for_gauge(gw, 1)
    assert list(gw.server.app[SOCKETS].connections) == [answers.id]
    assert await answers.ask({"type": "ping"}) == {"type": "pong"}
    assert not answers.ws.closed


async def test_a_peer_that_answers_with_any_frame_stays(make_gateway: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(swarm_socket, "HEARTBEAT", 0.4)
    gw = await make_gateway(library=None)
    p = await connect(gw, autoping=False)
    pings = 0
    async with asyncio.timeout(5):
        while pings < 3:
            msg = await p.ws.receive()
            if msg.type == aiohttp.WSMsgType.PING:
                pings += 1
                # not a pong: a protocol message counts as much
                assert await p.ask({"type": "ping"}) == {"type": "pong"}
            else:
                assert msg.type == aiohttp.WSMsgType.TEXT, msg
    assert not p.ws.closed


async def test_the_peers_own_pings_are_answered(gw: TestClient) -> None:
    p = await connect(gw, autoping=False)
    await p.ws.ping(b"hello")
    msg = await p.ws.receive(timeout=PROMPT)
    assert (msg.type, msg.data) == (aiohttp.WSMsgType.PONG, b"hello")
    assert await p.ask({"type": "ping"}) == {"type": "pong"}  # and nothing went to the hub
