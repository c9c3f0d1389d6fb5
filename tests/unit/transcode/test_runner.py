"""The ffmpeg runner: pipes only, no deadlock, and no process outlives its generator."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.process import alive, wait_dead
from transcode.ebml import Cluster, InitSegment
from transcode.ffmpeg import build_argv, find_ffmpeg, make_rendition
from transcode.runner import TranscodeFailed, TranscodeTimeout, transcode


@pytest.fixture(scope="module")
def rendition():  # type: ignore[no-untyped-def]
    return make_rendition(find_ffmpeg(""), bitrate=96000, chunk_seconds=2.0)


async def file_source(path: Path, piece: int = 8192, hold: asyncio.Event | None = None) -> AsyncIterator[bytes]:
    data = path.read_bytes()
    for i in range(0, len(data), piece):
        if hold is not None and i > len(data) // 2:
            await hold.wait()
        yield data[i : i + piece]


@pytest.mark.parametrize("extras", [False, True], ids=["plain", "extras"])
def test_argv_reads_and_writes_pipes_only(rendition, extras: bool) -> None:  # type: ignore[no-untyped-def]
    # The gateway's rendition has extras (issue 13): the WebM output, which
    # ends on pipe:1, is then followed by the PCM and tag outputs, also pipes.
    argv = list(make_rendition(find_ffmpeg(""), bitrate=96000, chunk_seconds=2.0, extras=extras).argv)
    assert argv[argv.index("-protocol_whitelist") + 1] == "pipe"
    webm, more = argv[: len(rendition.argv)], argv[len(rendition.argv) :]
    assert webm == list(rendition.argv)
    assert webm[webm.index("-i") + 1] == "pipe:0" and webm[-1] == "pipe:1"
    # Every further output is the word after "-f <format>", and a pipe.
    targets = [more[i + 2] for i, a in enumerate(more) if a == "-f"]
    assert targets == (["pipe:3", "pipe:4"] if extras else []) and more[-1:] == targets[-1:]
    assert "+bitexact" in argv and "libopus" in argv
    assert not any("://" in a for a in argv)
    assert argv[argv.index("-cluster_time_limit") + 1] == "2000"


def test_rendition_id_depends_on_what_shapes_the_bytes(rendition) -> None:  # type: ignore[no-untyped-def]
    binary = find_ffmpeg("")
    assert make_rendition(binary, bitrate=96000, chunk_seconds=2.0).id == rendition.id
    assert make_rendition(binary, bitrate=64000, chunk_seconds=2.0).id != rendition.id
    assert make_rendition(binary, bitrate=96000, chunk_seconds=4.0).id != rendition.id
    assert build_argv(binary, bitrate=64000, chunk_seconds=2.0) != list(rendition.argv)


async def test_transcode_yields_init_then_ordered_clusters(rendition, audio_dir: Path) -> None:  # type: ignore[no-untyped-def]
    events = [e async for e in transcode(rendition, file_source(audio_dir / "short.flac"), timeout=60)]
    assert isinstance(events[0], InitSegment)
    clusters = [e for e in events[1:] if isinstance(e, Cluster)]
    assert len(clusters) == len(events) - 1 >= 3
    assert [c.index for c in clusters] == list(range(len(clusters)))


async def test_bad_input_fails_with_stderr(rendition) -> None:  # type: ignore[no-untyped-def]
    async def garbage() -> AsyncIterator[bytes]:
        for _ in range(50):
            yield os.urandom(4096)

    with pytest.raises(TranscodeFailed) as info:
        async for _ in transcode(rendition, garbage(), timeout=30):
            pass
    assert info.value.stderr


async def test_source_error_wins_and_kills_ffmpeg(rendition, audio_dir: Path) -> None:  # type: ignore[no-untyped-def]
    pids: list[int] = []

    async def failing() -> AsyncIterator[bytes]:
        async for piece in file_source(audio_dir / "tone_a.flac"):
            yield piece
        raise ConnectionAbortedError("upstream went away")

    with pytest.raises(ConnectionAbortedError):
        async for _ in transcode(rendition, failing(), timeout=30, on_spawn=pids.append):
            pass
    assert await wait_dead(pids[0])


async def test_aclose_midway_kills_the_process_group(rendition, audio_dir: Path) -> None:  # type: ignore[no-untyped-def]
    pids: list[int] = []
    hold = asyncio.Event()  # the source stalls halfway: ffmpeg stays alive
    gen = transcode(rendition, file_source(audio_dir / "tone_a.flac", hold=hold), timeout=60, on_spawn=pids.append)
    first = await anext(gen)
    assert isinstance(first, InitSegment)
    assert alive(pids[0])
    await gen.aclose()
    assert await wait_dead(pids[0])


async def test_cancelling_the_reader_kills_ffmpeg(rendition, audio_dir: Path) -> None:  # type: ignore[no-untyped-def]
    pids: list[int] = []
    hold = asyncio.Event()

    async def consume() -> None:
        async for _ in transcode(rendition, file_source(audio_dir / "tone_a.flac", hold=hold), timeout=60,
                                 on_spawn=pids.append):
            pass

    task = asyncio.create_task(consume())
    while not pids:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await wait_dead(pids[0])


async def test_wall_clock_limit(rendition, audio_dir: Path) -> None:  # type: ignore[no-untyped-def]
    pids: list[int] = []
    hold = asyncio.Event()  # never set: the source stalls forever
    with pytest.raises(TranscodeTimeout):
        async for _ in transcode(rendition, file_source(audio_dir / "tone_a.flac", hold=hold), timeout=1.0,
                                 on_spawn=pids.append):
            pass
    assert await wait_dead(pids[0])
