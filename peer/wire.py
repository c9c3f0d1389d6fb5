"""The P2P wire format spoken over a WebRTC DataChannel (version 1).

Theory of operation: one binary DataChannel per neighbour and track, labelled
``ztream/1/<track>/<rendition>``, so messages never name the track. Every
message is a binary frame that starts with a version byte and a type byte;
integers are unsigned, big-endian (network order). Chunks travel as PIECEs
of at most 16 KiB, which fits every browser's SCTP message size (RFC 8831
leaves it to the implementation; Firefox's is the smallest). The receiver
reassembles a chunk and checks its SHA-256 against the manifest before using
it: nothing here is trusted.

    HAVE    v=1 t=1  u32 n, then n x (u32 first, u32 last)   ranges, inclusive; replaces the last HAVE
    REQUEST v=1 t=2  u32 index
    PIECE   v=1 t=3  u32 index, u32 offset, u32 total, payload (<= 16384 bytes)
    CANCEL  v=1 t=4  u32 index
    CHOKE   v=1 t=5  u32 index                              "will not send this" (no slot, not held)

Pure: ``encode(message) -> bytes`` and ``decode(bytes) -> message``, no I/O.
``client/protocol.js`` is the same format; tests/vectors/wire/ holds frames
both sides must encode and decode identically.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "VERSION",
    "PIECE_SIZE",
    "MAX_CHUNK_SIZE",
    "MAX_RANGES",
    "Have",
    "Request",
    "Piece",
    "Cancel",
    "Choke",
    "Message",
    "WireError",
    "encode",
    "decode",
    "split_chunk",
    "channel_label",
    "parse_label",
    "Reassembler",
]

VERSION = 1
PIECE_SIZE = 16 * 1024
MAX_CHUNK_SIZE = 4 * 1024 * 1024  # a 2 s Opus cluster is ~25 KB; anything near this is hostile
MAX_RANGES = 4096
MAX_INDEX = 0xFFFFFFFF

T_HAVE, T_REQUEST, T_PIECE, T_CANCEL, T_CHOKE = 1, 2, 3, 4, 5


class WireError(ValueError):
    """A frame that does not follow the format; the sender is misbehaving."""


@dataclass(frozen=True, slots=True)
class Have:
    ranges: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class Request:
    index: int


@dataclass(frozen=True, slots=True)
class Piece:
    index: int
    offset: int
    total: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Cancel:
    index: int


@dataclass(frozen=True, slots=True)
class Choke:
    index: int


Message = Have | Request | Piece | Cancel | Choke

_HEAD = struct.Struct(">BB")
_U32 = struct.Struct(">I")
_PIECE = struct.Struct(">III")
_SIMPLE: dict[type, int] = {Request: T_REQUEST, Cancel: T_CANCEL, Choke: T_CHOKE}
_SIMPLE_BY_TYPE: dict[int, type[Request] | type[Cancel] | type[Choke]] = {
    T_REQUEST: Request,
    T_CANCEL: Cancel,
    T_CHOKE: Choke,
}


def _check_index(value: int) -> int:
    """A u32 field: a whole number (not a bool) in 0..2**32-1, as ``checkIndex`` in
    ``client/protocol.js``; anything else is refused on encode, never truncated."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INDEX:
        raise WireError(f"index {value!r} out of range")
    return value


def encode(message: Message) -> bytes:
    if isinstance(message, Have):
        if len(message.ranges) > MAX_RANGES:
            raise WireError("too many ranges")
        out = bytearray(_HEAD.pack(VERSION, T_HAVE) + _U32.pack(len(message.ranges)))
        for first, last in message.ranges:
            if not _check_index(first) <= _check_index(last):
                raise WireError(f"bad range {first}..{last}")
            out += _U32.pack(first) + _U32.pack(last)
        return bytes(out)
    if isinstance(message, Piece):
        # The same checks as decode: what this side sends, the other side accepts.
        if not 0 < len(message.data) <= PIECE_SIZE:
            raise WireError("piece payload empty or over 16 KiB")
        offset, total = _check_index(message.offset), _check_index(message.total)
        if not 0 < total <= MAX_CHUNK_SIZE or offset + len(message.data) > total:
            raise WireError("piece outside its chunk")
        return _HEAD.pack(VERSION, T_PIECE) + _PIECE.pack(_check_index(message.index), offset, total) + message.data
    kind = _SIMPLE.get(type(message))
    if kind is None:
        raise WireError(f"cannot encode {message!r}")
    return _HEAD.pack(VERSION, kind) + _U32.pack(_check_index(message.index))


def decode(frame: bytes) -> Message:
    """Parse one frame; raises ``WireError`` for anything malformed."""
    if len(frame) < 2:
        raise WireError("frame shorter than its header")
    version, kind = _HEAD.unpack_from(frame)
    if version != VERSION:
        raise WireError(f"unsupported version {version}")
    body = memoryview(frame)[2:]
    if kind == T_HAVE:
        if len(body) < 4:
            raise WireError("HAVE without a count")
        (count,) = _U32.unpack_from(body)
        if count > MAX_RANGES or len(body) != 4 + 8 * count:
            raise WireError("HAVE length does not match its count")
        ranges = []
        for i in range(count):
            first, last = struct.unpack_from(">II", body, 4 + 8 * i)
            if first > last:
                raise WireError(f"bad range {first}..{last}")
            ranges.append((first, last))
        return Have(tuple(ranges))
    if kind == T_PIECE:
        if len(body) < _PIECE.size:
            raise WireError("PIECE header truncated")
        index, offset, total = _PIECE.unpack_from(body)
        data = bytes(body[_PIECE.size :])
        if not data or len(data) > PIECE_SIZE:
            raise WireError("PIECE payload empty or over 16 KiB")
        if not 0 < total <= MAX_CHUNK_SIZE or offset + len(data) > total:
            raise WireError("PIECE outside its chunk")
        return Piece(index, offset, total, data)
    simple = _SIMPLE_BY_TYPE.get(kind)
    if simple is None:
        raise WireError(f"unknown message type {kind}")
    if len(body) != 4:
        raise WireError("wrong length")
    return simple(_U32.unpack_from(body)[0])


def split_chunk(index: int, data: bytes) -> list[Piece]:
    """A chunk as the PIECEs that carry it, in order."""
    if not 0 < len(data) <= MAX_CHUNK_SIZE:
        raise WireError("chunk size out of range")
    return [Piece(index, off, len(data), data[off : off + PIECE_SIZE]) for off in range(0, len(data), PIECE_SIZE)]


def channel_label(track: str, rendition: str) -> str:
    return f"ztream/{VERSION}/{track}/{rendition}"


def parse_label(label: str) -> tuple[str, str]:
    parts = label.split("/")
    if len(parts) != 4 or parts[0] != "ztream" or parts[1] != str(VERSION) or not parts[2] or not parts[3]:
        raise WireError(f"not a ztream channel: {label!r}")
    return parts[2], parts[3]


class Reassembler:
    """Collects the PIECEs of requested chunks; yields each chunk once whole.

    Pieces must arrive in order (a DataChannel is reliable and ordered); a
    piece for a chunk not asked for, out of order, or disagreeing on the
    total is a protocol error.
    """

    def __init__(self) -> None:
        self._parts: dict[int, bytearray] = {}
        self._totals: dict[int, int] = {}

    def expect(self, index: int) -> None:
        self._parts[index] = bytearray()
        self._totals.pop(index, None)

    def forget(self, index: int) -> None:
        self._parts.pop(index, None)
        self._totals.pop(index, None)

    def pending(self) -> set[int]:
        return set(self._parts)

    def feed(self, piece: Piece) -> bytes | None:
        buf = self._parts.get(piece.index)
        if buf is None:
            raise WireError(f"unrequested piece of chunk {piece.index}")
        total = self._totals.setdefault(piece.index, piece.total)
        if piece.total != total or piece.offset != len(buf):
            raise WireError(f"piece of chunk {piece.index} out of order")
        buf += piece.data
        if len(buf) < total:
            return None
        self.forget(piece.index)
        return bytes(buf)
