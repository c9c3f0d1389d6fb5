"""protocol/codec.py (and messages.type_of) against the shared control vectors, field by field.

The same file drives tests/js/control-vectors.test.mjs (client/control-protocol.js).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from protocol.codec import encode, parse, parse_server, render
from protocol.messages import (
    Have,
    Introduce,
    Leave,
    PeerMessage,
    Ping,
    ProtocolError,
    Signal,
    Slots,
    Stats,
    Turn,
    Want,
    type_of,
)
from tests.support.paths import TESTS

VECTORS = json.loads((TESTS / "vectors" / "control" / "messages.json").read_text())


def fields(message: PeerMessage) -> dict[str, Any]:
    """A parsed message as the vectors spell it."""
    match message:
        case Have():
            return {"track": message.track, "rendition": message.rendition, "ranges": message.chunks.ranges(),
                    "complete": message.complete, "replace": message.replace}
        case Want():
            return {"track": message.track, "rendition": message.rendition, "chunks": list(message.chunks)}
        case Signal():
            return {"to": message.to, "data": json.loads(message.data_json)}
        case Stats():
            return {"p2p_down_bytes": message.p2p_down_bytes, "p2p_up_bytes": message.p2p_up_bytes,
                    "http_down_bytes": message.http_down_bytes, "stalls": message.stalls,
                    "startup_seconds": message.startup_seconds, "verify_failures": message.verify_failures,
                    "p2p_relay_down_bytes": message.p2p_relay_down_bytes, "connections": dict(message.connections),
                    **({} if message.neighbours is None else {"neighbours": message.neighbours}),
                    **({"sources": dict(message.sources)} if message.sources else {}),
                    **({} if message.live_latency_seconds is None
                       else {"live_latency_seconds": message.live_latency_seconds}),
                    **({"p2p_live_down_bytes": message.p2p_live_down_bytes} if message.p2p_live_down_bytes else {})}
        case Slots():
            return {"in_use": message.in_use}
        case Leave():
            return {"track": message.track, "rendition": message.rendition}
        case Ping():
            return {}
        case Introduce():
            return {"track": message.track, "rendition": message.rendition, "peer_id": message.peer_id,
                    "chunks": list(message.chunks)}
        case Turn():
            return {}


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["name"])
def test_peer_to_server(case: dict[str, Any]) -> None:
    if case["ok"]:
        message = parse(case["text"])
        assert type_of(message) == case["type"]
        assert fields(message) == case["fields"]
        # The canonical frame parses back to the same message.
        assert encode(message) == case["encoded"]
        assert parse(case["encoded"]) == message
    else:
        with pytest.raises(ProtocolError) as refused:
            parse(case["text"])
        assert (refused.value.code, refused.value.detail) == (case["error"], case["detail"])
        assert refused.value.for_type == case.get("for")


@pytest.mark.parametrize("case", VECTORS["server"], ids=lambda c: c["name"])
def test_server_to_peer(case: dict[str, Any]) -> None:
    if case["ok"]:
        message = parse_server(case["text"])
        assert render(message) == case["text"]  # the exact bytes the gateway sends
        assert json.loads(case["text"]) == case["fields"]
    else:
        with pytest.raises(ProtocolError):
            parse_server(case["text"])


def test_every_message_type_has_a_vector() -> None:
    assert {c["type"] for c in VECTORS["cases"] if c["ok"]} == {
        "have", "want", "signal", "stats", "slots", "leave", "ping", "introduce", "turn"}
    assert {c["fields"]["type"] for c in VECTORS["server"] if c["ok"]} == {
        "welcome", "peers", "signal", "pong", "error", "turn"}
