"""Give ffmpeg an input it can play when the container needs seeking.

Theory of operation
-------------------

``prepare_input(body, ...)`` reads the first bytes of an upstream's body
(``probe.HEAD_BYTES``), asks ``probe.probe_container`` about them, and picks
one of three ways to hand the track to ``runner.transcode``:

``pipe``
    Not ISO-BMFF, or ``moov`` first (faststart), or undecided: the head and
    the rest of the body go to ffmpeg's stdin as today. Nothing waits for
    more than the head, so a faststart file's first chunk comes as fast as
    before.
``range``
    ``moov`` after ``mdat`` and the caller gave ``fetch_tail`` (the upstream
    answers Range requests): the tail from the end of ``mdat`` is fetched
    (bounded by ``max_moov_bytes``), its ``moov`` patched by
    ``probe.faststart_moov`` and streamed first: ``ftyp``, ``moov``, then the
    body up to where ``moov`` was (the body's own moov is never read). One
    small extra request; the first chunk comes about as fast as faststart.
``spool``
    ``moov`` after ``mdat`` without ranges (or the tail was unusable): the
    body is written to a private temporary file, bounded by ``max_bytes``
    (``SpoolTooLarge`` past it), and ffmpeg reads that file, its demuxer
    pinned to ``mov`` (``input_format``) so that no other file is opened. The
    file and its directory are deleted when the ``async with`` block ends,
    however it ends.

Local files are seekable already: give ``runner.transcode`` their path
(``input_path=``), or ``spool``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from .probe import HEAD_BYTES, ContainerProbe, ProbeError, faststart_moov, find_box, iter_boxes, probe_container

__all__ = [
    "PreparedInput", "Spooled", "SpoolTooLarge", "FetchTail", "prepare_input", "prepare_file", "spool",
    "MAX_MOOV_BYTES",
]

# The tail fetched for a moov: a moov is ~1-2 % of an AAC file (a 3-hour
# file's is a few MB); more than this and spooling is the better answer.
MAX_MOOV_BYTES = 16 * 1024 * 1024
_WRITE_BATCH = 1024 * 1024

# fetch_tail(offset) -> the upstream's bytes from ``offset`` to its end (a Range request).
FetchTail = Callable[[int], Awaitable[bytes]]


class SpoolTooLarge(Exception):
    """The body is longer than the spool's ``max_bytes``."""


@dataclass(frozen=True, slots=True)
class Spooled:
    path: str
    size: int


@dataclass(frozen=True, slots=True)
class PreparedInput:
    """How ffmpeg gets the track: ``stream`` (to stdin) or ``path`` (+ ``input_format``)."""

    # "file": a library file ffmpeg reads itself (see ``prepare_file``).
    mode: Literal["pipe", "range", "spool", "file"]
    probe: ContainerProbe
    stream: AsyncIterator[bytes] | None = None
    path: str | None = None
    input_format: str | None = None
    size: int | None = None  # bytes spooled


async def _aclose(it: AsyncIterator[bytes]) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()


@contextlib.asynccontextmanager
async def spool(
    chunks: AsyncIterator[bytes],
    *,
    max_bytes: int,
    prefix: bytes = b"",
    directory: str | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> AsyncIterator[Spooled]:
    """Write ``prefix`` + ``chunks`` to a private temporary file; yield it; delete it.

    The file lives in a fresh ``0700`` directory (``tempfile.mkdtemp``) under
    ``directory`` (default: the system's temp dir) and is removed with it when
    the block ends, on success, error or cancellation. Raises ``SpoolTooLarge``
    once more than ``max_bytes`` arrive (nothing more is read), and whatever
    ``chunks`` raises. ``on_bytes(n)`` counts every piece written.
    """
    folder = tempfile.mkdtemp(prefix="ztream-spool-", dir=directory)
    path = os.path.join(folder, "input")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        size = 0
        with os.fdopen(fd, "wb") as out:
            pending = bytearray(prefix)
            size = len(prefix)
            if size > max_bytes:
                raise SpoolTooLarge(f"over {max_bytes} bytes")
            try:
                async for piece in chunks:
                    size += len(piece)
                    if size > max_bytes:
                        raise SpoolTooLarge(f"over {max_bytes} bytes")
                    pending += piece
                    if len(pending) >= _WRITE_BATCH:
                        # A thread, so a slow disk does not stall the event loop.
                        await asyncio.to_thread(out.write, bytes(pending))
                        if on_bytes is not None:
                            on_bytes(len(pending))
                        pending.clear()
            finally:
                await _aclose(chunks)
            if pending:
                await asyncio.to_thread(out.write, bytes(pending))
                if on_bytes is not None:
                    on_bytes(len(pending))
        yield Spooled(path=path, size=size)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def _read_head(body: AsyncIterator[bytes], want: int) -> tuple[bytes, bool]:
    """Up to ``want`` bytes from ``body``: fewer at its end, and fewer once the
    probe has decided (an MP3's first bytes settle it), so that ffmpeg starts
    on the first piece of a slow upstream, not after ``want`` bytes; (bytes, ended)."""
    buf = bytearray()
    while len(buf) < want:
        try:
            piece = await anext(body)
        except StopAsyncIteration:
            return bytes(buf), True
        buf += piece
        probe = probe_container(bytes(buf))
        if probe.decided and not probe.isobmff:
            break
    return bytes(buf), False


async def _chain(head: bytes, body: AsyncIterator[bytes], *, limit: int | None = None) -> AsyncIterator[bytes]:
    """``head`` then ``body``, cut at ``limit`` total bytes (then the body is closed)."""
    sent = 0
    try:
        if head:
            piece = head if limit is None else head[:limit]
            sent += len(piece)
            yield piece
        async for piece in body:
            if limit is not None:
                if sent >= limit:
                    return
                piece = piece[: limit - sent]
            sent += len(piece)
            yield piece
    finally:
        await _aclose(body)


async def _ranged_moov(probe: ContainerProbe, fetch_tail: FetchTail, max_moov_bytes: int) -> bytes:
    """The moov from the upstream's tail, patched to sit after ftyp; raises on anything odd."""
    assert probe.moov_offset is not None
    tail = await fetch_tail(probe.moov_offset)
    if len(tail) > max_moov_bytes:
        raise ProbeError("the tail is larger than max_moov_bytes")
    # The tail must be boxes: a server that ignored Range sent the file from 0 (ftyp).
    kinds = [box.type for box in iter_boxes(tail)]
    if b"ftyp" in kinds[:1] or b"moov" not in kinds:
        raise ProbeError("no moov box at the end of mdat")
    found = find_box(tail, b"moov")
    if found is None:
        raise ProbeError("the moov box is truncated")
    moov = tail[found[0] : found[1]]
    return faststart_moov(moov, len(moov))


@contextlib.asynccontextmanager
async def prepare_input(
    body: AsyncIterator[bytes],
    *,
    max_bytes: int,
    fetch_tail: FetchTail | None = None,
    spool_dir: str | None = None,
    on_spool: Callable[[int], None] | None = None,
    max_moov_bytes: int = MAX_MOOV_BYTES,
    head_bytes: int = HEAD_BYTES,
) -> AsyncIterator[PreparedInput]:
    """Decide pipe / range / spool for ``body`` (see the module doc) and yield the input.

    ``fetch_tail`` is given only for a Range-capable upstream. ``on_spool(n)``
    counts spooled bytes. Raises ``SpoolTooLarge`` (map it to the contract's
    ``upstream_too_large``) and whatever ``body`` or ``fetch_tail`` raise,
    except that a failed tail fetch falls back to spooling.
    """
    try:
        head, ended = await _read_head(body, head_bytes)
    except BaseException:
        await _aclose(body)
        raise
    probe = probe_container(head)
    if not probe.needs_seek:
        yield PreparedInput(mode="pipe", probe=probe, stream=_chain(head, body))
        return
    if fetch_tail is not None and probe.moov_offset is not None and not ended:
        try:
            moov = await _ranged_moov(probe, fetch_tail, max_moov_bytes)
        except asyncio.CancelledError:
            await _aclose(body)
            raise
        except Exception:  # noqa: BLE001 - any trouble with the tail: spool instead
            moov = None
        if moov is not None:
            cut = probe.prefix_end
            stream = _chain(head[:cut] + moov + head[cut:], body, limit=len(moov) + probe.moov_offset)
            yield PreparedInput(mode="range", probe=probe, stream=stream)
            return
    async with spool(body, max_bytes=max_bytes, prefix=head, directory=spool_dir, on_bytes=on_spool) as spooled:
        yield PreparedInput(mode="spool", probe=probe, path=spooled.path, input_format="mov", size=spooled.size)


def _read_file_head(path: str, want: int) -> bytes:
    with open(path, "rb") as f:
        return f.read(want)


@contextlib.asynccontextmanager
async def prepare_file(
    path: str, body: Callable[[], AsyncIterator[bytes]], *, head_bytes: int = HEAD_BYTES
) -> AsyncIterator[PreparedInput]:
    """A library file: ``file`` mode (ffmpeg reads ``path``, demuxer pinned) when it needs seeking.

    Only an ISO-BMFF file with ``moov`` after ``mdat`` is read by path, with
    the ``mov`` demuxer pinned (it opens no other file: external data
    references are off by default), so ffmpeg still reads no URL and only
    that one path. Everything else is piped from ``body()`` as before.
    """
    head = await asyncio.to_thread(_read_file_head, path, head_bytes)
    probe = probe_container(head)
    if probe.needs_seek:
        yield PreparedInput(mode="file", probe=probe, path=path, input_format="mov")
        return
    yield PreparedInput(mode="pipe", probe=probe, stream=body())
