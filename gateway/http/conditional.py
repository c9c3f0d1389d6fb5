"""HTTP request edges, decided without I/O: conditional requests, byte ranges,
chunk indices and size/depth-bounded JSON.

Handlers pass in header values and sizes and get back a decision; nothing
here reads a socket or knows aiohttp, so every rule is tested on its own
(tests/unit/gateway/http/test_conditional.py). The public behaviour is described in
docs/http.md.

Decisions taken where RFC 9110 leaves a choice:

* ``If-None-Match`` (RFC 9110 13.1.2) uses the weak comparison, accepts
  ``*``, lists and ``W/`` tags, and skips list members that are not entity
  tags (empty members are legal, 5.6.1). A header with no valid member at
  all is ignored, so a malformed header costs a full answer, never a wrong
  304.
* ``Range`` (RFC 9110 14.2) understands the ``bytes`` unit only; another
  unit, or a range set that does not parse, is ignored (200 with the whole
  representation, which 14.2 allows). A single satisfiable range gives 206.
  Several ranges are resolved and merged when they overlap or touch; if
  they merge into one range that is served as a 206, otherwise the whole
  representation is sent with 200. We never send ``multipart/byteranges``:
  media players and CDNs ask for one range, and a list of many small
  ranges is a known amplification trick (RFC 9110 14.2 lets a server
  ignore such a set). When no range is satisfiable the answer is 416 with
  ``Content-Range: bytes */<total>``.
* ``If-Range`` (13.1.5) with an entity tag uses the strong comparison; a
  date never matches (our answers carry no ``Last-Modified``), so the whole
  representation is sent.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "EntityTag",
    "parse_entity_tags",
    "none_match",
    "Full",
    "Partial",
    "Unsatisfiable",
    "RangeDecision",
    "evaluate_range",
    "ChunkIndexError",
    "parse_chunk_index",
    "JsonLimitError",
    "JsonTooDeep",
    "JsonTooLarge",
    "loads_limited",
    "json_depth",
]


# -- entity tags -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EntityTag:
    """``"opaque"`` or ``W/"opaque"`` (RFC 9110 8.8.3)."""

    opaque: str
    weak: bool = False

    def __str__(self) -> str:
        return f'{"W/" if self.weak else ""}"{self.opaque}"'

    def weak_match(self, other: EntityTag) -> bool:
        """Weak comparison (8.8.3.2): the opaque parts are equal, weakness aside."""
        return self.opaque == other.opaque

    def strong_match(self, other: EntityTag) -> bool:
        """Strong comparison: both strong and the opaque parts are equal."""
        return not self.weak and not other.weak and self.opaque == other.opaque


def _etagc(ch: str) -> bool:
    # etagc = %x21 / %x23-7E / obs-text (%x80-FF); a str from a header holds
    # obs-text as latin-1 code points.
    code = ord(ch)
    return code == 0x21 or 0x23 <= code <= 0x7E or 0x80 <= code <= 0xFF


def _parse_one_tag(text: str) -> EntityTag | None:
    weak = text.startswith("W/")
    body = text[2:] if weak else text
    if len(body) < 2 or body[0] != '"' or body[-1] != '"':
        return None
    opaque = body[1:-1]
    if not all(_etagc(ch) for ch in opaque):
        return None
    return EntityTag(opaque, weak)


def _split_list(value: str) -> list[str]:
    """Split a ``#element`` list on commas outside double quotes (an etag may hold a comma)."""
    items: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in value:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            items.append("".join(current))
            current = []
        else:
            current.append(ch)
    items.append("".join(current))
    return [item.strip(" \t") for item in items]


def parse_entity_tags(value: str) -> list[EntityTag] | None:
    """The tags of an ``If-None-Match``/``If-Match`` value; ``None`` means ``*``.

    Members that are not entity tags are skipped (tolerant reading); empty
    members are allowed by RFC 9110 5.6.1.
    """
    stripped = value.strip(" \t")
    if stripped == "*":
        return None
    tags: list[EntityTag] = []
    for item in _split_list(stripped):
        if not item:
            continue
        tag = _parse_one_tag(item)
        if tag is not None:
            tags.append(tag)
    return tags


def none_match(header: str | None, etag: str) -> bool:
    """Whether a GET/HEAD with ``If-None-Match: header`` is answered 304 Not Modified.

    ``etag`` is the representation's tag as sent in ``ETag`` (``"abc"`` or
    ``W/"abc"``). False when the header is absent or has no valid member.
    """
    if header is None:
        return False
    current = _parse_one_tag(etag.strip())
    if current is None:
        raise ValueError(f"{etag!r} is not an entity tag")
    tags = parse_entity_tags(header)
    if tags is None:  # "*": we have a current representation
        return True
    return any(tag.weak_match(current) for tag in tags)


# -- byte ranges -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Full:
    """200: send the whole representation (no Range, or one we ignore; ``reason`` says why)."""

    total: int
    reason: str = "no range"

    @property
    def status(self) -> int:
        return 200


@dataclass(frozen=True, slots=True)
class Partial:
    """206: bytes ``start..end`` (inclusive) of ``total``."""

    start: int
    end: int
    total: int

    @property
    def status(self) -> int:
        return 206

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    @property
    def content_range(self) -> str:
        return f"bytes {self.start}-{self.end}/{self.total}"


@dataclass(frozen=True, slots=True)
class Unsatisfiable:
    """416: no requested range overlaps the representation."""

    total: int

    @property
    def status(self) -> int:
        return 416

    @property
    def content_range(self) -> str:
        return f"bytes */{self.total}"


RangeDecision = Full | Partial | Unsatisfiable

# More specs than this in one header is not a media player: ignore the set.
MAX_RANGES = 16
# A position with more digits than this is past any representation we hold;
# it saturates instead of being converted (int() of a huge string is slow,
# and Python refuses more than 4300 digits).
_MAX_POS_DIGITS = 18
_SATURATED = 10**_MAX_POS_DIGITS
_DIGITS = re.compile(r"[0-9]+", re.ASCII)


def _position(text: str) -> int | None:
    if not _DIGITS.fullmatch(text):
        return None
    stripped = text.lstrip("0") or "0"
    return _SATURATED if len(stripped) > _MAX_POS_DIGITS else int(stripped)


def _parse_range_set(spec: str) -> list[tuple[int | None, int | None]] | None:
    """``[(first, last)]`` with ``None`` for an absent side; ``None`` if the set is invalid."""
    out: list[tuple[int | None, int | None]] = []
    for item in spec.split(","):
        item = item.strip(" \t")
        if not item:
            continue  # empty list members are allowed (5.6.1)
        first_text, dash, last_text = item.partition("-")
        if not dash:
            return None
        if first_text == "":
            suffix = _position(last_text)
            if suffix is None:
                return None
            out.append((None, suffix))
            continue
        first = _position(first_text)
        if first is None:
            return None
        if last_text == "":
            out.append((first, None))
            continue
        last = _position(last_text)
        if last is None or last < first:  # 14.1.1: last < first makes the set invalid
            return None
        out.append((first, last))
        if len(out) > MAX_RANGES:
            return None
    return out or None


def _resolve(first: int | None, last: int | None, total: int) -> tuple[int, int] | None:
    """The inclusive byte span a spec selects in ``total`` bytes, or None if unsatisfiable."""
    if first is None:  # suffix range: the last ``last`` bytes
        assert last is not None
        if last == 0 or total == 0:
            return None
        return max(total - last, 0), total - 1
    if first >= total:
        return None
    end = total - 1 if last is None else min(last, total - 1)
    return first, end


def evaluate_range(
    header: str | None, total: int, *, if_range: str | None = None, etag: str | None = None
) -> RangeDecision:
    """Decide the answer to a GET with ``Range: header`` for a representation of ``total`` bytes.

    ``if_range`` is the request's ``If-Range`` value and ``etag`` the
    representation's current tag; a Range guarded by an ``If-Range`` that
    does not strongly match is ignored.
    """
    if total < 0:
        raise ValueError("total must not be negative")
    if header is None:
        return Full(total)
    if if_range is not None:
        wanted = _parse_one_tag(if_range.strip(" \t"))
        current = _parse_one_tag(etag.strip()) if etag is not None else None
        if wanted is None or current is None or not wanted.strong_match(current):
            return Full(total, "If-Range does not match")
    unit, eq, spec = header.strip(" \t").partition("=")
    if not eq or unit.lower() != "bytes":
        return Full(total, "not a bytes range")
    specs = _parse_range_set(spec)
    if specs is None:
        return Full(total, "invalid range set")
    spans = sorted(span for span in (_resolve(f, lst, total) for f, lst in specs) if span is not None)
    if not spans:
        return Unsatisfiable(total)
    merged = [spans[0]]
    for start, end in spans[1:]:
        last_start, last_end = merged[-1]
        if start <= last_end + 1:
            merged[-1] = (last_start, max(last_end, end))
        else:
            merged.append((start, end))
    if len(merged) > 1:
        return Full(total, "several disjoint ranges (no multipart answers)")
    start, end = merged[0]
    return Partial(start, end, total)


# -- chunk indices -------------------------------------------------------------


class ChunkIndexError(ValueError):
    """A chunk index that is not 1..``max_digits`` ASCII digits."""


def parse_chunk_index(raw: str, *, max_digits: int = 9) -> int:
    """The chunk index in a path segment: ASCII ``0``-``9`` only.

    ``str.isdigit`` and ``int`` accept far more (``²``, ``٣``, ``３``,
    ``+3``, `` 3``, ``3_0``); a path is an identifier, so anything but plain
    ASCII digits is refused. Leading zeros are accepted (``007`` is chunk
    7), as they always were.
    """
    if not raw:
        raise ChunkIndexError("the chunk index is empty")
    if len(raw) > max_digits:
        raise ChunkIndexError(f"the chunk index has more than {max_digits} digits")
    if not _DIGITS.fullmatch(raw):
        raise ChunkIndexError(f"chunk index {raw!r} is not a non-negative integer in ASCII digits")
    return int(raw)


# -- bounded JSON --------------------------------------------------------------


class JsonLimitError(ValueError):
    """A JSON document refused for its shape, before parsing."""


class JsonTooDeep(JsonLimitError):
    pass


class JsonTooLarge(JsonLimitError):
    pass


# A JSON string (with escapes): nothing inside one opens or closes a level.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


def json_depth(text: str, *, stop_above: int | None = None) -> int:
    """The deepest array/object nesting in ``text`` (a scalar is 0), counted
    without recursion. Stops early once past ``stop_above``. For malformed
    text the count is an upper bound of what a parser would reach.
    """
    skeleton = _STRING.sub("", text)
    depth = deepest = 0
    for match in _BRACKETS.finditer(skeleton):
        if match.group() in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if stop_above is not None and deepest > stop_above:
                    return deepest
        else:
            depth = max(depth - 1, 0)
    return deepest


def loads_limited(raw: str | bytes | bytearray, *, max_depth: int = 32, max_bytes: int | None = None) -> Any:
    """``json.loads`` that refuses documents nested deeper than ``max_depth``
    (``JsonTooDeep``) or larger than ``max_bytes`` (``JsonTooLarge``) before
    parsing, so a hostile body never reaches the parser's recursion.

    Malformed JSON raises ``json.JSONDecodeError`` as ``json.loads`` does;
    bytes in no JSON encoding raise ``UnicodeDecodeError``. All of them are
    ``ValueError``.
    """
    if max_depth < 0:
        raise ValueError("max_depth must not be negative")
    if isinstance(raw, (bytes, bytearray)):
        if max_bytes is not None and len(raw) > max_bytes:
            raise JsonTooLarge(f"the JSON document is larger than {max_bytes} bytes")
        # What json.loads does with bytes: RFC 8259 encodings, BOM allowed.
        text = bytes(raw).decode(json.detect_encoding(raw), "surrogatepass")
    else:
        text = raw
        # Characters are never more than UTF-8 bytes: encode only when it can matter.
        if max_bytes is not None and (
            len(text) > max_bytes
            or (4 * len(text) > max_bytes and len(text.encode("utf-8", "surrogatepass")) > max_bytes)
        ):
            raise JsonTooLarge(f"the JSON document is larger than {max_bytes} bytes")
    depth = json_depth(text, stop_above=max_depth)
    if depth > max_depth:
        raise JsonTooDeep(f"the JSON document nests deeper than {max_depth} levels")
    return json.loads(text)
