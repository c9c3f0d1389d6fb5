"""gateway/http/conditional.py: If-None-Match, Range, chunk indices, bounded JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.http.conditional import (
    MAX_RANGES,
    ChunkIndexError,
    EntityTag,
    Full,
    JsonTooDeep,
    JsonTooLarge,
    Partial,
    Unsatisfiable,
    evaluate_range,
    json_depth,
    loads_limited,
    none_match,
    parse_chunk_index,
    parse_entity_tags,
)

SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
ETAG = f'"{SHA}"'

# -- If-None-Match -------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        ETAG,
        f"W/{ETAG}",  # weak comparison ignores W/
        "*",
        " * ",
        f'"other", {ETAG}',
        f'"a","b" ,\t{ETAG}',
        f"W/\"x\", W/{ETAG}",
        f", , {ETAG},",  # empty list members are legal (RFC 9110 5.6.1)
        f"garbage, {ETAG}",  # an invalid member is skipped, the valid one still counts
        f'"a,b", {ETAG}',  # a comma inside a tag does not split it
    ],
)
def test_none_match_304(header: str) -> None:
    assert none_match(header, ETAG)


@pytest.mark.parametrize(
    "header",
    [
        '"other"',
        'W/"other"',
        "",
        " ",
        ",",
        SHA,  # unquoted: not an entity tag
        f"w/{ETAG}",  # W/ is case-sensitive
        f'"{SHA}',  # unterminated
        f'"{SHA} "',  # space is not etagc
        f'"{SHA[:-1]}"',
        f'"{SHA}x"',
        '"a,b"',
        "**",
        "*, " + '"x"',  # '*' is only valid alone; then no member matches
        f"W/ {ETAG}",
    ],
)
def test_none_match_200(header: str) -> None:
    assert not none_match(header, ETAG)


def test_none_match_absent_and_weak_current() -> None:
    assert not none_match(None, ETAG)
    assert none_match(ETAG, f"W/{ETAG}")
    with pytest.raises(ValueError):
        none_match(ETAG, SHA)


def test_parse_entity_tags() -> None:
    assert parse_entity_tags("*") is None
    assert parse_entity_tags('W/"a", "b", bad, ""') == [EntityTag("a", True), EntityTag("b"), EntityTag("")]
    assert str(EntityTag("a", True)) == 'W/"a"' and str(EntityTag("a")) == '"a"'
    assert EntityTag("a").strong_match(EntityTag("a"))
    assert not EntityTag("a", True).strong_match(EntityTag("a"))
    assert EntityTag("a", True).weak_match(EntityTag("a"))
    # obs-text (latin-1 code points) is etagc; controls and DEL are not
    assert parse_entity_tags('"\xe9"') == [EntityTag("\xe9")]
    assert parse_entity_tags('"\x7f"') == [] and parse_entity_tags('"\x01"') == []


etagc = st.characters(codec="latin-1").filter(lambda c: c == "!" or "#" <= c <= "~" or c >= "\x80")
opaque = st.text(etagc, max_size=12)


@given(tags=st.lists(st.tuples(opaque, st.booleans()), max_size=6), current=opaque, weak=st.booleans())
def test_none_match_is_weak_membership(tags: list[tuple[str, bool]], current: str, weak: bool) -> None:
    header = ", ".join(str(EntityTag(o, w)) for o, w in tags)
    expected = any(o == current for o, _ in tags)
    assert none_match(header, str(EntityTag(current, weak))) is expected


# -- Range -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "total", "expected"),
    [
        ("bytes=0-99", 1000, Partial(0, 99, 1000)),
        ("bytes=0-0", 1000, Partial(0, 0, 1000)),
        ("bytes=999-999", 1000, Partial(999, 999, 1000)),
        ("bytes=500-", 1000, Partial(500, 999, 1000)),
        ("bytes=0-", 1000, Partial(0, 999, 1000)),
        ("bytes=-100", 1000, Partial(900, 999, 1000)),
        ("bytes=-1000", 1000, Partial(0, 999, 1000)),
        ("bytes=-5000", 1000, Partial(0, 999, 1000)),  # suffix longer than the body: all of it
        ("bytes=900-5000", 1000, Partial(900, 999, 1000)),  # last-pos clamps
        ("bytes=0-99999999999999999999999999", 1000, Partial(0, 999, 1000)),  # overlong saturates
        ("BYTES=0-1", 1000, Partial(0, 1, 1000)),  # the unit is case-insensitive
        (" bytes=0-1 ", 1000, Partial(0, 1, 1000)),
        ("bytes=0-1,", 1000, Partial(0, 1, 1000)),  # empty member
        ("bytes=, 0-1", 1000, Partial(0, 1, 1000)),
        ("bytes=000-001", 1000, Partial(0, 1, 1000)),
        # several ranges that merge into one
        ("bytes=0-99,100-199", 1000, Partial(0, 199, 1000)),
        ("bytes=0-99, 50-150", 1000, Partial(0, 150, 1000)),
        ("bytes=100-199,0-99", 1000, Partial(0, 199, 1000)),
        ("bytes=0-10,2000-3000", 1000, Partial(0, 10, 1000)),  # the unsatisfiable one drops out
        ("bytes=-100,900-", 1000, Partial(900, 999, 1000)),
        # unsatisfiable: 416
        ("bytes=1000-", 1000, Unsatisfiable(1000)),
        ("bytes=1000-2000", 1000, Unsatisfiable(1000)),
        ("bytes=-0", 1000, Unsatisfiable(1000)),
        ("bytes=99999999999999999999999-", 1000, Unsatisfiable(1000)),
        ("bytes=1000-,2000-", 1000, Unsatisfiable(1000)),
        ("bytes=0-", 0, Unsatisfiable(0)),
        ("bytes=-1", 0, Unsatisfiable(0)),
    ],
)
def test_range_decisions(header: str, total: int, expected: Any) -> None:
    assert evaluate_range(header, total) == expected


@pytest.mark.parametrize(
    "header",
    [
        "bytes=0-99,200-299",  # disjoint: no multipart answers, the whole body
        "items=0-1",
        "bytes 0-1",
        "bytes=",
        "bytes=,",
        "bytes=1",
        "bytes=a-b",
        "bytes=5-1",  # last < first: the set is invalid
        "bytes=0-1,5-1",
        "bytes=--1",
        "bytes=-",
        "bytes=1-2-3",
        "bytes=+1-2",
        "bytes= 0 - 1",
        "bytes=0x10-20",
        "bytes=\u00b2-3",  # superscript two
        "bytes=\u0663-",  # Arabic-Indic three
        "bytes=\uff13-",  # fullwidth three
        "bytes=1_0-20",
        "bytes = 0-1",
        ",".join(["bytes=0-0"] + [f"{i}-{i}" for i in range(1, MAX_RANGES + 2)]),  # too many specs
    ],
)
def test_range_ignored(header: str) -> None:
    decision = evaluate_range(header, 1000)
    assert isinstance(decision, Full) and decision.status == 200


def test_range_headers_and_status() -> None:
    partial = evaluate_range("bytes=10-19", 100)
    assert isinstance(partial, Partial)
    assert (partial.status, partial.length, partial.content_range) == (206, 10, "bytes 10-19/100")
    unsat = evaluate_range("bytes=100-", 100)
    assert isinstance(unsat, Unsatisfiable)
    assert (unsat.status, unsat.content_range) == (416, "bytes */100")
    assert evaluate_range(None, 100) == Full(100)
    with pytest.raises(ValueError):
        evaluate_range("bytes=0-1", -1)


def test_if_range() -> None:
    assert evaluate_range("bytes=0-1", 10, if_range=ETAG, etag=ETAG) == Partial(0, 1, 10)
    for guard in (f"W/{ETAG}", '"other"', "Wed, 21 Oct 2015 07:28:00 GMT", "", SHA):
        decision = evaluate_range("bytes=0-1", 10, if_range=guard, etag=ETAG)
        assert isinstance(decision, Full), guard
    assert isinstance(evaluate_range("bytes=0-1", 10, if_range=ETAG, etag=f"W/{ETAG}"), Full)
    assert isinstance(evaluate_range("bytes=0-1", 10, if_range=ETAG), Full)


def _oracle(first: int | None, last: int | None, total: int) -> tuple[int, int] | None:
    """RFC 9110 14.1.1/14.1.2 for one spec, written out longhand."""
    if first is None:
        assert last is not None
        if last == 0:
            return None
        if last >= total:
            return (0, total - 1) if total else None
        return total - last, total - 1
    if first >= total:
        return None
    if last is None or last >= total:
        return first, total - 1
    return first, last


@given(
    total=st.integers(0, 10_000),
    first=st.none() | st.integers(0, 12_000),
    last=st.none() | st.integers(0, 12_000),
)
def test_single_range_matches_the_rfc(total: int, first: int | None, last: int | None) -> None:
    if first is None and last is None:
        return
    spec = f"{'' if first is None else first}-{'' if last is None else last}"
    decision = evaluate_range(f"bytes={spec}", total)
    if first is not None and last is not None and last < first:
        assert isinstance(decision, Full)
        return
    span = _oracle(first, last, total)
    if span is None:
        assert decision == Unsatisfiable(total)
    else:
        assert decision == Partial(span[0], span[1], total)
        assert 0 <= decision.start <= decision.end < total


@given(total=st.integers(1, 5000), specs=st.lists(st.tuples(st.integers(0, 6000), st.integers(0, 600)), min_size=1,
                                                   max_size=MAX_RANGES))
def test_several_ranges_serve_exactly_their_union_or_everything(total: int, specs: list[tuple[int, int]]) -> None:
    header = "bytes=" + ",".join(f"{a}-{a + n}" for a, n in specs)
    decision = evaluate_range(header, total)
    wanted = {i for a, n in specs for i in range(a, min(a + n, total - 1) + 1)}
    if not wanted:
        assert decision == Unsatisfiable(total)
    elif isinstance(decision, Partial):
        assert set(range(decision.start, decision.end + 1)) == wanted
    else:  # disjoint: the whole body, which covers every range asked for
        assert isinstance(decision, Full)
        assert wanted != set(range(min(wanted), max(wanted) + 1))


@given(st.text(max_size=40))
def test_range_never_raises(header: str) -> None:
    decision = evaluate_range(header, 1000)
    if isinstance(decision, Partial):
        assert 0 <= decision.start <= decision.end < 1000


# -- chunk indices -----------------------------------------------------------


@pytest.mark.parametrize(("raw", "index"), [("0", 0), ("3", 3), ("007", 7), ("123456789", 123456789)])
def test_chunk_index_ascii(raw: str, index: int) -> None:
    assert parse_chunk_index(raw) == index


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "\u00b2",  # ² : str.isdigit() says yes, int() says no
        "\u0663",  # ٣ : int() says 3
        "\uff13",  # ３ : int() says 3
        "\u09e9",  # ৩ Bengali three
        "1\u00b2",
        "+3",
        "-1",
        " 3",
        "3 ",
        "\t3",
        "3\n",
        "1_0",
        "0x1",
        "1e3",
        "3.0",
        "1234567890",  # overlong
        "9" * 5000,
    ],
)
def test_chunk_index_refused(raw: str) -> None:
    with pytest.raises(ChunkIndexError):
        parse_chunk_index(raw)


@given(st.text(max_size=12))
def test_chunk_index_is_ascii_digits_or_error(raw: str) -> None:
    ok = 1 <= len(raw) <= 9 and all("0" <= c <= "9" for c in raw)
    try:
        value = parse_chunk_index(raw)
    except ChunkIndexError:
        assert not ok
    else:
        assert ok and value == int(raw)


def test_chunk_index_max_digits() -> None:
    assert parse_chunk_index("12", max_digits=2) == 12
    with pytest.raises(ChunkIndexError):
        parse_chunk_index("123", max_digits=2)


# -- bounded JSON --------------------------------------------------------------


def test_deep_json_is_refused_without_recursion() -> None:
    for opener, closer in (("[", "]"), ('{"a":', "}")):
        for depth in (33, 8000, 200_000):
            text = opener * depth + closer * depth
            with pytest.raises(JsonTooDeep, match="deeper than 32"):
                loads_limited(text)
            with pytest.raises(JsonTooDeep):
                loads_limited(text.encode())
    # unbalanced openers are refused as deep too (never reach the parser)
    with pytest.raises(JsonTooDeep):
        loads_limited("[" * 100_000)


def test_json_at_the_limit_parses() -> None:
    text = "[" * 32 + "1" + "]" * 32
    assert json_depth(text) == 32
    value = loads_limited(text)
    for _ in range(32):
        value = value[0]
    assert value == 1
    assert loads_limited('{"url": "http://x/[[[[{{{{"}', max_depth=1) == {"url": "http://x/[[[[{{{{"}
    assert loads_limited(r'["\"[[[[", "\\", "]]"]', max_depth=1) == ['"[[[[', "\\", "]]"]
    assert loads_limited("3", max_depth=0) == 3
    with pytest.raises(JsonTooDeep):
        loads_limited("[]", max_depth=0)


def test_json_size_limit() -> None:
    assert loads_limited(b'{"a": 1}', max_bytes=8) == {"a": 1}
    with pytest.raises(JsonTooLarge):
        loads_limited(b'{"a": 10}', max_bytes=8)
    with pytest.raises(JsonTooLarge):
        loads_limited('{"a": 10}', max_bytes=8)
    with pytest.raises(JsonTooLarge):  # 5 characters, 11 UTF-8 bytes
        loads_limited('"\u20ac\u20ac\u20ac"', max_bytes=8)


@pytest.mark.parametrize("raw", [b"", b"{", b"[1,]", b"\xff\xfe\xff", "nope", b'{"a": 1} x', b"1" * 5000])
def test_malformed_json_is_a_value_error(raw: str | bytes) -> None:
    with pytest.raises(ValueError):
        loads_limited(raw)


def test_json_encodings_like_json_loads() -> None:
    doc = {"url": "http://example.com/\u00e9"}
    for encoding in ("utf-8", "utf-8-sig", "utf-16", "utf-32-le"):
        raw = json.dumps(doc).encode(encoding)
        assert loads_limited(raw) == json.loads(raw) == doc
    with pytest.raises(ValueError):
        loads_limited(b'"\xc3"')  # truncated UTF-8


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(alphabet='[]{}"\\ab,:'),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(alphabet='[]{}"\\a'), children,
                                                                      max_size=3),
    max_leaves=20,
)


@settings(max_examples=300)
@given(value=json_values, max_depth=st.integers(0, 6))
def test_loads_limited_agrees_with_json_loads(value: Any, max_depth: int) -> None:
    text = json.dumps(value)
    assert json_depth(text) == _depth(value)
    if _depth(value) > max_depth:
        with pytest.raises(JsonTooDeep):
            loads_limited(text, max_depth=max_depth)
    else:
        assert loads_limited(text, max_depth=max_depth) == json.loads(text)
