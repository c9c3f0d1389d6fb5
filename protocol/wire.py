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
    LOOKUP  v=1 t=6  name track, name rendition             "whom do you know that holds this track?"
    HOLDERS v=1 t=7  name track, name rendition, u8 n, n x id   the answer (n <= 16), or a notice (below)

A *name* is u8 length then that many ASCII bytes of ``A-Z a-z 0-9 . _ ~ : -``
(1..128, the control socket's track names); an *id* is u8 length then 1..64
bytes of ``A-Z a-z 0-9 _ -`` (the server's peer ids). LOOKUP and HOLDERS are
the neighbour overlay (docs/wire.md): a lookup names another track than the
channel's, so these two carry their track.

A frame of version 1 with a type this side does not know decodes as
``Unknown(type)`` and is ignored by the core: a newer peer may send more.
(Peers older than LOOKUP/HOLDERS refused unknown types as malformed.)

Pure: ``encode(message) -> bytes`` and ``decode(bytes) -> message``, no I/O.
``client/protocol.js`` is the same format; tests/vectors/wire/ holds frames
both sides must encode and decode identically.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from .limits import MAX_INDEX

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
    "Lookup",
    "Holders",
    "Unknown",
    "MAX_HOLDERS",
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
MAX_HOLDERS = 16  # ids in one HOLDERS at most

T_HAVE, T_REQUEST, T_PIECE, T_CANCEL, T_CHOKE, T_LOOKUP, T_HOLDERS = 1, 2, 3, 4, 5, 6, 7

_NAME = re.compile(rb"[A-Za-z0-9._~:-]{1,128}")
_ID = re.compile(rb"[A-Za-z0-9_-]{1,64}")


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


@dataclass(frozen=True, slots=True)
class Lookup:
    track: str
    rendition: str


@dataclass(frozen=True, slots=True)
class Holders:
    track: str
    rendition: str
    peers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Unknown:
    """A version-1 frame of a type this side does not know (decoded, never encoded)."""

    kind: int


Message = Have | Request | Piece | Cancel | Choke | Lookup | Holders | Unknown

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


def _field(value: str, pattern: re.Pattern[bytes], what: str) -> bytes:
    raw = value.encode("ascii", "replace") if isinstance(value, str) else b""
    if not pattern.fullmatch(raw):
        raise WireError(f"bad {what} {value!r}")
    return bytes([len(raw)]) + raw


def _read_field(body: memoryview, at: int, pattern: re.Pattern[bytes], what: str) -> tuple[str, int]:
    if at >= len(body):
        raise WireError(f"{what} missing")
    n = body[at]
    raw = bytes(body[at + 1 : at + 1 + n])
    if len(raw) != n or not pattern.fullmatch(raw):
        raise WireError(f"bad {what}")
    return raw.decode("ascii"), at + 1 + n


def encode(message: Message) -> bytes:
    if isinstance(message, Lookup):
        return (_HEAD.pack(VERSION, T_LOOKUP) + _field(message.track, _NAME, "track")
                + _field(message.rendition, _NAME, "rendition"))
    if isinstance(message, Holders):
        if len(message.peers) > MAX_HOLDERS:
            raise WireError(f"more than {MAX_HOLDERS} holders")
        out = bytearray(_HEAD.pack(VERSION, T_HOLDERS) + _field(message.track, _NAME, "track")
                        + _field(message.rendition, _NAME, "rendition") + bytes([len(message.peers)]))
        for peer in message.peers:
            out += _field(peer, _ID, "peer id")
        return bytes(out)
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
    if kind is None or isinstance(message, Unknown):
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
    if kind in (T_LOOKUP, T_HOLDERS):
        track, at = _read_field(body, 0, _NAME, "track")
        rendition, at = _read_field(body, at, _NAME, "rendition")
        if kind == T_LOOKUP:
            if at != len(body):
                raise WireError("LOOKUP longer than its names")
            return Lookup(track, rendition)
        if at >= len(body) or body[at] > MAX_HOLDERS:
            raise WireError(f"HOLDERS without a count of 0..{MAX_HOLDERS}")
        count, at = body[at], at + 1
        peers = []
        for _ in range(count):
            peer, at = _read_field(body, at, _ID, "peer id")
            peers.append(peer)
        if at != len(body):
            raise WireError("HOLDERS longer than its ids")
        return Holders(track, rendition, tuple(peers))
    simple = _SIMPLE_BY_TYPE.get(kind)
    if simple is None:
        return Unknown(kind)  # a newer peer's message: ignored
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
