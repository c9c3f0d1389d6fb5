"""The ffmpeg process as an async generator of splitter events.

The runner only pumps pipes: one task writes the source into ffmpeg's stdin
while this generator reads stdout through the EBML splitter, so neither pipe
can fill up and deadlock the other. stderr is kept, bounded, for the error
message. ffmpeg runs in its own process group, killed on every way out of the
generator: normal end, error, timeout, ``aclose()`` and task cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncGenerator, AsyncIterator

from .ebml import Cluster, ClusterSplitter, EbmlError, InitSegment
from .ffmpeg import Rendition

__all__ = ["TranscodeFailed", "TranscodeTimeout", "transcode", "READ_SIZE"]

READ_SIZE = 64 * 1024
STDERR_LIMIT = 8 * 1024


class TranscodeFailed(Exception):
    """ffmpeg exited non-zero or wrote output the splitter could not parse."""

    def __init__(self, message: str, stderr: str = "") -> None:
        super().__init__(message)
        self.stderr = stderr


class TranscodeTimeout(TranscodeFailed):
    pass


class _SourceFailed(Exception):
    """Carries the source's own exception out of the feeder task."""


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


async def _feed(proc: asyncio.subprocess.Process, source: AsyncIterator[bytes]) -> None:
    assert proc.stdin is not None
    try:
        async for piece in source:
            proc.stdin.write(piece)
            await proc.stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        # ffmpeg stopped reading (bad input): its exit status tells why.
        return
    except Exception:
        _kill_group(proc)
        raise
    finally:
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()
        with contextlib.suppress(Exception):
            proc.stdin.close()


async def _read_stderr(stream: asyncio.StreamReader, keep: bytearray) -> None:
    while True:
        piece = await stream.read(4096)
        if not piece:
            return
        keep.extend(piece)
        if len(keep) > STDERR_LIMIT:
            del keep[: len(keep) - STDERR_LIMIT]


async def transcode(
    rendition: Rendition,
    source: AsyncIterator[bytes],
    *,
    timeout: float,
    on_spawn: object = None,
) -> AsyncGenerator[InitSegment | Cluster, None]:
    """Run ffmpeg over ``source``; yield the init segment, then each cluster.

    A caller that stops early should ``aclose()`` it (``contextlib.aclosing``):
    that is what kills ffmpeg at once rather than whenever the generator is
    collected.

    Raises the source's own exception if reading the source failed,
    ``TranscodeTimeout`` after ``timeout`` seconds of wall time, and
    ``TranscodeFailed`` if ffmpeg exits non-zero or its output is not WebM.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    proc = await asyncio.create_subprocess_exec(
        *rendition.argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # own process group: killpg reaches any children
    )
    if callable(on_spawn):
        on_spawn(proc.pid)
    assert proc.stdout is not None and proc.stderr is not None
    stderr = bytearray()
    feeder = asyncio.create_task(_feed(proc, source))
    stderr_task = asyncio.create_task(_read_stderr(proc.stderr, stderr))
    splitter = ClusterSplitter()

    def stderr_text() -> str:
        return stderr.decode("utf-8", "replace").strip()[-2000:]

    try:
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TranscodeTimeout(f"transcode exceeded {timeout:.0f} s")
            try:
                data = await asyncio.wait_for(proc.stdout.read(READ_SIZE), remaining)
            except TimeoutError:
                raise TranscodeTimeout(f"transcode exceeded {timeout:.0f} s") from None
            if not data:
                break
            try:
                events = splitter.feed(data)
            except EbmlError as exc:
                raise TranscodeFailed(f"ffmpeg wrote unparsable WebM: {exc}") from None
            for event in events:
                yield event
        try:
            returncode = await asyncio.wait_for(proc.wait(), max(0.1, deadline - loop.time()))
        except TimeoutError:
            raise TranscodeTimeout(f"transcode exceeded {timeout:.0f} s") from None
        # The source's failure explains ffmpeg's, so it wins. After a clean
        # exit the feeder has finished (ffmpeg saw EOF); after a failure it
        # may still be waiting on the source, so wait only briefly.
        wait = max(0.1, deadline - loop.time()) if returncode == 0 else 1.0
        await asyncio.wait({feeder}, timeout=wait)
        if feeder.done() and not feeder.cancelled() and feeder.exception() is not None:
            raise feeder.exception()  # type: ignore[misc]
        await asyncio.wait({stderr_task}, timeout=1.0)
        if returncode != 0:
            raise TranscodeFailed(f"ffmpeg exited with status {returncode}", stderr_text())
        try:
            events = splitter.feed_eof()
        except EbmlError as exc:
            raise TranscodeFailed(f"ffmpeg output ended mid-element: {exc}", stderr_text()) from None
        for event in events:
            yield event
    finally:
        _kill_group(proc)
        feeder.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(proc.wait(), 5.0)
        # asyncio closes a subprocess transport only once every pipe has
        # closed: drain stdout and stderr to EOF (the process is dead, so
        # this is quick), or the transport leaks as a ResourceWarning.
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(proc.stdout.read(), 5.0)
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(stderr_task, 5.0)
        stderr_task.cancel()
        for task in (feeder, stderr_task):
            with contextlib.suppress(BaseException):
                await task
