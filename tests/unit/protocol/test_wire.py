"""The P2P wire format, checked against the vectors the browser client shares."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peer.wire import (
    PIECE_SIZE,
    Cancel,
    Choke,
    Have,
    Holders,
    Lookup,
    Piece,
    Reassembler,
    Request,
    Unknown,
    WireError,
    channel_label,
    decode,
    encode,
    parse_label,
    split_chunk,
)
from tests.support.paths import TESTS

VECTORS = json.loads((TESTS / "vectors" / "wire" / "vectors.json").read_text())


def from_json(m: dict[str, Any]) -> Any:
    """A vector's message as a ``peer.wire`` message (an unknown type stays a dict).
    ``data_size`` n stands for n zero bytes, ``ranges_count`` n for the ranges [2i, 2i]."""
    kind = m["type"]
    if kind == "have":
        if "ranges_count" in m:
            return Have(tuple((2 * i, 2 * i) for i in range(m["ranges_count"])))
        return Have(tuple(tuple(r) for r in m["ranges"]))
    if kind == "piece":
        data = bytes(m["data_size"]) if "data_size" in m else bytes.fromhex(m["data_hex"])
        return Piece(m["index"], m["offset"], m["total"], data)
    if kind == "lookup":
        return Lookup(m["track"], m["rendition"])
    if kind == "holders":
        return Holders(m["track"], m["rendition"], tuple(m["peers"]))
    if kind in ("request", "cancel", "choke"):
        return {"request": Request, "cancel": Cancel, "choke": Choke}[kind](m["index"])
    return m


@pytest.mark.parametrize("vector", VECTORS["valid"], ids=lambda v: v["name"])
def test_valid_vectors(vector: dict[str, Any]) -> None:
    message = from_json(vector["message"])
    assert encode(message).hex() == vector["hex"]
    assert decode(bytes.fromhex(vector["hex"])) == message


@pytest.mark.parametrize("vector", VECTORS["invalid_encode"], ids=lambda v: v["name"])
def test_invalid_encode_vectors(vector: dict[str, Any]) -> None:
    """What client/protocol.js refuses to encode, this side refuses too, with WireError."""
    with pytest.raises(WireError):
        encode(from_json(vector["message"]))


@pytest.mark.parametrize("vector", VECTORS["invalid"], ids=lambda v: v["name"])
def test_invalid_vectors(vector: dict[str, Any]) -> None:
    with pytest.raises(WireError):
        decode(bytes.fromhex(vector["hex"]))


@pytest.mark.parametrize("vector", VECTORS["unknown"], ids=lambda v: v["name"])
def test_unknown_types_decode_as_unknown(vector: dict[str, Any]) -> None:
    """A newer peer's message type is not malformed: it decodes, and the core ignores it."""
    assert decode(bytes.fromhex(vector["hex"])) == Unknown(vector["code"])
    with pytest.raises(WireError):
        encode(Unknown(vector["code"]))


def test_label() -> None:
    label = VECTORS["label"]
    assert channel_label(label["track"], label["rendition"]) == label["label"]
    assert parse_label(label["label"]) == (label["track"], label["rendition"])
    for bad in ("ztream/2/a/b", "ztream/1//b", "x/1/a/b", "ztream/1/a"):
        with pytest.raises(WireError):
            parse_label(bad)


@given(st.binary(max_size=64))
def test_decode_never_raises_anything_but_wire_error(frame: bytes) -> None:
    try:
        message = decode(frame)
    except WireError:
        return
    if isinstance(message, Unknown):
        assert message.kind == frame[1] and frame[0] == 1
        return
    assert encode(message) == frame


@given(st.binary(min_size=1, max_size=5 * PIECE_SIZE), st.integers(0, 2**32 - 1))
def test_split_and_reassemble(data: bytes, index: int) -> None:
    pieces = split_chunk(index, data)
    assert all(0 < len(p.data) <= PIECE_SIZE for p in pieces)
    r = Reassembler()
    r.expect(index)
    out = None
    for p in pieces:
        assert out is None
        out = r.feed(decode(encode(p)))
    assert out == data and r.pending() == set()


def test_reassembler_refuses_unrequested_and_out_of_order() -> None:
    pieces = split_chunk(3, bytes(40000))
    r = Reassembler()
    with pytest.raises(WireError):
        r.feed(pieces[0])
    r.expect(3)
    r.feed(pieces[0])
    with pytest.raises(WireError):
        r.feed(pieces[2])
