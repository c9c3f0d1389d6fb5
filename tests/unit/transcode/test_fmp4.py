"""Tests for transcode.fmp4: the fragmented-MP4 splitter, on ffmpeg's output
(the argv of the fMP4 renditions), on GStreamer's ``mp4mux`` (another muxer),
on hand-built boxes for what neither writes, and on fuzzed input."""

from __future__ import annotations

import shutil
import struct
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transcode.ffmpeg import build_argv
from transcode.fmp4 import Fmp4Error, Fragment, FragmentSplitter, InitSegment

SOURCE_SECONDS = 9.0
HYPOTHESIS = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
Event = InitSegment | Fragment


# -- helpers -------------------------------------------------------------


def ffmpeg_exe() -> str:
    found = shutil.which("ffmpeg")
    assert found, "ffmpeg is installed by make system-deps"
    return found


def source_wav() -> bytes:
    return subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "lavfi",
         "-i", f"sine=f=440:d={SOURCE_SECONDS}:r=44100", "-ac", "2", "-f", "wav", "pipe:1"],
        capture_output=True, check=True, timeout=60,
    ).stdout  # fmt: skip


def transcode(kind: str, wav: bytes) -> bytes:
    argv = build_argv(ffmpeg_exe(), bitrate=96000, chunk_seconds=2.0, kind=kind)
    return subprocess.run(argv, input=wav, capture_output=True, check=True, timeout=60).stdout


def split(data: bytes, cuts: Sequence[int] = ()) -> list[Event]:
    splitter = FragmentSplitter()
    events: list[Event] = []
    last = 0
    for cut in sorted({c for c in cuts if 0 < c < len(data)}):
        events += splitter.feed(data[last:cut])
        last = cut
    events += splitter.feed(data[last:])
    events += splitter.feed_eof()
    return events


def box(kind: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def full(kind: bytes, version: int, flags: int, payload: bytes) -> bytes:
    return box(kind, struct.pack(">I", (version << 24) | flags) + payload)


def moov(track: int = 1, timescale: int = 1000, trex_duration: int = 0) -> bytes:
    tkhd = full(b"tkhd", 0, 3, struct.pack(">III", 0, 0, track) + bytes(68))
    mdhd = full(b"mdhd", 0, 0, struct.pack(">IIII", 0, 0, timescale, 0) + bytes(4))
    trak = box(b"trak", tkhd + box(b"mdia", mdhd))
    trex = full(b"trex", 0, 0, struct.pack(">IIIII", track, 1, trex_duration, 0, 0))
    return box(b"moov", full(b"mvhd", 0, 0, bytes(96)) + trak + box(b"mvex", trex))


def init(**kwargs: int) -> bytes:
    return box(b"ftyp", b"iso6\0\0\0\0iso6") + moov(**kwargs)


def fragment(
    base: int, durations: Sequence[int] = (), *, count: int | None = None, track: int = 1,
    default: int | None = None, tfdt_version: int = 0, payload: bytes = b"\x01\x02\x03",
) -> bytes:  # fmt: skip
    tfhd_flags = 0x020000 | (0x08 if default is not None else 0)
    tfhd = full(b"tfhd", 0, tfhd_flags, struct.pack(">I", track) + (struct.pack(">I", default) if default else b""))
    tfdt = full(b"tfdt", tfdt_version, 0, struct.pack(">Q" if tfdt_version else ">I", base))
    if durations:
        trun = full(b"trun", 0, 0x001 | 0x100 | 0x200, struct.pack(">Ii", len(durations), 0)
                    + b"".join(struct.pack(">II", d, 1) for d in durations))  # fmt: skip
    else:
        trun = full(b"trun", 0, 0x001, struct.pack(">Ii", count or 0, 0))
    return box(b"moof", full(b"mfhd", 0, 0, b"\0\0\0\1") + box(b"traf", tfhd + tfdt + trun)) + box(b"mdat", payload)


# -- real muxers ---------------------------------------------------------


@pytest.fixture(scope="module")
def outputs() -> dict[str, bytes]:
    wav = source_wav()
    made = {kind: transcode(kind, wav) for kind in ("fmp4-opus", "fmp4-aac")}
    made["again"] = transcode("fmp4-opus", wav)
    return made


@pytest.fixture(scope="module")
def gstreamer(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    gst = shutil.which("gst-launch-1.0")
    assert gst, "gst-launch-1.0 (gstreamer1.0-tools + plugins-good) is installed by make system-deps"
    out = tmp_path_factory.mktemp("gst") / "gst.mp4"
    subprocess.run(
        [gst, "-q", "audiotestsrc", "num-buffers=350", "samplesperbuffer=1024", "!",
         "audio/x-raw,rate=48000,channels=2", "!", "audioconvert", "!", "audioresample", "!",
         "opusenc", "!", "mp4mux", "fragment-duration=2000", "!", "filesink", f"location={out}"],
        check=True, timeout=60,
    )  # fmt: skip
    return out.read_bytes()


@pytest.mark.parametrize("kind", ["fmp4-opus", "fmp4-aac"])
def test_ffmpeg_output_is_init_then_fragments(outputs: dict[str, bytes], kind: str) -> None:
    data = outputs[kind]
    events = split(data)
    assert isinstance(events[0], InitSegment)
    assert events[0].data[4:8] == b"ftyp" and events[0].data[events[0].data.index(b"moov") - 4 :][4:8] == b"moov"
    fragments = events[1:]
    assert all(isinstance(f, Fragment) for f in fragments)
    assert [f.index for f in fragments] == list(range(len(fragments)))  # type: ignore[union-attr]
    assert len(fragments) == 5  # 9 s in 2 s fragments
    joined = b"".join(e.data for e in events)
    assert data.startswith(joined)  # only the trailing mfra is left out
    assert data[len(joined) + 4 : len(joined) + 8] == b"mfra"
    for f in fragments:
        assert isinstance(f, Fragment)
        assert f.data[4:8] == b"moof"
    starts = [f.start for f in fragments if isinstance(f, Fragment)]
    ends = [f.start + f.duration for f in fragments if isinstance(f, Fragment)]
    assert starts[0] == 0.0
    assert starts[1:] == pytest.approx(ends[:-1])
    assert ends[-1] == pytest.approx(SOURCE_SECONDS, abs=0.05)
    assert all(1.9 < f.duration < 2.1 for f in fragments[:-1] if isinstance(f, Fragment))


def test_ffmpeg_output_is_bit_exact(outputs: dict[str, bytes]) -> None:
    assert outputs["fmp4-opus"] == outputs["again"]


@pytest.mark.parametrize("kind", ["fmp4-opus", "fmp4-aac"])
def test_init_plus_one_fragment_decodes(outputs: dict[str, bytes], kind: str) -> None:
    events = split(outputs[kind])
    middle = events[2]
    decoded = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-xerror", "-i", "pipe:0", "-f", "null", "-"],
        input=events[0].data + middle.data, capture_output=True, timeout=60,
    )  # fmt: skip
    assert decoded.returncode == 0, decoded.stderr


def test_gstreamer_mp4mux_output(gstreamer: bytes) -> None:
    events = split(gstreamer)
    assert isinstance(events[0], InitSegment)
    fragments = [e for e in events[1:] if isinstance(e, Fragment)]
    assert len(fragments) == len(events) - 1 >= 3
    assert b"".join(e.data for e in events) == gstreamer[: sum(len(e.data) for e in events)]
    ends = [f.start + f.duration for f in fragments]
    assert [f.start for f in fragments[1:]] == pytest.approx(ends[:-1])
    assert ends[-1] == pytest.approx(350 * 1024 / 48000, abs=0.05)  # audiotestsrc's buffers


@given(cuts=st.lists(st.integers(min_value=0, max_value=200_000), max_size=60))
@HYPOTHESIS
def test_random_splits_give_the_same_events(outputs: dict[str, bytes], gstreamer: bytes, cuts: list[int]) -> None:
    for data in (outputs["fmp4-opus"], outputs["fmp4-aac"], gstreamer):
        assert split(data, cuts) == split(data)


def test_every_split_point_gives_the_same_events(outputs: dict[str, bytes]) -> None:
    data = outputs["fmp4-aac"]
    whole = split(data)
    boundaries: list[int] = []
    offset = 0
    for event in whole:
        offset += len(event.data)
        boundaries.append(offset)
    near = {b + d for b in [0, *boundaries] for d in range(-20, 21)}
    for cut in sorted(c for c in near if 0 < c < len(data)):
        assert split(data, [cut]) == whole, cut


def test_one_byte_pieces(outputs: dict[str, bytes]) -> None:
    data = outputs["fmp4-opus"]
    assert split(data, range(len(data))) == split(data)


def test_fragments_come_as_soon_as_complete(outputs: dict[str, bytes]) -> None:
    data = outputs["fmp4-opus"]
    whole = split(data)
    splitter = FragmentSplitter()
    end_of_init = len(whole[0].data)
    # The init segment waits for the first fragment's first box header.
    assert splitter.feed(data[: end_of_init + 7]) == []
    assert splitter.feed(data[end_of_init + 7 : end_of_init + 8]) == [whole[0]]
    end_of_first = end_of_init + len(whole[1].data)
    assert splitter.feed(data[end_of_init + 8 : end_of_first - 1]) == []
    assert splitter.feed(data[end_of_first - 1 : end_of_first]) == [whole[1]]


# -- hand-built ------------------------------------------------------------


def test_hand_built_timing_from_each_source_of_durations() -> None:
    data = (
        init(timescale=48000, trex_duration=960)
        + box(b"styp", b"msdh\0\0\0\0msdh")
        + fragment(0, [960, 960, 480])  # per-sample durations
        + fragment(2400, count=10, default=960)  # tfhd's default
        + fragment(12000, count=5, tfdt_version=1)  # trex's default, 64-bit tfdt
        + box(b"mfra", bytes(100))
    )
    events = split(data)
    assert isinstance(events[0], InitSegment)
    assert [(e.start, e.duration) for e in events[1:] if isinstance(e, Fragment)] == [
        (0.0, 2400 / 48000), (2400 / 48000, 9600 / 48000), (12000 / 48000, 4800 / 48000),
    ]  # fmt: skip
    assert events[1].data[4:8] == b"styp"  # the leading box travels with its fragment


def test_large_size_and_size_zero_boxes() -> None:
    mdat64 = struct.pack(">I4sQ", 1, b"mdat", 16 + 4) + b"abcd"
    moof = fragment(0, [1000])[: -len(box(b"mdat", b"\x01\x02\x03"))]
    last = fragment(1000, [1000])[: -len(box(b"mdat", b"\x01\x02\x03"))] + struct.pack(">I4s", 0, b"mdat") + b"xyz"
    data = init() + moof + mdat64 + last
    events = split(data)
    assert [e.data for e in events[1:]] == [moof + mdat64, last]
    # A box of size 0 ends only with the stream.
    splitter = FragmentSplitter()
    assert len(splitter.feed(data)) == 2
    assert [e.data for e in splitter.feed_eof()] == [last]


def test_skipped_boxes_are_not_buffered() -> None:
    splitter = FragmentSplitter()
    events = splitter.feed(init() + fragment(0, [10]))
    events += splitter.feed(struct.pack(">I4s", 8 + 10_000_000, b"free"))
    for _ in range(100):
        events += splitter.feed(bytes(100_000))
    assert len(splitter._buf) == 0
    events += splitter.feed(fragment(10, [10]))
    events += splitter.feed_eof()
    assert [e.start for e in events if isinstance(e, Fragment)] == [0.0, 0.01]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (fragment(0, [1]), "before the moov"),
        (box(b"ftyp") + box(b"mdat"), "unexpected box"),
        (init() + fragment(0, [1]) + box(b"mdat"), "mdat without its moof"),
        (box(b"ftyp") + moov() + box(b"mdat") + fragment(0, [1]), "unexpected box"),
        (init() + fragment(0, [1])[:-11] + box(b"free") + box(b"mdat"), "not an mdat"),
        (init() + fragment(0, [1]) + init(), "second"),
        (init() + fragment(0, [1], track=7), "track 7"),
        (init() + struct.pack(">I4s", 4, b"moof"), "smaller than its header"),
        (box(b"ftyp") + box(b"moov", box(b"trak", bytes(3))), "cut short"),
        (box(b"ftyp") + moov(timescale=0) + fragment(0, [1]), "timescale of 0"),
        (init(), "before any fragment"),
        (init() + fragment(0, [1])[:-3], "inside a box"),
        (init() + fragment(0, [1])[:-11], "without its mdat"),
    ],
)
def test_malformed_input(data: bytes, message: str) -> None:
    with pytest.raises(Fmp4Error, match=message):
        split(data)


def test_size_limits() -> None:
    with pytest.raises(Fmp4Error, match="init segment larger"):
        FragmentSplitter(max_header_size=100).feed(init())
    splitter = FragmentSplitter(max_fragment_size=200)
    assert len(splitter.feed(init() + fragment(0, [1]))) == 2
    with pytest.raises(Fmp4Error, match="fragment larger"):
        splitter.feed(fragment(1, [1], payload=bytes(300)))
    growing = FragmentSplitter(max_fragment_size=200)
    assert len(growing.feed(init() + fragment(0, [1])[:-11])) == 1
    with pytest.raises(Fmp4Error, match="fragment larger"):  # a size-0 mdat growing past the bound
        growing.feed(struct.pack(">I4s", 0, b"mdat") + bytes(300))


def test_errors_are_sticky_and_do_not_eat_events() -> None:
    splitter = FragmentSplitter()
    events = splitter.feed(init() + fragment(0, [1]) + box(b"mdat"))
    assert len(events) == 2
    with pytest.raises(Fmp4Error, match="mdat without"):
        splitter.feed(b"")
    with pytest.raises(Fmp4Error, match="mdat without"):
        splitter.feed_eof()
    done = FragmentSplitter()
    done.feed(init() + fragment(0, [1]))
    done.feed_eof()
    with pytest.raises(Fmp4Error, match="after feed_eof"):
        done.feed(b"")


@given(data=st.binary(max_size=400))
@HYPOTHESIS
def test_garbage_raises_only_fmp4_error(data: bytes) -> None:
    for prefix in (b"", init()):
        try:
            split(prefix + data)
        except Fmp4Error:
            pass


@given(data=st.data())
@HYPOTHESIS
def test_mutated_real_output_raises_only_fmp4_error(outputs: dict[str, bytes], data: st.DataObject) -> None:
    original = outputs["fmp4-aac"][:8000]  # the init segment and the start of a fragment
    mutated = bytearray(original)
    for _ in range(data.draw(st.integers(min_value=1, max_value=8))):
        mutated[data.draw(st.integers(min_value=0, max_value=len(mutated) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(min_value=0, max_value=len(mutated)))
    try:
        split(bytes(mutated[:cut]), data.draw(st.lists(st.integers(0, cut), max_size=5)))
    except Fmp4Error:
        pass


def test_feeds_bytes_of_any_kind(tmp_path: Path) -> None:
    data = init() + fragment(0, [5])
    splitter = FragmentSplitter()
    assert len(splitter.feed(bytearray(data)) + splitter.feed_eof()) == 2
