"""Tests for transcode.ebml: the WebM splitter, on real ffmpeg output, on the
golden files in tests/data/ (see make_golden.sh there), and on hand-built
EBML for the cases ffmpeg does not produce."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import transcode.ebml as ebml
from tests.support.paths import TESTS
from transcode.ebml import Cluster, ClusterSplitter, EbmlError, InitSegment

DATA = TESTS / "data"
MKVINFO = "/usr/bin/mkvinfo"
SOURCE_SECONDS = 13.0
TRANSCODE_ARGV = [
    "-hide_banner", "-loglevel", "error", "-protocol_whitelist", "pipe",
    "-i", "pipe:0", "-vn", "-map_metadata", "-1",
    "-c:a", "libopus", "-b:a", "96000", "-ar", "48000",
    "-f", "webm", "-live", "1", "-cluster_time_limit", "2000",
    "-fflags", "+bitexact", "-flags", "+bitexact", "pipe:1",
]  # fmt: skip

Event = InitSegment | Cluster

HYPOTHESIS = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# -- helpers -------------------------------------------------------------


def golden(name: str) -> bytes:
    """The one loader of tests/data/ files."""
    return (DATA / name).read_bytes()


def ffmpeg_exe() -> str:
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg  # type: ignore[import-untyped]

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def ffmpeg(args: Sequence[str], data: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [ffmpeg_exe(), *args], input=data, capture_output=True, timeout=60, check=False
    )


def decoded_seconds(webm: bytes) -> float:
    """Seconds of 48 kHz stereo PCM that ffmpeg decodes from ``webm``."""
    done = ffmpeg(
        ["-hide_banner", "-loglevel", "error", "-i", "pipe:0",
         "-f", "s16le", "-ac", "2", "-ar", "48000", "pipe:1"],
        webm,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    return len(done.stdout) / (2 * 2 * 48000)


def split(data: bytes, pieces: Iterable[int]) -> list[Event]:
    """Feed ``data`` cut at the given offsets, then EOF; return all events."""
    splitter = ClusterSplitter()
    events: list[Event] = []
    previous = 0
    for cut in sorted(set(pieces)):
        events += splitter.feed(data[previous:cut])
        previous = cut
    events += splitter.feed(data[previous:])
    events += splitter.feed_eof()
    return events


def whole(data: bytes) -> list[Event]:
    return split(data, [])


def parts(events: list[Event]) -> tuple[InitSegment, list[Cluster]]:
    init, *clusters = events
    assert isinstance(init, InitSegment)
    assert all(isinstance(c, Cluster) for c in clusters)
    return init, clusters  # type: ignore[return-value]


def joined(events: list[Event]) -> bytes:
    return b"".join(event.data for event in events)


def vint(value: int, length: int | None = None) -> bytes:
    """Encode an EBML data size (RFC 8794 section 4)."""
    if length is None:
        length = 1
        while value >= (1 << (7 * length)) - 1:
            length += 1
    return ((1 << (7 * length)) | value).to_bytes(length, "big")


UNKNOWN_SIZE = b"\x01\xff\xff\xff\xff\xff\xff\xff"


def element(id_: int, payload: bytes = b"", *, size: bytes | None = None) -> bytes:
    return (
        id_.to_bytes((id_.bit_length() + 7) // 8, "big")
        + (vint(len(payload)) if size is None else size)
        + payload
    )


def uint(id_: int, value: int) -> bytes:
    return element(id_, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def simple_block(relative: int, frame: bytes, *, track: int = 1, flags: int = 0x80) -> bytes:
    return element(
        ebml.SIMPLE_BLOCK_ID, vint(track) + relative.to_bytes(2, "big", signed=True)
        + bytes([flags]) + frame,
    )  # fmt: skip


def webm(
    clusters: Sequence[bytes],
    *,
    codec: str = "A_OPUS",
    scale: int | None = None,
    sized: bool = False,
    trailer: bytes = b"",
) -> bytes:
    """A minimal WebM file: EBML header, Segment, Info, Tracks, then the
    given level-1 bytes; the Segment has an unknown size unless ``sized``."""
    header = element(ebml.EBML_ID, element(ebml.DOCTYPE_ID, b"webm"))
    info = element(ebml.INFO_ID, b"" if scale is None else uint(ebml.TIMECODE_SCALE_ID, scale))
    tracks = element(
        ebml.TRACKS_ID,
        element(
            ebml.TRACK_ENTRY_ID,
            uint(ebml.TRACK_NUMBER_ID, 1) + element(ebml.CODEC_ID_ID, codec.encode()),
        ),
    )
    body = info + tracks + b"".join(clusters) + trailer
    size = vint(len(body), 8) if sized else UNKNOWN_SIZE
    return header + element(ebml.SEGMENT_ID, body, size=size)


def cluster(timecode: int, *children: bytes, size: bytes | None = None) -> bytes:
    return element(
        ebml.CLUSTER_ID, uint(ebml.TIMECODE_ID, timecode) + b"".join(children), size=size
    )


# An Opus TOC of config 31 (CELT, 20 ms), one frame: what libopus emits at
# 96 kb/s.
OPUS_20MS = b"\xfc\x00\x00"


def mkvinfo_clusters(data: bytes, tmp_path: Path) -> list[tuple[int, int, float]]:
    """(offset, total size, start seconds) of each Cluster, per mkvinfo."""
    path = tmp_path / "mkvinfo-input.webm"
    path.write_bytes(data)
    done = subprocess.run(
        [MKVINFO, "-a", "-P", "-z", str(path)],
        capture_output=True,
        timeout=60,
        check=True,
        env={**os.environ, "LC_ALL": "C", "LANG": "C"},
    )
    text = done.stdout.decode()
    at = [(int(m[1]), int(m[2])) for m in re.finditer(r"\+ Cluster at (\d+) size (\d+)", text)]
    stamps = [
        int(h) * 3600 + int(m) * 60 + int(s) + int(ns) / 1e9
        for h, m, s, ns in re.findall(r"Cluster timestamp: (\d+):(\d+):(\d+)\.(\d{9})", text)
    ]
    assert len(at) == len(stamps)
    return [(offset, size, start) for (offset, size), start in zip(at, stamps, strict=True)]


def level1_boundaries(data: bytes, events: list[Event]) -> list[int]:
    offsets = [0]
    for event in events:
        offsets.append(offsets[-1] + len(event.data))
    return offsets


def child_boundaries(cluster_bytes: bytes, base: int) -> list[int]:
    """Offsets of every element boundary inside one Cluster."""
    out = []
    pos = 4 + (9 - cluster_bytes[4].bit_length())  # after ID and size
    out.append(base + pos)
    while pos < len(cluster_bytes):
        id_length = 9 - cluster_bytes[pos].bit_length()
        size_length = 9 - cluster_bytes[pos + id_length].bit_length()
        raw = int.from_bytes(cluster_bytes[pos + id_length : pos + id_length + size_length], "big")
        size = raw & ((1 << (7 * size_length)) - 1)
        out.append(base + pos + id_length)
        out.append(base + pos + id_length + size_length)
        pos += id_length + size_length + size
        out.append(base + pos)
    return out


def to_unknown_size(cluster_bytes: bytes) -> bytes:
    """The same Cluster with its size replaced by "unknown"."""
    size_length = 9 - cluster_bytes[4].bit_length()
    return cluster_bytes[:4] + UNKNOWN_SIZE + cluster_bytes[4 + size_length :]


# -- fixtures ------------------------------------------------------------


@dataclass(frozen=True)
class Live:
    source: bytes  # FLAC
    output: bytes  # what the transcoder's ffmpeg writes
    events: tuple[Event, ...]


@pytest.fixture(scope="session")
def live() -> Live:
    source = ffmpeg(
        ["-hide_banner", "-loglevel", "error", "-f", "lavfi",
         "-i", f"sine=frequency=440:duration={SOURCE_SECONDS:g}",
         "-ac", "2", "-ar", "48000", "-c:a", "flac", "-f", "flac", "pipe:1"]
    )  # fmt: skip
    assert source.returncode == 0, source.stderr.decode()
    output = ffmpeg(TRANSCODE_ARGV, source.stdout)
    assert output.returncode == 0, output.stderr.decode()
    return Live(source.stdout, output.stdout, tuple(whole(output.stdout)))


# -- API -----------------------------------------------------------------


def test_all() -> None:
    assert sorted(ebml.__all__) == ["Cluster", "ClusterSplitter", "EbmlError", "InitSegment"]
    for name in ebml.__all__:
        assert getattr(ebml, name).__module__ == "transcode.ebml"
    assert issubclass(EbmlError, ValueError)


def test_events_are_frozen() -> None:
    event = Cluster(0, 0.0, 2.0, b"x")
    with pytest.raises(AttributeError):
        event.index = 1  # type: ignore[misc]
    assert not hasattr(event, "__dict__")
    assert not hasattr(InitSegment(b""), "__dict__")


# -- real ffmpeg output --------------------------------------------------


def test_live_output_is_init_then_clusters(live: Live) -> None:
    init, clusters = parts(list(live.events))
    # No Cues in live mode: every byte belongs to the init or a chunk.
    assert joined(list(live.events)) == live.output
    assert init.data.startswith(b"\x1a\x45\xdf\xa3")
    assert b"A_OPUS" in init.data
    assert [c.index for c in clusters] == list(range(len(clusters)))
    assert len(clusters) == 7  # 2 s each, 13 s
    for c in clusters:
        assert c.data.startswith(b"\x1f\x43\xb6\x75")
    for a, b in itertools.pairwise(clusters):
        assert b.start > a.start
        assert b.start == pytest.approx(a.start + a.duration, abs=0.001)
    assert clusters[0].start == 0.0
    assert sum(c.duration for c in clusters) == pytest.approx(SOURCE_SECONDS, abs=0.3)
    assert all(1.9 <= c.duration <= 2.1 for c in clusters[:-1])


def test_live_output_decodes_to_source_duration(live: Live) -> None:
    init, clusters = parts(list(live.events))
    seconds = decoded_seconds(init.data + b"".join(c.data for c in clusters))
    assert seconds == pytest.approx(SOURCE_SECONDS, abs=0.3)
    assert sum(c.duration for c in clusters) == pytest.approx(seconds, abs=0.3)


def test_init_plus_any_single_cluster_decodes(live: Live) -> None:
    init, clusters = parts(list(live.events))
    procs = [
        subprocess.Popen(
            [
                ffmpeg_exe(),
                "-hide_banner",
                "-loglevel",
                "error",
                "-i",
                "pipe:0",
                "-f",
                "s16le",
                "-ac",
                "2",
                "-ar",
                "48000",
                "pipe:1",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        for _ in clusters
    ]
    for c, proc in zip(clusters, procs, strict=True):
        out, err = proc.communicate(init.data + c.data, timeout=60)
        assert proc.returncode == 0, err.decode()
        # The decoder drops the Opus pre-skip (6.5 ms) at each stream start.
        assert len(out) / (4 * 48000) == pytest.approx(c.duration, abs=0.03)


def test_live_output_matches_mkvinfo(live: Live, tmp_path: Path) -> None:
    check_against_mkvinfo(live.output, list(live.events), tmp_path)


def check_against_mkvinfo(data: bytes, events: list[Event], tmp_path: Path) -> None:
    # mkvtoolnix is installed on the machines these tests run on; a missing
    # mkvinfo is a broken environment, not a reason to skip.
    assert Path(MKVINFO).exists(), "mkvinfo (mkvtoolnix) is required"
    init, clusters = parts(events)
    expected = mkvinfo_clusters(data, tmp_path)
    assert len(clusters) == len(expected)
    offset = len(init.data)
    for c, (at, size, start) in zip(clusters, expected, strict=True):
        assert (offset, len(c.data)) == (at, size)
        assert c.data == data[at : at + size]
        assert c.start == pytest.approx(start, abs=1e-6)
        offset += len(c.data)


@given(
    cuts=st.lists(st.integers(min_value=0, max_value=200_000), max_size=300),
    bytewise_from=st.integers(min_value=0, max_value=200_000),
    bytewise_length=st.integers(min_value=0, max_value=3000),
)
@HYPOTHESIS
def test_random_splits_give_the_same_events(
    live: Live, cuts: list[int], bytewise_from: int, bytewise_length: int
) -> None:
    data = live.output
    size = len(data)
    # A run of 1-byte pieces somewhere, plus random cuts elsewhere.
    pieces = [c % (size + 1) for c in cuts]
    start = bytewise_from % (size + 1)
    pieces += range(start, min(size, start + bytewise_length))
    events = split(data, pieces)
    assert events == list(live.events)
    assert joined(events) == data


def test_one_byte_pieces(live: Live) -> None:
    assert split(live.output, range(len(live.output))) == list(live.events)


def test_every_two_piece_split_near_boundaries(live: Live) -> None:
    data = live.output
    events = list(live.events)
    offsets = set(range(2048))
    for boundary in level1_boundaries(data, events):
        offsets.update(range(boundary - 16, boundary + 17))
    init, clusters = parts(events)
    # Every element boundary inside the first and the last Cluster.
    for c, base in (
        (clusters[0], len(init.data)),
        (clusters[-1], len(data) - len(clusters[-1].data)),
    ):
        for boundary in child_boundaries(c.data, base):
            offsets.update(range(boundary - 2, boundary + 3))
    offsets.update(range(0, len(data), 509))
    offsets = {o for o in offsets if 0 <= o <= len(data)}
    for offset in sorted(offsets):
        assert split(data, [offset]) == events, offset


def test_every_two_piece_split_of_golden_file() -> None:
    data = golden("opus-live.webm")
    events = whole(data)
    for offset in range(len(data) + 1):
        assert split(data, [offset]) == events, offset


def test_events_come_as_soon_as_complete(live: Live) -> None:
    init, clusters = parts(list(live.events))
    data = live.output
    splitter = ClusterSplitter()
    # The init is out once the first Cluster's ID is in.
    assert splitter.feed(data[: len(init.data) + 3]) == []
    assert splitter.feed(data[len(init.data) + 3 : len(init.data) + 4]) == [init]
    # Each Cluster is out with its own last byte, not the next one's first.
    offset = len(init.data) + 4
    for c in clusters:
        end = len(init.data) + sum(len(x.data) for x in clusters[: c.index + 1])
        assert splitter.feed(data[offset : end - 1]) == []
        assert splitter.feed(data[end - 1 : end]) == [c]
        offset = end
    assert splitter.feed_eof() == []


# -- golden files --------------------------------------------------------

# (start, duration, size) of each Cluster, checked against mkvinfo.
GOLDEN = {
    "opus-live.webm": (
        391,
        [(0.0, 1.981, 4399), (1.981, 2.0, 4506), (3.981, 0.5265, 1309)],
        0,
    ),
    "opus-mkvmerge.webm": (
        5370,
        [
            (0.0, 0.701001, 1567),
            (0.700997, 0.700001, 1317),
            (1.400994, 0.700001, 1358),
            (2.100991, 0.700001, 1403),
            (2.801008, 0.700001, 1450),
            (3.501005, 0.700001, 1482),
            (4.201002, 0.306501, 744),
        ],
        179 + 43,  # Cues and Tags after the Clusters
    ),
    "flac-live.mka": (
        420,
        [(0.0, 0.936, 3694), (0.936, 0.936, 3678), (1.872, 0.936, 3680), (2.808, 0.216, 766)],
        0,
    ),
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_file(name: str, tmp_path: Path) -> None:
    data = golden(name)
    init_size, expected, trailer = GOLDEN[name]
    events = whole(data)
    init, clusters = parts(events)
    assert len(init.data) == init_size
    got = [(round(c.start, 6), round(c.duration, 6), len(c.data)) for c in clusters]
    assert got == expected
    assert joined(events) == data[: len(data) - trailer]
    check_against_mkvinfo(data, events, tmp_path)


@given(cuts=st.lists(st.integers(min_value=0, max_value=20_000), max_size=100))
@HYPOTHESIS
def test_golden_random_splits(cuts: list[int]) -> None:
    for name in GOLDEN:
        data = golden(name)
        assert split(data, [c % (len(data) + 1) for c in cuts]) == whole(data)


def test_golden_mkvmerge_block_duration_and_lacing() -> None:
    # mkvmerge laces 8 Opus packets per SimpleBlock and ends with a
    # BlockGroup carrying a BlockDuration: consecutive Clusters still meet.
    _, clusters = parts(whole(golden("opus-mkvmerge.webm")))
    for a, b in itertools.pairwise(clusters):
        assert b.start == pytest.approx(a.start + a.duration, abs=0.001)


# -- unknown sizes -------------------------------------------------------


def test_unknown_size_clusters(live: Live) -> None:
    init, clusters = parts(list(live.events))
    rewritten = [to_unknown_size(c.data) for c in clusters]
    data = init.data + b"".join(rewritten)
    events = whole(data)
    new_init, new_clusters = parts(events)
    assert new_init == init
    assert [c.data for c in new_clusters] == rewritten
    assert [(c.index, c.start, c.duration) for c in new_clusters] == [
        (c.index, c.start, c.duration) for c in clusters
    ]
    # Each one is out when the next Cluster's ID arrives; the last at EOF.
    starts = [len(init.data)]
    for c in rewritten:
        starts.append(starts[-1] + len(c))
    splitter = ClusterSplitter()
    assert splitter.feed(data[: starts[1]]) == [new_init]
    for i in range(1, len(rewritten)):
        assert splitter.feed(data[starts[i] : starts[i] + 3]) == []
        assert splitter.feed(data[starts[i] + 3 : starts[i] + 4]) == [new_clusters[i - 1]]
        assert splitter.feed(data[starts[i] + 4 : starts[i + 1]]) == []
    assert splitter.feed_eof() == [new_clusters[-1]]


@given(cuts=st.lists(st.integers(min_value=0, max_value=200_000), max_size=200))
@HYPOTHESIS
def test_unknown_size_clusters_random_splits(live: Live, cuts: list[int]) -> None:
    init, clusters = parts(list(live.events))
    data = init.data + b"".join(to_unknown_size(c.data) for c in clusters[:3])
    assert split(data, [c % (len(data) + 1) for c in cuts]) == whole(data)


def test_unknown_size_cluster_ends_at_cues_which_are_skipped() -> None:
    cues = element(ebml.CUES_ID, b"\xbb\x80")
    first = cluster(0, simple_block(0, OPUS_20MS), simple_block(20, OPUS_20MS), size=b"\xff")
    second = cluster(40, simple_block(0, OPUS_20MS))
    data = webm([first, cues, second], trailer=cues)
    _, clusters = parts(whole(data))
    assert [c.data for c in clusters] == [first, second]
    assert [c.start for c in clusters] == [0.0, 0.04]
    assert [c.duration for c in clusters] == pytest.approx([0.04, 0.02])


def test_known_size_segment() -> None:
    first = cluster(0, simple_block(0, OPUS_20MS))
    cues = element(ebml.CUES_ID, b"\xbb\x80")
    data = webm([first], sized=True, trailer=cues)
    _, clusters = parts(whole(data))
    assert [c.data for c in clusters] == [first]
    # An unknown-size Cluster also ends where its Segment does.
    unsized = cluster(0, simple_block(0, OPUS_20MS), size=b"\xff")
    assert parts(whole(webm([unsized], sized=True)))[1][0].data == unsized
    # And nothing may follow a sized Segment.
    with pytest.raises(EbmlError):
        whole(data + b"\x1a")
    # A sized Segment cut short at a Cluster boundary is still truncated.
    with pytest.raises(EbmlError, match="end of the Segment"):
        whole(data[: len(data) - len(cues)])


# -- timing --------------------------------------------------------------


@pytest.mark.parametrize(
    ("toc", "extra", "seconds"),
    [
        (0 << 3, b"", 0.010),  # SILK NB 10 ms
        (3 << 3, b"", 0.060),  # SILK NB 60 ms
        (9 << 3, b"", 0.020),  # SILK WB 20 ms
        (11 << 3 | 1, b"", 0.120),  # SILK WB 60 ms, two frames
        (12 << 3, b"", 0.010),  # hybrid SWB 10 ms
        (15 << 3 | 2, b"", 0.040),  # hybrid FB 20 ms, two frames
        (16 << 3, b"", 0.0025),  # CELT NB 2.5 ms
        (29 << 3, b"", 0.005),  # CELT FB 5 ms
        (31 << 3, b"", 0.020),  # CELT FB 20 ms: libopus's default
        (31 << 3 | 3, bytes([0x83]), 0.060),  # code 3, three frames (VBR bit set)
        (18 << 3 | 3, bytes([48]), 0.480),  # 48 x 10 ms, the most allowed
    ],
)
def test_opus_duration(toc: int, extra: bytes, seconds: float) -> None:
    assert ebml._opus_duration(memoryview(bytes([toc]) + extra + b"\0")) == pytest.approx(seconds)


def test_opus_duration_of_short_packets() -> None:
    assert ebml._opus_duration(memoryview(b"")) is None
    assert ebml._opus_duration(memoryview(bytes([31 << 3 | 3]))) is None


def opus_frame(config: int) -> bytes:
    return bytes([config << 3]) + b"\x11\x22"


@pytest.mark.parametrize("lacing", ["xiph", "fixed", "ebml"])
def test_laced_opus_block_duration(lacing: str) -> None:
    # Three 20 ms packets laced in one block, all the same size so that the
    # fixed lacing can carry them too; the last block sets the end.
    frames = [opus_frame(31) + b"\x00" * 300] * 3
    if lacing == "xiph":
        flags, lace = 0x82, bytes([2]) + bytes([255, 48]) * 2
    elif lacing == "fixed":
        flags, lace = 0x84, bytes([2])
    else:
        # First size as a VINT, then a signed difference of 0 (range-shifted).
        flags, lace = 0x86, bytes([2]) + vint(303, 2) + bytes([0x80 | 63])
    block = simple_block(100, lace + b"".join(frames), flags=flags)
    data = webm([cluster(1000, simple_block(0, OPUS_20MS), block)])
    _, clusters = parts(whole(data))
    assert clusters[0].start == 1.0
    assert clusters[0].duration == pytest.approx(0.100 + 0.060)


def test_laced_frames_of_different_sizes() -> None:
    small, large = opus_frame(16), opus_frame(19) + b"\x00" * 400  # 2.5 ms, 20 ms
    body = memoryview(small + large + small)
    xiph = memoryview(bytes([len(small), 255, len(large) - 255]) + bytes(body))
    assert [bytes(f) for f in ebml._lace_frames(xiph, 3, 1)] == [small, large, small]
    diff = len(large) - len(small)
    ebml_lace = vint(len(small)) + vint(diff + 8191, 2)  # signed, 2 bytes
    frames = ebml._lace_frames(memoryview(ebml_lace + bytes(body)), 3, 3)
    assert [bytes(f) for f in frames] == [small, large, small]
    with pytest.raises(EbmlError):
        ebml._lace_frames(memoryview(bytes([255, 255, 255, 10]) + b"\x00" * 10), 3, 1)
    with pytest.raises(EbmlError):
        ebml._lace_frames(memoryview(b"\x00" * 10), 3, 2)


def test_block_group_with_block_duration_and_discard_padding() -> None:
    group = element(
        ebml.BLOCK_GROUP_ID,
        element(ebml.BLOCK_ID, vint(1) + (40).to_bytes(2, "big") + b"\x00" + OPUS_20MS)
        + uint(ebml.BLOCK_DURATION_ID, 7),
    )
    padded = element(
        ebml.BLOCK_GROUP_ID,
        element(ebml.BLOCK_ID, vint(1) + (40).to_bytes(2, "big") + b"\x00" + OPUS_20MS)
        # A signed integer: 4 bytes, since 3 would read back as negative.
        + element(ebml.DISCARD_PADDING_ID, (13_500_000).to_bytes(4, "big", signed=True)),
    )
    first = simple_block(0, OPUS_20MS)
    _, clusters = parts(whole(webm([cluster(0, first, group), cluster(100, first, padded)])))
    assert clusters[0].duration == pytest.approx(0.047)
    assert clusters[1].duration == pytest.approx(0.0465)


def test_timecode_scale() -> None:
    # 1 tick = 0.5 ms: a Timecode of 4000 is 2 s; a BlockDuration of 10 is
    # 5 ms.
    group = element(
        ebml.BLOCK_GROUP_ID,
        element(ebml.BLOCK_ID, vint(1) + (40).to_bytes(2, "big") + b"\x00" + OPUS_20MS)
        + uint(ebml.BLOCK_DURATION_ID, 10),
    )
    _, clusters = parts(
        whole(webm([cluster(4000, simple_block(0, OPUS_20MS), group)], scale=500_000))
    )
    assert clusters[0].start == 2.0
    assert clusters[0].duration == pytest.approx(0.025)


def test_other_codecs_use_the_median_gap() -> None:
    blocks = [simple_block(t, b"frame") for t in (0, 20, 40, 70)]  # gaps 20 20 30
    data = webm([cluster(0, *blocks), cluster(90, simple_block(0, b"x"))], codec="A_VORBIS")
    _, clusters = parts(whole(data))
    assert clusters[0].duration == pytest.approx(0.090)
    # A lone block borrows the step of the Cluster before.
    assert clusters[1].duration == pytest.approx(0.020)


def test_empty_cluster_and_negative_relative_timecode() -> None:
    data = webm([cluster(500), cluster(1000, simple_block(-100, OPUS_20MS))])
    _, clusters = parts(whole(data))
    assert (clusters[0].start, clusters[0].duration) == (0.5, 0.0)
    # A block before its Cluster's Timecode cannot make a negative length.
    assert clusters[1].duration == 0.0


# -- errors --------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello world, this is not webm",
        b"\x00" * 64,
        b"\xff" * 64,
        b"RIFF\x24\x00\x00\x00WAVEfmt ",
        b"\x1a\x45\xdf\xa3",  # an EBML ID and nothing else
        element(ebml.EBML_ID, element(ebml.DOCTYPE_ID, b"mp4")),  # not webm
        element(ebml.EBML_ID, element(ebml.DOCTYPE_ID, b"webm")),  # no Segment
        element(ebml.EBML_ID, element(ebml.DOCTYPE_ID, b"webm")) + element(ebml.INFO_ID),
    ],
)
def test_garbage_is_an_ebml_error(data: bytes) -> None:
    with pytest.raises(EbmlError):
        whole(data)


def test_init_without_clusters() -> None:
    with pytest.raises(EbmlError, match="no Cluster"):
        whole(webm([]))


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_truncated_input(name: str) -> None:
    data = golden(name)
    events = whole(data)
    boundaries = set(level1_boundaries(data, events))
    for cut in range(1, len(data), 97):
        if cut in boundaries:
            continue
        splitter = ClusterSplitter()
        got = splitter.feed(data[:cut])
        assert got == events[: len(got)]
        with pytest.raises(EbmlError):
            splitter.feed_eof()


def test_truncated_live_output_at_a_cluster_boundary_is_fine(live: Live) -> None:
    # The Segment has an unknown size, so a cut between Clusters is a valid
    # (shorter) stream.
    events = list(live.events)
    end = len(events[0].data) + len(events[1].data)
    assert whole(live.output[:end]) == events[:2]


def test_overlong_cluster() -> None:
    big = cluster(0, simple_block(0, OPUS_20MS + b"\x00" * 5000))
    splitter = ClusterSplitter(max_cluster_size=4096)
    data = webm([big])
    # Refused from its header, before its payload is waited for (the init
    # completed in the same call comes out first, the error next).
    header_end = data.index(b"\x1f\x43\xb6\x75") + 6
    assert [type(e) for e in splitter.feed(data[:header_end])] == [InitSegment]
    with pytest.raises(EbmlError, match="limit"):
        splitter.feed(b"")
    # 17 MiB declared with the default limit.
    huge = element(ebml.CLUSTER_ID, b"", size=vint(17 * 1024 * 1024, 4))
    with pytest.raises(EbmlError, match="limit"):
        whole(webm([huge]))


def test_overlong_unknown_size_cluster() -> None:
    blocks = [simple_block(t, OPUS_20MS + b"\x00" * 1000) for t in range(0, 200, 20)]
    splitter = ClusterSplitter(max_cluster_size=4096)
    data = webm([cluster(0, *blocks, size=b"\xff")])
    assert [type(e) for e in splitter.feed(data)] == [InitSegment]
    with pytest.raises(EbmlError, match="limit"):
        splitter.feed_eof()


def test_overlong_header_element() -> None:
    tags = element(ebml.TAGS_ID, b"", size=vint(2 * 1024 * 1024, 4))
    header = element(ebml.EBML_ID, element(ebml.DOCTYPE_ID, b"webm"))
    data = header + element(ebml.SEGMENT_ID, tags, size=UNKNOWN_SIZE)
    with pytest.raises(EbmlError, match="limit"):
        ClusterSplitter().feed(data)


def test_bad_vints() -> None:
    header = element(ebml.EBML_ID, element(ebml.DOCTYPE_ID, b"webm"))
    segment = b"\x18\x53\x80\x67" + UNKNOWN_SIZE
    for bad in (b"\x08\x00\x00\x00\x01\x80", b"\x1f\x43\xb6\x75\x00\x01"):
        with pytest.raises(EbmlError):
            whole(header + segment + bad)


def test_errors_are_sticky_and_do_not_eat_events(live: Live) -> None:
    events = list(live.events)
    splitter = ClusterSplitter()
    # Events completed before the error are returned, the error comes next.
    assert splitter.feed(live.output + b"\x00garbage") == events
    with pytest.raises(EbmlError):
        splitter.feed_eof()
    with pytest.raises(EbmlError):
        splitter.feed(b"more")


def test_feed_after_eof() -> None:
    splitter = ClusterSplitter()
    splitter.feed(golden("opus-live.webm"))
    splitter.feed_eof()
    with pytest.raises(EbmlError):
        splitter.feed(b"\x1f")


@given(data=st.binary(max_size=2000), cuts=st.lists(st.integers(0, 2000), max_size=20))
@HYPOTHESIS
def test_random_bytes_raise_only_ebml_error(data: bytes, cuts: list[int]) -> None:
    with pytest.raises(EbmlError):
        split(data, cuts)


@given(
    name=st.sampled_from(sorted(GOLDEN)),
    flips=st.lists(st.tuples(st.integers(0, 20_000), st.integers(1, 255)), min_size=1, max_size=8),
    cut=st.integers(0, 20_000),
)
@HYPOTHESIS
def test_corrupted_golden_files_raise_only_ebml_error(
    name: str, flips: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(golden(name))
    for position, mask in flips:
        data[position % len(data)] ^= mask
    try:
        events = split(bytes(data), [cut % (len(data) + 1)])
    except EbmlError:
        return
    # What passes must still be well-formed: init first, then Clusters.
    assert isinstance(events[0], InitSegment)
    assert all(isinstance(e, Cluster) for e in events[1:])
