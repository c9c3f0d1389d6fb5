"""A real Icecast server on loopback, fed in real time by ffmpeg: the live-radio upstream of tests and benchmarks.

``start_icecast(work)`` writes an icecast2 config of its own into ``work``
(a free loopback port, its own passwords, logs in ``work``) and starts
Debian's ``icecast2`` with it. Icecast refuses to run as root: as root the
config carries ``<changeowner>`` to ``nobody``/``nogroup``, and ``work`` is
made traversable and its log directory writable for that user
(/work/shared/notes/live-radio.md). ``Icecast.source(mount)`` starts an
``ffmpeg -re`` source (a tone, MP3, Ogg/Opus or AAC, always bounded by
``-t``); ``pause``/``resume`` SIGSTOP/SIGCONT it (the mount stays up, silent),
``stop`` ends it (the mount disappears: 404 until a source returns).
``set_title`` changes the mount's now-playing title through the admin API,
as a station's playout does. ``send(mount, data, seconds)`` is a source of
given bytes instead (a chained Ogg stream whose tracks name themselves, as a
playout such as ices or Liquidsoap sends): Icecast's source protocol (a
``PUT`` with the source password) from a thread, paced to last ``seconds``. Everything started is stopped by ``close``.
With ``ns`` (a ``bench.netns.NetNamespace``) Icecast and its sources run
inside that network namespace, on its own loopback (``ip netns exec``), and
this process reaches them through ``ns.run_inside``: where a namespaced
gateway (``ztream bench browsers --live``) can fetch from it.

bench never imports tests; tests/support/icecast.py re-exports this.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from base64 import b64encode
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .harness import ffmpeg_bin, free_port

if TYPE_CHECKING:
    from .netns import NetNamespace

__all__ = ["Icecast", "IcecastSource", "start_icecast", "icecast_binary", "CODECS"]

# codec -> (ffmpeg encoder options, container, content type)
CODECS: dict[str, tuple[list[str], str, str]] = {
    "mp3": (["-c:a", "libmp3lame", "-b:a", "128k"], "mp3", "audio/mpeg"),
    "opus": (["-c:a", "libopus", "-b:a", "96k"], "ogg", "audio/ogg"),
    "aac": (["-c:a", "aac", "-b:a", "128k"], "adts", "audio/aac"),
}


def icecast_binary() -> str:
    found = shutil.which("icecast2") or ("/usr/bin/icecast2" if Path("/usr/bin/icecast2").exists() else None)
    if found is None:
        raise RuntimeError("icecast2 is not installed (scripts/system-deps.sh installs it)")
    return found


@dataclass
class IcecastSource:
    """One ffmpeg feeding one mount in real time."""

    mount: str
    proc: subprocess.Popen[bytes]

    def pause(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class _Sender(threading.Thread):
    """A source connection writing ``data`` to a mount, paced over ``seconds``; ``stop`` ends it."""

    def __init__(self, port: int, password: str, mount: str, data: bytes, content_type: str, seconds: float) -> None:
        super().__init__(name=f"icecast source {mount}", daemon=True)
        self.port, self.mount, self.data, self.seconds = port, mount, data, seconds
        token = b64encode(f"source:{password}".encode()).decode()
        self.head = (f"PUT /{mount.lstrip('/')} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                     f"Authorization: Basic {token}\r\nContent-Type: {content_type}\r\nIce-Public: 0\r\n"
                     f"Expect: 100-continue\r\n\r\n").encode()
        self.stopped = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
                sock.sendall(self.head)
                answer = sock.recv(4096)
                if not answer.startswith((b"HTTP/1.1 100", b"HTTP/1.0 200", b"HTTP/1.1 200")):
                    raise RuntimeError(f"icecast refused the source: {answer[:80]!r}")
                piece = 4096
                rate = len(self.data) / self.seconds
                started = time.monotonic()
                for offset in range(0, len(self.data), piece):
                    if self.stopped.wait(max(0.0, started + offset / rate - time.monotonic())):
                        return
                    sock.sendall(self.data[offset : offset + piece])
        except BaseException as exc:  # shown by stop(): a thread's error is otherwise lost
            self.error = exc

    def stop(self) -> None:
        self.stopped.set()
        self.join(10)


@dataclass
class Icecast:
    port: int
    password: str
    work: Path
    proc: subprocess.Popen[bytes]
    sources: list[IcecastSource] = field(default_factory=list)
    senders: list[_Sender] = field(default_factory=list)
    ns: NetNamespace | None = None  # the network namespace it runs in; None: this process's

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, mount: str) -> str:
        return f"{self.base}/{mount.lstrip('/')}"

    def source(self, mount: str, *, codec: str = "mp3", seconds: float = 600.0, freq: int = 440,
               wait: bool = True) -> IcecastSource:
        """An ``ffmpeg -re`` tone source on ``mount`` (``live.mp3``), bounded by ``seconds``."""
        options, container, content_type = CODECS[codec]
        # A slow tremolo, so that the encoded frames differ from one another.
        tone = f"0.3*sin(2*PI*{freq}*t)*(0.6+0.4*sin(2*PI*0.5*t))"
        argv = [
            ffmpeg_bin(), "-hide_banner", "-loglevel", "error", "-nostdin", "-re",
            "-f", "lavfi", "-i", f"aevalsrc={tone}|{tone}:s=48000:c=stereo",
            *options, "-content_type", content_type, "-f", container, "-t", str(seconds),
            f"icecast://source:{self.password}@127.0.0.1:{self.port}/{mount.lstrip('/')}",
        ]
        prefix = self.ns.exec_prefix if self.ns is not None else []
        with (self.work / f"source-{mount.strip('/').replace('/', '_')}.log").open("ab") as log:
            proc = subprocess.Popen([*prefix, *argv], stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL)
        source = IcecastSource(mount, proc)
        self.sources.append(source)
        if wait:
            self.wait_mount(mount)
        return source

    def send(self, mount: str, data: bytes, *, seconds: float, content_type: str = "audio/ogg") -> None:
        """A source of ``data`` on ``mount``, its bytes paced to last ``seconds`` (this process's loopback only)."""
        if self.ns is not None:
            raise RuntimeError("send() feeds an Icecast on this process's loopback")
        sender = _Sender(self.port, self.password, mount, data, content_type, seconds)
        sender.start()
        self.senders.append(sender)
        try:
            self.wait_mount(mount)
        except TimeoutError:
            sender.stop()
            raise RuntimeError(f"the source of {mount} did not start: {sender.error!r}") from None

    def _urlopen(self, request: urllib.request.Request | str, timeout: float, read: int = -1) -> tuple[int, bytes]:
        """Status and body (its first ``read`` bytes) of a request to Icecast, from where Icecast runs;
        an error status is answered (its connection closed here), not raised."""

        def fetch() -> tuple[int, bytes]:
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    return int(response.status), response.read(read)
            except urllib.error.HTTPError as exc:
                with exc:
                    return exc.code, b""

        return self.ns.run_inside(fetch) if self.ns is not None else fetch()

    def mount_up(self, mount: str) -> bool:
        try:
            return self._urlopen(urllib.request.Request(self.url(mount)), 2, read=1)[0] == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_mount(self, mount: str, timeout: float = 15.0, *, up: bool = True) -> None:
        deadline = time.monotonic() + timeout
        while self.mount_up(mount) != up:
            if time.monotonic() > deadline:
                raise TimeoutError(f"icecast mount {mount} not {'up' if up else 'down'} after {timeout:.0f} s")
            time.sleep(0.2)

    def set_title(self, mount: str, title: str) -> None:
        """The mount's now-playing title (what listeners asking ``Icy-MetaData: 1`` get), via the admin API."""
        query = urllib.parse.urlencode({"mount": "/" + mount.lstrip("/"), "mode": "updinfo", "song": title})
        request = urllib.request.Request(f"{self.base}/admin/metadata?{query}")
        token = b64encode(f"admin:{self.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        status, _ = self._urlopen(request, 5)
        if status != 200:
            raise RuntimeError(f"icecast refused the title of {mount}: {status}")

    def close(self) -> None:
        for sender in self.senders:
            sender.stop()
        for source in self.sources:
            source.stop()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _config(port: int, password: str, work: Path, as_root: bool) -> str:
    owner = "<changeowner><user>nobody</user><group>nogroup</group></changeowner>" if as_root else ""
    return f"""<icecast>
  <location>loopback</location><admin>icecast@localhost</admin>
  <limits>
    <clients>500</clients><sources>20</sources><queue-size>524288</queue-size>
    <client-timeout>30</client-timeout><header-timeout>15</header-timeout><source-timeout>10</source-timeout>
    <burst-on-connect>1</burst-on-connect><burst-size>65535</burst-size>
  </limits>
  <authentication>
    <source-password>{password}</source-password><relay-password>{password}</relay-password>
    <admin-user>admin</admin-user><admin-password>{password}</admin-password>
  </authentication>
  <hostname>127.0.0.1</hostname>
  <listen-socket><port>{port}</port><bind-address>127.0.0.1</bind-address></listen-socket>
  <fileserve>1</fileserve>
  <paths>
    <basedir>/usr/share/icecast2</basedir><logdir>{work / "log"}</logdir>
    <webroot>/usr/share/icecast2/web</webroot><adminroot>/usr/share/icecast2/admin</adminroot>
  </paths>
  <logging><accesslog>access.log</accesslog><errorlog>error.log</errorlog><loglevel>3</loglevel></logging>
  <security><chroot>0</chroot>{owner}</security>
</icecast>
"""


def start_icecast(work: Path, *, timeout: float = 15.0, ns: NetNamespace | None = None) -> Icecast:
    """Icecast on a free loopback port, its files in ``work``; call ``close()`` (or use it in a ``with``-less
    try/finally) to stop it and its sources. ``ns``: run it (and its sources) in that network namespace."""
    work.mkdir(parents=True, exist_ok=True)
    as_root = os.geteuid() == 0
    logs = work / "log"
    logs.mkdir(exist_ok=True)
    if as_root:
        # nobody must reach and write its log directory.
        work.chmod(0o755)
        for parent in work.parents:
            if parent == Path("/"):
                break
            mode = parent.stat().st_mode
            if not mode & 0o001:
                parent.chmod(mode | 0o001)
        logs.chmod(0o777)
    port = free_port()
    password = secrets.token_hex(8)
    config = work / "icecast.xml"
    config.write_text(_config(port, password, work, as_root), encoding="utf-8")
    if as_root:
        config.chmod(0o644)
    with (work / "icecast.out").open("ab") as out:
        prefix = ns.exec_prefix if ns is not None else []
        proc = subprocess.Popen([*prefix, icecast_binary(), "-c", str(config)], stdout=out, stderr=out,
                                stdin=subprocess.DEVNULL)
    server = Icecast(port, password, work, proc, ns=ns)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if server._urlopen(f"{server.base}/status-json.xsl", 1)[0] == 200:
                return server
            raise OSError("not ready")
        except (urllib.error.URLError, OSError):
            if proc.poll() is not None or time.monotonic() > deadline:
                server.close()
                text = (work / "icecast.out").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"icecast2 did not start: {text}") from None
            time.sleep(0.1)
