"""The ffmpeg process as an async generator of splitter events.

The runner only pumps pipes: one task writes the source into ffmpeg's stdin
while this generator reads stdout through the rendition's splitter (EBML for
WebM, ``fmp4.FragmentSplitter`` for fMP4), so neither pipe
can fill up and deadlock the other. stderr's error lines are kept, bounded,
for the error message; its input dump says how long the input is
(``duration.FFmpegLog``). ffmpeg runs in its own process group, killed on every way out of the
generator: normal end, error, timeout, ``aclose()`` and task cancellation.

Two additions, both off unless asked for:

* ``input_path``: ffmpeg reads a file (a spooled upstream or a library file)
  instead of stdin; the argv is rewritten by ``ffmpeg.file_input_argv``.
* a rendition with extras: the runner opens two more pipes for ffmpeg's
  extra outputs. The PCM pipe goes straight from the transcode to the analysis
  ffmpeg (the kernel carries it, Python never touches it); the tag pipe and
  the analysis process's stdout and stderr are pumped by tasks into a
  ``MediaAnalysis``, each bounded (tags ``MAX_METADATA_BYTES``, the waveform
  by folding, stderr by keeping its tail). Both processes have their own
  process group and are killed on every way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import signal
from collections.abc import AsyncGenerator, AsyncIterator

from .analysis import MAX_METADATA_BYTES, BoundedText, MediaAnalysis, parse_ffmetadata, parse_loudness
from .duration import FFmpegLog, InputInfo
from .ebml import Cluster, ClusterSplitter, EbmlError, InitSegment
from .ffmpeg import PCM_PIPE, TAGS_PIPE, Rendition, file_input_argv
from .fmp4 import Fmp4Error, Fragment, FragmentSplitter

__all__ = ["EncoderFailed", "TranscodeFailed", "TranscodeTimeout", "clean_stderr", "transcode", "READ_SIZE"]

READ_SIZE = 64 * 1024
STDERR_LIMIT = 8 * 1024
# The ebur128 summary is the last ~600 bytes the analysis process logs.
ANALYSIS_STDERR_LIMIT = 16 * 1024


class TranscodeFailed(Exception):
    """ffmpeg exited non-zero or wrote output the splitter could not parse."""

    def __init__(self, message: str, stderr: str = "") -> None:
        super().__init__(message)
        self.stderr = stderr

    @property
    def reason(self) -> str:
        """The line of ffmpeg's stderr that says most (the encoder's own, for an encoder failure)."""
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        if not lines:
            return str(self)
        for line in lines:
            if line.startswith("[libopus]"):
                return line
        # A component's own line ("[mov,mp4,m4a,3gp,3g2,mj2] moov atom not found")
        # says why; the last line ("pipe:0: Invalid data found ...") what failed.
        named = [line for line in lines if line.startswith("[")]
        if named and named[-1] != lines[-1]:
            return f"{named[-1]}; {lines[-1]}"
        return lines[-1]


class EncoderFailed(TranscodeFailed):
    """The encoder (libopus) refused or failed: the gateway's side, not the input's."""


# ffmpeg's log prefix "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x562d...]": the address means
# nothing to a reader and differs at every run; the component name stays.
_ADDRESS = re.compile(r" @ 0x[0-9a-fA-F]+")
# What ffmpeg prints when the encoder cannot be opened or fails on its input.
_ENCODER = re.compile(r"Error while opening encoder|Error initializing output stream|^\[libopus\]|"
                      r"Error (?:submitting|while encoding)|encoding failed", re.MULTILINE)


def clean_stderr(text: str) -> str:
    """ffmpeg's stderr for a message: without memory addresses, at most 2000 characters."""
    return _ADDRESS.sub("", text).strip()[-2000:]


def failure(message: str, stderr: str) -> TranscodeFailed:
    """The error for an ffmpeg that exited non-zero: ``EncoderFailed`` when the encoder says so."""
    text = clean_stderr(stderr)
    cls = EncoderFailed if _ENCODER.search(text) else TranscodeFailed
    return cls(message, text)


class TranscodeTimeout(TranscodeFailed):
    pass


class _Splitter:
    """The rendition's splitter, its chunks as ``Cluster`` events whatever the container.

    A chunk is a chunk to everything after the runner (store, manifest,
    HTTP, peers): index, start, duration and bytes; only the splitter knows
    whether those bytes are a WebM Cluster or an fMP4 fragment.
    """

    def __init__(self, container: str) -> None:
        self.format = "fragmented MP4" if container == "fmp4" else "WebM"
        self._splitter = FragmentSplitter() if container == "fmp4" else ClusterSplitter()

    def feed(self, data: bytes) -> list[InitSegment | Cluster]:
        return [_as_chunk(e) for e in self._splitter.feed(data)]

    def feed_eof(self) -> list[InitSegment | Cluster]:
        return [_as_chunk(e) for e in self._splitter.feed_eof()]


def _as_chunk(event: InitSegment | Cluster | Fragment) -> InitSegment | Cluster:
    if isinstance(event, Fragment):
        return Cluster(event.index, event.start, event.duration, event.data)
    return event


class _SourceFailed(Exception):
    """Carries the source's own exception out of the feeder task."""


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


async def _feed(
    proc: asyncio.subprocess.Process, source: AsyncIterator[bytes], analysis: MediaAnalysis | None = None
) -> None:
    assert proc.stdin is not None
    try:
        async for piece in source:
            if analysis is not None and analysis.head_limit:
                analysis.keep_head(piece)
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


async def _read_stderr(stream: asyncio.StreamReader, keep: bytearray, limit: int = STDERR_LIMIT) -> None:
    while True:
        piece = await stream.read(4096)
        if not piece:
            return
        keep.extend(piece)
        if len(keep) > limit:
            del keep[: len(keep) - limit]


async def _read_log(stream: asyncio.StreamReader, log: FFmpegLog) -> None:
    while True:
        piece = await stream.read(4096)
        if not piece:
            log.finish()
            return
        log.feed(piece)


async def _pump_into(stream: asyncio.StreamReader, sink: BoundedText | None, feed: object = None) -> None:
    """Read ``stream`` to EOF (so its writer never blocks), into ``sink`` and/or ``feed(piece)``."""
    while True:
        piece = await stream.read(READ_SIZE)
        if not piece:
            return
        if sink is not None:
            sink.feed(piece)
        if callable(feed):
            feed(piece)


# The transcode writes float PCM at ~100x real time (35 MB/s of stereo): a
# default 64 KiB pipe holds 2 ms of that, so every hiccup of the analysis
# process stalled the transcode. 1 MiB (the usual pipe-max-size) absorbs them.
PCM_PIPE_BYTES = 1 << 20


def _widen_pipe(fd: int) -> None:
    with contextlib.suppress(OSError, AttributeError):  # not Linux, or over pipe-max-size
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PCM_PIPE_BYTES)


async def _open_reader(fd: int) -> tuple[asyncio.StreamReader, asyncio.BaseTransport]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=READ_SIZE)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
    )
    return reader, transport


class _Side:
    """The analysis process and the tag pipe of one run with extras."""

    def __init__(self, analysis: MediaAnalysis) -> None:
        self.analysis = analysis
        self.proc: asyncio.subprocess.Process | None = None
        self.tags = BoundedText(MAX_METADATA_BYTES)
        self.stderr = bytearray()
        self.tasks: list[asyncio.Task[None]] = []
        self.transports: list[asyncio.BaseTransport] = []
        self.fds: list[int] = []  # descriptors still to close in this process

    async def start(self, rendition: Rendition) -> dict[str, str]:
        """Spawn the analysis process; return the argv substitutions for the transcode."""
        pcm_r, pcm_w = os.pipe()
        self.fds += [pcm_r, pcm_w]
        _widen_pipe(pcm_w)
        tags_r, tags_w = os.pipe()
        self.fds += [tags_w]
        # os.pipe() descriptors are non-inheritable (PEP 446): only the child
        # given one (as stdin or in pass_fds) holds it, so EOF arrives.
        reader, transport = await _open_reader(tags_r)
        self.transports.append(transport)
        self.proc = await asyncio.create_subprocess_exec(
            *rendition.analysis_argv,
            stdin=pcm_r,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        self.close_fd(pcm_r)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.tasks.append(asyncio.create_task(_pump_into(self.proc.stdout, None, self.analysis.waveform.feed)))
        self.tasks.append(asyncio.create_task(_read_stderr(self.proc.stderr, self.stderr, ANALYSIS_STDERR_LIMIT)))
        self.tasks.append(asyncio.create_task(_pump_into(reader, self.tags)))
        return {PCM_PIPE: f"pipe:{pcm_w}", TAGS_PIPE: f"pipe:{tags_w}"}

    @property
    def pass_fds(self) -> tuple[int, ...]:
        return tuple(self.fds)

    def close_fd(self, fd: int) -> None:
        if fd in self.fds:
            self.fds.remove(fd)
            with contextlib.suppress(OSError):
                os.close(fd)

    def close_fds(self) -> None:
        for fd in list(self.fds):
            self.close_fd(fd)

    async def finish(self, deadline: float) -> None:
        """After the transcode exited 0: wait for the analysis, then fill in the results."""
        loop = asyncio.get_running_loop()
        assert self.proc is not None
        try:
            code = await asyncio.wait_for(self.proc.wait(), max(0.1, deadline - loop.time()))
            await asyncio.wait_for(asyncio.gather(*self.tasks), max(0.1, deadline - loop.time()))
        except TimeoutError:
            raise TranscodeTimeout("the analysis did not finish in time") from None
        log = self.stderr.decode("utf-8", "replace")
        if code != 0:
            raise TranscodeFailed(f"the analysis ffmpeg exited with status {code}", clean_stderr(log))
        self.analysis.waveform.finish()
        self.analysis.loudness = parse_loudness(log)
        self.analysis.tags = parse_ffmetadata(self.tags.text())
        self.analysis.tags_truncated = self.tags.truncated

    async def close(self) -> None:
        self.close_fds()
        if self.proc is not None:
            _kill_group(self.proc)
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self.proc.wait(), 5.0)
        for task in self.tasks:
            if not task.done():
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(task, 5.0)
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        for transport in self.transports:
            transport.close()


async def transcode(
    rendition: Rendition,
    source: AsyncIterator[bytes] | None,
    *,
    timeout: float,
    on_spawn: object = None,
    input_path: str | None = None,
    input_format: str | None = None,
    analysis: MediaAnalysis | None = None,
    input_info: InputInfo | None = None,
) -> AsyncGenerator[InitSegment | Cluster, None]:
    """Run ffmpeg over ``source``; yield the init segment, then each cluster.

    ``input_path`` (an absolute path; then ``source`` must be None) makes
    ffmpeg read that file, with ``input_format`` pinning its demuxer. With a
    rendition that has extras, ``analysis`` (or a private one) receives the
    tags, waveform and loudness; they are complete once this generator ends
    without an error. ``analysis.head_limit`` keeps that many first bytes of
    a piped source. ``input_info`` receives the input's duration and bit
    rate from ffmpeg's input dump as soon as it has probed the input
    (``transcode/duration.py``), before the first cluster.

    A caller that stops early should ``aclose()`` it (``contextlib.aclosing``):
    that is what kills ffmpeg at once rather than whenever the generator is
    collected.

    Raises the source's own exception if reading the source failed,
    ``TranscodeTimeout`` after ``timeout`` seconds of wall time, and
    ``TranscodeFailed`` if ffmpeg (or the analysis ffmpeg) exits non-zero or
    its output is not WebM.
    """
    if (input_path is None) == (source is None):
        raise ValueError("give exactly one of source and input_path")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    argv = list(rendition.argv)
    if input_path is not None:
        argv = file_input_argv(argv, input_path, input_format=input_format)
    side: _Side | None = None
    if rendition.extras:
        side = _Side(analysis if analysis is not None else MediaAnalysis())
    try:
        if side is not None:
            swap = await side.start(rendition)
            argv = [swap.get(a, a) for a in argv]
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if source is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # own process group: killpg reaches any children
            pass_fds=side.pass_fds if side is not None else (),
        )
    except BaseException:
        if side is not None:
            await side.close()
        raise
    if side is not None:
        side.close_fds()  # ffmpeg holds the write ends now; EOF follows its exit
    if callable(on_spawn):
        on_spawn(proc.pid)
    assert proc.stdout is not None and proc.stderr is not None
    ffmpeg_log = FFmpegLog(input_info, limit=STDERR_LIMIT)
    if source is not None:
        feeder = asyncio.create_task(_feed(proc, source, analysis))
    else:
        feeder = asyncio.create_task(asyncio.sleep(0))
    stderr_task = asyncio.create_task(_read_log(proc.stderr, ffmpeg_log))
    splitter = _Splitter(rendition.container)

    def stderr_text() -> str:
        return clean_stderr(ffmpeg_log.errors())

    try:
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TranscodeTimeout(f"transcode exceeded {timeout:.0f} s")
            try:
                # asyncio.timeout, not wait_for: Python 3.11's wait_for returns the
                # read's data and drops a cancel that arrives as the read completes,
                # so an endless (live) transcode would outlive its cancelled task.
                async with asyncio.timeout(remaining):
                    data = await proc.stdout.read(READ_SIZE)
            except TimeoutError:
                raise TranscodeTimeout(f"transcode exceeded {timeout:.0f} s") from None
            if not data:
                break
            try:
                events = splitter.feed(data)
            except (EbmlError, Fmp4Error) as exc:
                raise TranscodeFailed(f"ffmpeg wrote unparsable {splitter.format}: {exc}") from None
            for event in events:
                yield event
        try:
            async with asyncio.timeout(max(0.1, deadline - loop.time())):
                returncode = await proc.wait()
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
            raise failure(f"ffmpeg exited with status {returncode}", ffmpeg_log.errors())
        try:
            events = splitter.feed_eof()
        except (EbmlError, Fmp4Error) as exc:
            raise TranscodeFailed(f"ffmpeg output ended mid-element: {exc}", stderr_text()) from None
        if side is not None:
            # Before the last cluster: when the caller sees the end, the extras are there.
            await side.finish(deadline)
        for event in events:
            yield event
    finally:
        _kill_group(proc)
        if side is not None:
            await side.close()
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
